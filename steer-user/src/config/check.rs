//! Checks of single values that several sections share: integers in a range, one word of a
//! fixed set, absolute paths, and values that must be unique. Each reports into the context
//! and returns what the rest of the checks should go on with.

use std::{collections::HashMap, hash::Hash, ops::Range, path::PathBuf};

use super::{
    diag::Ctx,
    schema::{S, Strings},
    suggest::{did_you_mean, list_names},
};

/// The integers a key accepts, and the unit its message names (may be empty).
#[derive(Clone, Copy)]
pub(super) struct Bounds {
    pub lo: i64,
    pub hi: i64,
    pub unit: &'static str,
}

/// An integer within `bounds`, or `None` after reporting; `hint` replaces the default
/// "use a value from lo to hi" when not empty.
pub(super) fn ranged(
    cx: &mut Ctx<'_>,
    v: &S<i64>,
    field: &str,
    bounds: Bounds,
    hint: &str,
) -> Option<u32> {
    let Bounds { lo, hi, unit } = bounds;
    let n = *v.get_ref();
    if (lo..=hi).contains(&n) {
        return u32::try_from(n).ok();
    }
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    let hint = if hint.is_empty() {
        format!("use a value from {lo} to {hi}")
    } else {
        hint.to_owned()
    };
    cx.err(
        &v.span(),
        field,
        format!("{n} is out of range: it must be from {lo} to {hi}{unit}"),
        hint,
    );
    None
}

/// A list of networks as strict as a set's (`key[i]` in messages).
pub(super) fn prefixes(
    cx: &mut Ctx<'_>,
    list: &Option<Strings>,
    key: &str,
) -> Vec<crate::prefix::Prefix> {
    let mut out = Vec::new();
    for (i, v) in list.iter().flat_map(|l| l.get_ref().iter()).enumerate() {
        let field = format!("{key}[{i}]");
        if cx.mistyped(&field) {
            continue;
        }
        match crate::prefix::parse_prefix(v.get_ref(), false) {
            Ok(p) => out.push(p),
            // The default route's usual hint is a set's key; these lists are no set's.
            Err(e @ crate::prefix::AddrError::DefaultRoute { .. }) => cx.err(
                &v.span(),
                &field,
                e.message(),
                format!(
                    "{key} takes no /0 (it would hold every address); list the networks \
                     themselves"
                ),
            ),
            Err(e) => cx.err(&v.span(), &field, e.message(), e.hint()),
        }
    }
    out
}

/// An optional integer within `bounds`: `default` when unwritten or refused.
pub(super) fn opt_ranged(
    cx: &mut Ctx<'_>,
    v: &Option<S<i64>>,
    field: &str,
    bounds: Bounds,
    default: u32,
) -> u32 {
    match v {
        Some(v) => ranged(cx, v, field, bounds, "").unwrap_or(default),
        None => default,
    }
}

/// The words a key accepts and what each means.
pub(super) struct Choices<T: 'static> {
    /// How messages name the key's value: `tracking method`.
    pub what: &'static str,
    pub words: &'static [(&'static str, T)],
}

/// One of a fixed set of words: `default` when unwritten or refused.
pub(super) fn choice<T: Copy>(
    cx: &mut Ctx<'_>,
    v: &Option<S<String>>,
    field: &str,
    choices: &Choices<T>,
    default: T,
) -> T {
    let Some(v) = v else { return default };
    let s = v.get_ref().as_str();
    if let Some((_, t)) = choices.words.iter().find(|(k, _)| *k == s) {
        return *t;
    }
    let words = || choices.words.iter().map(|(k, _)| *k);
    let lower = s.to_ascii_lowercase();
    let dym = if words().any(|w| w == lower) {
        format!("did you mean `{lower}` (lowercase)? ")
    } else {
        did_you_mean(s, words())
    };
    cx.err(
        &v.span(),
        field,
        format!("unknown {} `{s}`", choices.what),
        format!("{dym}use one of {}", list_names(words())),
    );
    default
}

/// A path that must be absolute; `example` ends the hint ("write the full path, {example}").
pub(super) fn absolute(cx: &mut Ctx<'_>, v: &S<String>, field: &str, example: &str) -> PathBuf {
    let p = PathBuf::from(v.get_ref());
    if !p.is_absolute() {
        cx.err(
            &v.span(),
            field,
            "must be an absolute path",
            format!("write the full path, {example}"),
        );
    }
    p
}

/// Values that must be unique, each with the first to claim it and the line of that claim.
pub(super) struct Claims<K, O>(HashMap<K, (O, usize)>);

impl<K: Eq + Hash, O: Clone> Claims<K, O> {
    pub fn new() -> Self {
        Claims(HashMap::new())
    }

    /// Claims `key` for `owner`, written at `span`; when it is taken already, the earlier
    /// owner and its line instead.
    pub fn claim(
        &mut self,
        cx: &Ctx<'_>,
        key: K,
        owner: O,
        span: &Range<usize>,
    ) -> Result<(), (O, usize)> {
        match self.0.get(&key) {
            Some(first) => Err(first.clone()),
            None => {
                self.0.insert(key, (owner, cx.line_of(span)));
                Ok(())
            }
        }
    }
}

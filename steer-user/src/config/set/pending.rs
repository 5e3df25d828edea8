//! A set as read, before duplicates across sets are resolved: its entries with where each was
//! written, so that any later problem with one is reported at that place.

use std::{ops::Range, path::PathBuf};

use crate::{
    config::{
        Origin,
        diag::{Ctx, Place},
    },
    model::{Conditions, Direction},
    prefix::{AddrError, Prefix},
};

pub(super) struct PendingSet {
    pub name: String,
    /// `set[name]`, or `set[index]` for a set without a valid name.
    pub label: String,
    pub span: Range<usize>,
    pub policy: String,
    pub direction: Direction,
    pub allow_default_route: bool,
    pub entries: Vec<(Prefix, Origin, Written)>,
    /// Spans of the `prefixes` strings, by index.
    pub inline_spans: Vec<Range<usize>>,
    pub files: Vec<PathBuf>,
    /// Each domain once, with its span and index in `domains`.
    pub domains: Vec<(String, Range<usize>, usize)>,
    /// `Some` for an ordered rule (a set with conditions).
    pub conditions: Option<Conditions>,
}

/// Where a prefix of a set came from, to place diagnostics about it (kept small: there is one
/// per entry, and list files can have millions).
#[derive(Clone, Copy)]
pub(super) enum Written {
    /// `prefixes[i]` (its span is `PendingSet::inline_spans[i]`).
    Inline(u32),
    /// `files[index]`, at this column of its line.
    File { index: u32, column: u32 },
}

impl PendingSet {
    /// Reports a problem with an entry where it was written: the config file's `prefixes` or a
    /// line of a list file.
    pub fn report_entry(
        &self,
        cx: &mut Ctx<'_>,
        entry: (&Prefix, &Origin, Written),
        message: String,
        hint: &str,
    ) {
        let (prefix, origin, written) = entry;
        match written {
            Written::Inline(index) => {
                let field = format!("{}.prefixes[{index}]", self.label);
                cx.err(&self.inline_spans[index as usize], field, message, hint);
            }
            Written::File { index, column } => {
                let place = Place {
                    file: &origin.file,
                    line: origin.line as usize,
                    column: column as usize,
                };
                let field = format!("{}.files[{index}]", self.label);
                cx.err_in(place, field, prefix.to_string(), message, hint);
            }
        }
    }

    /// The hint for a bad address in this set: a default route names the set's switch for it.
    pub fn addr_hint(&self, e: &AddrError) -> String {
        match e {
            AddrError::DefaultRoute { .. } => format!(
                "if {} really should take all such traffic, set `allow_default_route = true` in it; for traffic that no set matches, use [default] instead",
                self.label
            ),
            _ => e.hint(),
        }
    }
}

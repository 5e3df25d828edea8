//! A set as read, before duplicates across sets are resolved: its inline prefixes with where
//! each was written, and its list files' prefixes sorted (a list's lines are found again when
//! a message needs one: [`PendingSet::list_places`]).

use std::{collections::HashSet, ops::Range, path::PathBuf};

use crate::{
    config::{
        Listed, Origin,
        diag::{Ctx, Place},
        list::each_listed,
    },
    model::{Conditions, Direction, sorted::SortedPrefixes},
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
    /// The inline prefixes: each with its place and its index in `prefixes`.
    pub inline: Vec<(Prefix, Origin, u32)>,
    /// Spans of the `prefixes` strings, by index.
    pub inline_spans: Vec<Range<usize>>,
    /// The list files' prefixes, each once.
    pub listed: SortedPrefixes,
    /// The list files, resolved.
    pub files: Vec<PathBuf>,
    /// The list files read: each one's index in `files = [...]` and its path as messages show
    /// it.
    pub read_files: Vec<(usize, PathBuf)>,
    /// Each domain once, with its span and index in `domains`.
    pub domains: Vec<(String, Range<usize>, usize)>,
    /// `Some` for an ordered rule (a set with conditions).
    pub conditions: Option<Conditions>,
}

/// Where a listed prefix is written first: `read_files[file]`, at a line and column.
#[derive(Clone, Copy, Debug)]
pub(super) struct ListPlace {
    pub file: usize,
    pub listed: Listed,
}

impl PendingSet {
    /// The inline prefixes, sorted.
    pub fn inline_sorted(&self) -> SortedPrefixes {
        SortedPrefixes::of(self.inline.iter().map(|(p, _, _)| *p))
    }

    /// Reports a problem with an inline prefix where it is written (`prefixes[index]`).
    pub fn report_inline(&self, cx: &mut Ctx<'_>, index: u32, message: String, hint: &str) {
        let field = format!("{}.prefixes[{index}]", self.label);
        cx.err(&self.inline_spans[index as usize], field, message, hint);
    }

    /// `path:line` of a listed prefix's place.
    pub fn shown(&self, at: ListPlace) -> String {
        format!(
            "{}:{}",
            self.read_files[at.file].1.display(),
            at.listed.line
        )
    }

    /// Reports a problem with a listed prefix at its place in a list file.
    pub fn report_listed(&self, cx: &mut Ctx<'_>, at: ListPlace, message: String, hint: &str) {
        let (index, path) = &self.read_files[at.file];
        let place = Place {
            file: path,
            line: at.listed.line,
            column: at.listed.column,
        };
        let field = format!("{}.files[{index}]", self.label);
        cx.err_in(place, field, at.listed.prefix.to_string(), message, hint);
    }

    /// The first place of each prefix that `take` accepts (asked once per prefix, at its
    /// first line), in the order of the set's list files and their lines: the files are read
    /// again (a set keeps no lines of them), for messages only. A file that cannot be read
    /// again gives no places.
    pub fn list_places(&self, mut take: impl FnMut(&Prefix) -> bool) -> Vec<ListPlace> {
        let mut seen = HashSet::new();
        let mut places = Vec::new();
        for (file, (_, path)) in self.read_files.iter().enumerate() {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            each_listed(&bytes, self.allow_default_route, |listed| {
                if !seen.contains(&listed.prefix) && take(&listed.prefix) {
                    seen.insert(listed.prefix);
                    places.push(ListPlace { file, listed });
                }
            });
        }
        places
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

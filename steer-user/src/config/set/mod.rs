//! `[[set]]`: the prefixes (inline and from list files) and domains that a policy steers, and in
//! which direction — its keys, their raw form and their checks. Reading list files and
//! resolving prefixes claimed by two sets are submodules of their own.

mod conditions;
mod domain_files;
mod duplicates;
mod files;
mod pending;

pub(super) use conditions::ports as port_range;

use std::{ops::Range, path::PathBuf, sync::Arc};

use serde::Deserialize;

use self::{files::ListFiles, pending::PendingSet};
use super::{
    General, MAX_CAPACITY, Origin, Set,
    check::{self, Choices, Claims},
    diag::Ctx,
    line_number,
    names::{check_object_name, normalize_domain},
    references::{Defined, check_reference},
    schema::{
        Field,
        Kind::{Bool, Str, StrList, TableList},
        S, Strings, item_label, opt, req,
    },
};
use crate::{
    model::{
        CondTables, Direction, OrderedRule, PrefixMap,
        footprint::{Bytes, Footprint},
    },
    prefix::parse_prefix,
};

/// Diagnostics reported per list file (and per pair of sets for duplicates) before summarizing.
const REPORT_LIMIT: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawSet {
    pub name: Option<S<String>>,
    pub policy: Option<S<String>>,
    #[serde(rename = "match")]
    pub direction: Option<S<String>>,
    pub prefixes: Option<Strings>,
    pub files: Option<Strings>,
    pub domains: Option<Strings>,
    pub domain_files: Option<Strings>,
    pub filter_aaaa: Option<S<bool>>,
    pub allow_default_route: Option<S<bool>>,
    pub proto: Option<Strings>,
    pub sports: Option<Strings>,
    pub dports: Option<Strings>,
    pub src_macs: Option<Strings>,
    #[serde(rename = "in")]
    pub in_interfaces: Option<Strings>,
    pub src_prefixes: Option<Strings>,
}

pub(super) const FIELD: Field = opt(
    "set",
    TableList(FIELDS),
    "[[set]] with name, policy and prefixes",
);

const FIELDS: &[Field] = &[
    req("name", Str, "name = \"bypass\""),
    req("policy", Str, "policy = \"wan2-first\""),
    opt("match", Str, "match = \"dst\""),
    opt("prefixes", StrList, "prefixes = [\"203.0.113.0/24\"]"),
    opt("files", StrList, "files = [\"lists/bypass.txt\"]"),
    opt("domains", StrList, "domains = [\"example.com\"]"),
    opt(
        "domain_files",
        StrList,
        "domain_files = [\"lists/streaming.txt\"]",
    ),
    opt("filter_aaaa", Bool, "filter_aaaa = false"),
    opt("allow_default_route", Bool, "allow_default_route = false"),
    opt("proto", StrList, "proto = [\"tcp\", \"udp\"]"),
    opt("sports", StrList, "sports = [\"5060\"]"),
    opt("dports", StrList, "dports = [\"443\", \"10000-20000\"]"),
    opt("src_macs", StrList, "src_macs = [\"aa:bb:cc:dd:ee:ff\"]"),
    opt("in", StrList, "in = [\"br-lan\"]"),
    opt(
        "src_prefixes",
        StrList,
        "src_prefixes = [\"192.168.1.0/24\"]",
    ),
];

const DIRECTIONS: Choices<Direction> = Choices {
    what: "match direction",
    words: &[
        (Direction::Dst.as_str(), Direction::Dst),
        (Direction::Src.as_str(), Direction::Src),
    ],
};

/// The sets, their list files read and duplicates resolved; `capacity_spans` place the
/// capacity errors (by [`PrefixMap::index`]), `memory_span` the memory ones
/// (`general.max_memory`).
pub(super) fn build(
    cx: &mut Ctx<'_>,
    raw: Option<S<Vec<S<RawSet>>>>,
    policies: &Defined,
    general: &General,
    (capacity_spans, memory_span): (&[Range<usize>], &Range<usize>),
) -> Vec<Set> {
    let Some(raw) = raw else { return Vec::new() };
    let reader = SetReader {
        config_file: Arc::new(cx.file.to_path_buf()),
        list_files: ListFiles::new(cx.file),
        policies,
        lan: &general.lan,
    };
    let mut names = Claims::new();
    let mut pending = Vec::new();
    let mut extra = Vec::new();
    let max_sets = (steer_common::MAX_RULES - 1) as usize;
    for (i, s) in raw.into_inner().into_iter().enumerate() {
        let span = s.span();
        let s = s.into_inner();
        let label = item_label("", "set", i, s.name.as_ref().map(|n| n.get_ref().as_str()));
        if i == max_sets {
            // Refused at once: the sets past the limit are not read (their list files, the
            // duplicate check against every earlier set: quadratic in their number).
            cx.err(
                &span,
                &label,
                format!("too many sets: steer supports at most {max_sets}"),
                "merge sets that use the same policy and match",
            );
            break;
        }
        if cx.mistyped(&label) {
            continue;
        }
        if let Some(n) = &s.name {
            check_object_name(cx, n, &format!("{label}.name"), "set", &mut names);
        }
        extra.push(domain_files::Extra {
            label: label.clone(),
            files: s.domain_files.clone(),
            filter_aaaa: s.filter_aaaa.as_ref().is_some_and(|v| *v.get_ref()),
        });
        pending.push(reader.read(cx, s, span, label));
    }
    check_ordered(cx, &pending);
    let mut sets = resolve_duplicates(cx, pending, general.duplicates);
    domain_files::add(cx, &mut sets, extra, general.duplicates);
    check_capacity(cx, &sets, general, capacity_spans);
    if let Some(max) = general.capacity.memory {
        check_memory(cx, &sets, max, memory_span);
    }
    sets
}

/// Duplicates are resolved among the prefix sets (longest match needs each prefix in one
/// set); an ordered rule only drops its own repeats: two rules may name the same prefix with
/// other conditions, and the earlier one comes first anyway.
fn resolve_duplicates(
    cx: &mut Ctx<'_>,
    pending: Vec<PendingSet>,
    policy: crate::config::DuplicatePolicy,
) -> Vec<Set> {
    let mut slots: Vec<Option<Set>> = (0..pending.len()).map(|_| None).collect();
    let (mut plain, mut plain_at) = (Vec::new(), Vec::new());
    for (i, set) in pending.into_iter().enumerate() {
        if set.conditions.is_some() {
            slots[i] = duplicates::resolve(cx, vec![set], policy).pop();
        } else {
            plain.push(set);
            plain_at.push(i);
        }
    }
    for (i, set) in plain_at
        .into_iter()
        .zip(duplicates::resolve(cx, plain, policy))
    {
        slots[i] = Some(set);
    }
    slots.into_iter().flatten().collect()
}

/// At most `cond::MAX_RULES` ordered rules, whose ports fit the kernel's port classes.
fn check_ordered(cx: &mut Ctx<'_>, pending: &[PendingSet]) {
    let max = steer_common::cond::MAX_RULES as usize;
    let ordered: Vec<&PendingSet> = pending.iter().filter(|s| s.conditions.is_some()).collect();
    if let Some(over) = ordered.get(max) {
        cx.err(
            &over.span,
            &over.label,
            format!(
                "too many sets with conditions ({}): steer supports at most {max}",
                ordered.len()
            ),
            "merge rules that send to the same policy (lists of ports, MACs and prefixes are \
             fine in one set)",
        );
        return;
    }
    let rules: Vec<OrderedRule> = ordered
        .iter()
        .map(|s| OrderedRule {
            rule: 0,
            direction: s.direction,
            prefixes: None,
            conditions: s.conditions.clone().unwrap_or_default(),
        })
        .collect();
    if let (Err(e), Some(first)) = (CondTables::compile(&rules), ordered.first()) {
        cx.err(
            &first.span,
            &first.label,
            e.to_string(),
            "give rules the same port ranges where they can (a range shared by many rules \
             costs one group), or move some rules' ports into fewer, wider ranges",
        );
    }
    check_ordered_prefixes(cx, &ordered);
    check_ordered_macs(cx, &ordered);
}

/// The ordered rules' prefixes fit the condition tries (each holds both banks during a
/// change, so half of it is what one rule list may use).
fn check_ordered_prefixes(cx: &mut Ctx<'_>, ordered: &[&PendingSet]) {
    let limit = (steer_common::cond::ADDR_MAX_ENTRIES / 2) as usize;
    let mut held: [[usize; 2]; 2] = [[0; 2]; 2];
    for s in ordered {
        let side = &mut held[crate::model::ordered::side_index(s.direction)];
        for (p, _, _) in &s.inline {
            side[usize::from(!p.is_v4())] += 1;
        }
        side[0] += s.listed.v4.len();
        side[1] += s.listed.v6.len();
        for p in s.conditions.iter().flat_map(|c| &c.src_prefixes) {
            held[crate::model::ordered::side_index(Direction::Src)][usize::from(!p.is_v4())] += 1;
        }
    }
    let over = held.iter().flatten().copied().max().unwrap_or(0);
    if over > limit
        && let Some(first) = ordered.first()
    {
        cx.err(
            &first.span,
            &first.label,
            format!(
                "the sets with conditions hold {over} prefixes of one address family on one \
                 side; steer keeps at most {limit} there"
            ),
            "put large lists in sets without conditions (longest match, no such limit) and \
             keep the conditions for the traffic that needs them",
        );
    }
}

/// The ordered rules' distinct MAC addresses fit the MAC map (both banks during a change).
fn check_ordered_macs(cx: &mut Ctx<'_>, ordered: &[&PendingSet]) {
    let limit = (steer_common::cond::MAC_MAX_ENTRIES / 2) as usize;
    let macs: std::collections::BTreeSet<[u8; 6]> = ordered
        .iter()
        .flat_map(|s| s.conditions.iter().flat_map(|c| &c.src_macs))
        .copied()
        .collect();
    if macs.len() > limit
        && let Some(first) = ordered.first()
    {
        cx.err(
            &first.span,
            &first.label,
            format!(
                "the sets with conditions name {} distinct MAC addresses; steer keeps at most \
                 {limit}",
                macs.len()
            ),
            "match larger groups of devices by their addresses (src_prefixes, or a set with \
             match = \"src\") instead of by MAC",
        );
    }
}

/// What reading one set needs beyond its own keys.
struct SetReader<'d> {
    /// Shared by the origins of the inline prefixes.
    config_file: Arc<PathBuf>,
    list_files: ListFiles,
    policies: &'d Defined,
    /// `[general] lan`: what `in` may name.
    lan: &'d [String],
}

impl SetReader<'_> {
    /// One set as written: checked key by key, its list files read, duplicates not resolved.
    fn read(&self, cx: &mut Ctx<'_>, s: RawSet, span: Range<usize>, label: String) -> PendingSet {
        let f = |k: &str| format!("{label}.{k}");
        if let Some(p) = &s.policy {
            check_reference(cx, p, &f("policy"), self.policies);
        }
        let direction = check::choice(cx, &s.direction, &f("match"), &DIRECTIONS, Direction::Dst);
        let conditions = conditions::read(cx, &s, &label, direction, self.lan);
        if conditions.is_none() {
            check_not_empty(cx, &s, &span, &label);
        }
        let mut set = PendingSet {
            name: s
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or_default(),
            label,
            span,
            policy: s
                .policy
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
            direction,
            allow_default_route: s.allow_default_route.as_ref().is_some_and(|v| *v.get_ref()),
            inline: Vec::new(),
            inline_spans: Vec::new(),
            listed: Default::default(),
            files: Vec::new(),
            read_files: Vec::new(),
            domains: Vec::new(),
            conditions,
        };
        if let Some(list) = &s.prefixes {
            self.read_prefixes(cx, &mut set, list);
        }
        if let Some(list) = &s.files {
            for (i, v) in list.get_ref().iter().enumerate() {
                self.list_files.read(cx, &mut set, i, v);
            }
        }
        if let Some(list) = &s.domains {
            read_domains(cx, &mut set, list);
        }
        set
    }

    fn read_prefixes(&self, cx: &mut Ctx<'_>, set: &mut PendingSet, list: &Strings) {
        set.inline_spans = list.get_ref().iter().map(|v| v.span()).collect();
        for (i, v) in list.get_ref().iter().enumerate() {
            let field = format!("{}.prefixes[{i}]", set.label);
            if cx.mistyped(&field) {
                continue;
            }
            match parse_prefix(v.get_ref(), set.allow_default_route) {
                Ok(p) => {
                    let origin = Origin {
                        file: self.config_file.clone(),
                        line: line_number(cx.line_of(&v.span())),
                    };
                    set.inline.push((p, origin, i as u32));
                }
                Err(e) => cx.err(&v.span(), &field, e.message(), set.addr_hint(&e)),
            }
        }
    }
}

/// A set must match something (unless what it had was written with the wrong type).
fn check_not_empty(cx: &mut Ctx<'_>, s: &RawSet, span: &Range<usize>, label: &str) {
    let empty = |l: &Option<Strings>| l.as_ref().is_none_or(|l| l.get_ref().is_empty());
    let keys = ["prefixes", "files", "domains", "domain_files"];
    let mistyped =
        (keys.iter().chain(&conditions::KEYS)).any(|k| cx.mistyped(&format!("{label}.{k}")));
    let nothing = empty(&s.prefixes) && empty(&s.files) && empty(&s.domains);
    if nothing && empty(&s.domain_files) && !mistyped {
        cx.err_value(
            span,
            label,
            "",
            "this set has nothing to match",
            "add prefixes = [...], files = [...], domains = [...] or domain_files = [...]",
        );
    }
}

fn read_domains(cx: &mut Ctx<'_>, set: &mut PendingSet, list: &Strings) {
    if set.direction == Direction::Src && !list.get_ref().is_empty() {
        cx.err(
            &list.span(),
            format!("{}.domains", set.label),
            "domains only work in sets with match = \"dst\"",
            "steer learns a domain's addresses from DNS answers, which are destinations; move the domains to a dst set",
        );
    }
    for (i, v) in list.get_ref().iter().enumerate() {
        let field = format!("{}.domains[{i}]", set.label);
        if cx.mistyped(&field) {
            continue;
        }
        match normalize_domain(v.get_ref()) {
            Ok(d) => {
                if !set.domains.iter().any(|(x, _, _)| *x == d) {
                    set.domains.push((d, v.span(), i));
                }
            }
            Err((m, h)) => cx.err(&v.span(), field, m, h),
        }
    }
}

/// The prefix maps' kernel memory, at the peak of a reload, must fit `general.max_memory`.
fn check_memory(cx: &mut Ctx<'_>, sets: &[Set], max: u64, span: &Range<usize>) {
    let footprint = footprint(sets);
    let peak = footprint.peak();
    if peak <= max {
        return;
    }
    let rebuild = peak - footprint.in_force();
    let beside = if rebuild > 0 {
        format!(
            ", and {} for a fresh table and record beside the old while they are rebuilt",
            Bytes(rebuild)
        )
    } else {
        String::new()
    };
    cx.err(
        span,
        "general.max_memory",
        format!(
            "the sets need {} of kernel memory at the peak of a reload, more than the {} \
             max_memory allows ({}{beside})",
            Bytes(peak),
            Bytes(max),
            footprint.breakdown()
        ),
        format!(
            "raise general.max_memory to at least {}M, or shorten the lists (aggregated \
             prefixes, fewer host routes)",
            peak.div_ceil(1 << 20)
        ),
    );
}

/// The kernel memory of the sets' prefixes (ordered rules keep theirs in other maps).
pub fn footprint(sets: &[Set]) -> Footprint {
    let entries = sets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.conditions.is_none())
        .flat_map(|(i, s)| {
            s.all_prefixes()
                .map(move |p| (PrefixMap::of(s.direction, &p), p, i as u32))
        });
    Footprint::of(entries)
}

/// The sets' prefixes must fit the maps they go into.
fn check_capacity(cx: &mut Ctx<'_>, sets: &[Set], general: &General, spans: &[Range<usize>]) {
    let mut held = [0usize; PrefixMap::ALL.len()];
    for s in sets.iter().filter(|s| s.conditions.is_none()) {
        for p in s.all_prefixes() {
            held[PrefixMap::of(s.direction, &p).index()] += 1;
        }
    }
    for map in PrefixMap::ALL {
        let (n, cap, key) = (held[map.index()], general.capacity.of(map), map.key());
        if n <= cap as usize {
            continue;
        }
        let hint = if n <= MAX_CAPACITY as usize {
            format!("raise general.capacity.{key} to at least {n} (kernel memory grows with it)")
        } else {
            format!(
                "steer's limit is {MAX_CAPACITY}; aggregate the lists (fewer, shorter prefixes)"
            )
        };
        cx.err_value(
            &spans[map.index()],
            format!("general.capacity.{key}"),
            cap.to_string(),
            format!(
                "the sets hold {n} {} prefixes, more than the capacity of {cap}",
                map.describe()
            ),
            hint,
        );
    }
}

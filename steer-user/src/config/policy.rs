//! `[[policy]]`: which WANs a policy uses, in which order and shares, and what it does when none
//! is up — its keys, their raw form and their checks.

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    Failback, HashBy, LastResort, MAIN_POLICY, Member, Policy,
    check::{self, Bounds, Choices, Claims},
    diag::Ctx,
    names::check_object_name,
    references::{Defined, check_reference},
    schema::{
        Field,
        Kind::{Int, Str, TableList},
        S, item_label, opt, req,
    },
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawPolicy {
    pub name: Option<S<String>>,
    pub members: Option<S<Vec<S<RawMember>>>>,
    pub last_resort: Option<S<String>>,
    pub hash: Option<S<String>>,
    pub failback: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMember {
    pub wan: Option<S<String>>,
    pub metric: Option<S<i64>>,
    pub weight: Option<S<i64>>,
}

pub(super) const FIELD: Field = opt(
    "policy",
    TableList(FIELDS),
    "[[policy]] with name and members",
);

const FIELDS: &[Field] = &[
    req("name", Str, "name = \"balanced\""),
    req(
        "members",
        TableList(MEMBER),
        "members = [{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }]",
    ),
    opt("last_resort", Str, "last_resort = \"default\""),
    opt("hash", Str, "hash = \"flow\""),
    opt("failback", Str, "failback = \"keep\""),
];

const MEMBER: &[Field] = &[
    req("wan", Str, "{ wan = \"wan1\" }"),
    opt("metric", Int, "{ wan = \"wan1\", metric = 1 }"),
    opt("weight", Int, "{ wan = \"wan1\", weight = 1 }"),
];

const METRIC: Bounds = Bounds {
    lo: 1,
    hi: 255,
    unit: "",
};
const WEIGHT: Bounds = Bounds {
    lo: 1,
    hi: 64,
    unit: "",
};

const HASHES: Choices<HashBy> = Choices {
    what: "hash",
    words: &[("flow", HashBy::Flow), ("src", HashBy::Src)],
};

const FAILBACKS: Choices<Failback> = Choices {
    what: "failback",
    words: &[("keep", Failback::Keep), ("move", Failback::Move)],
};

const LAST_RESORTS: Choices<LastResort> = Choices {
    what: "last_resort",
    words: &[
        ("default", LastResort::Default),
        ("unreachable", LastResort::Unreachable),
        ("blackhole", LastResort::Blackhole),
    ],
};

pub(super) fn build(
    cx: &mut Ctx<'_>,
    raw: Option<S<Vec<S<RawPolicy>>>>,
    wans: &Defined,
) -> Vec<Policy> {
    let Some(raw) = raw else { return Vec::new() };
    let mut names = Claims::new();
    let mut out = Vec::new();
    for (i, p) in raw.into_inner().into_iter().enumerate() {
        let p = p.into_inner();
        let name = p.name.as_ref().map(|n| n.get_ref().as_str());
        let label = item_label("", "policy", i, name);
        if cx.mistyped(&label) {
            continue;
        }
        if let Some(n) = &p.name {
            check_object_name(cx, n, &format!("{label}.name"), "policy", &mut names);
            if n.get_ref() == MAIN_POLICY {
                cx.err(
                    &n.span(),
                    format!("{label}.name"),
                    format!("`{MAIN_POLICY}` is the built-in policy that leaves traffic to the main routing table"),
                    "choose another name; a set with policy = \"main\" is never steered",
                );
            }
        }
        let members = p
            .members
            .as_ref()
            .map_or_else(Vec::new, |list| members(cx, list, &label, wans));
        let last_resort = check::choice(
            cx,
            &p.last_resort,
            &format!("{label}.last_resort"),
            &LAST_RESORTS,
            LastResort::Default,
        );
        let hash = check::choice(cx, &p.hash, &format!("{label}.hash"), &HASHES, HashBy::Flow);
        let failback = check::choice(
            cx,
            &p.failback,
            &format!("{label}.failback"),
            &FAILBACKS,
            Failback::Keep,
        );
        out.push(Policy {
            name: p.name.map(S::into_inner).unwrap_or_default(),
            members,
            last_resort,
            hash,
            failback,
        });
    }
    out
}

/// The policies' names, for the sections that refer to them.
pub(super) fn defined(policies: &[Policy]) -> Defined {
    Defined {
        built_in: Some(MAIN_POLICY),
        ..Defined::new(
            "policy",
            "policies",
            "policy",
            policies.iter().map(|p| &p.name),
        )
    }
}

fn members(
    cx: &mut Ctx<'_>,
    list: &S<Vec<S<RawMember>>>,
    label: &str,
    wans: &Defined,
) -> Vec<Member> {
    if list.get_ref().is_empty() {
        cx.err(
            &list.span(),
            format!("{label}.members"),
            "this policy has no members",
            "list at least one WAN, e.g. members = [{ wan = \"wan1\" }]",
        );
    }
    let mut members = Vec::new();
    // Each WAN's first place in the list.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, m) in list.get_ref().iter().enumerate() {
        let m = m.get_ref();
        let ml = format!("{label}.members[{j}]");
        let Some(w) = &m.wan else { continue };
        check_reference(cx, w, &format!("{ml}.wan"), wans);
        if let Some(first) = seen.get(w.get_ref().as_str()) {
            cx.err(
                &w.span(),
                format!("{ml}.wan"),
                format!(
                    "WAN `{}` is already a member of this policy (members[{first}])",
                    w.get_ref()
                ),
                "list each WAN once; use metric (preference) and weight (share) instead",
            );
        }
        seen.entry(w.get_ref()).or_insert(j);
        members.push(Member {
            wan: w.get_ref().clone(),
            metric: check::opt_ranged(cx, &m.metric, &format!("{ml}.metric"), METRIC, 1),
            weight: check::opt_ranged(cx, &m.weight, &format!("{ml}.weight"), WEIGHT, 1),
        });
    }
    members
}

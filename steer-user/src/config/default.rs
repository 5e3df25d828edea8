//! `[default]`: the policy for traffic that no set matches — its key, its raw form and its
//! check.

use serde::Deserialize;

use super::{
    DefaultRule,
    diag::Ctx,
    references::{Defined, check_reference},
    schema::{
        Field,
        Kind::{Str, Table},
        S, opt, req,
    },
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDefault {
    pub policy: Option<S<String>>,
}

pub(super) const FIELD: Field = opt(
    "default",
    Table(FIELDS),
    "[default] with policy = \"balanced\"",
);

const FIELDS: &[Field] = &[req("policy", Str, "policy = \"balanced\"")];

pub(super) fn build(
    cx: &mut Ctx<'_>,
    raw: Option<S<RawDefault>>,
    policies: &Defined,
) -> Option<DefaultRule> {
    let policy = raw?.into_inner().policy?;
    check_reference(cx, &policy, "default.policy", policies);
    Some(DefaultRule {
        policy: policy.into_inner(),
    })
}

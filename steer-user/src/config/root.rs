//! The root of the file: which sections there are, and the order they are checked in, each
//! handed what the earlier ones defined (WAN names to policies, policy names to sets and the
//! default). A new section is a module of its own plus a line in each of the three places
//! below: the root table, the raw root and [`build`].

use std::path::Path;

use serde::Deserialize;

use super::{
    Config,
    control::{self, RawControl},
    default::{self, RawDefault},
    diag::{ConfigErrors, Ctx},
    dns::{self, RawDns},
    document::{self, Keys},
    general::{self, RawGeneral},
    ipv6::{self, RawIpv6},
    policy::{self, RawPolicy},
    schema::{Field, S},
    set::{self, RawSet},
    vrrp::{self, RawVrrp},
    wan::{self, RawWan},
};

pub(super) const ROOT: &[Field] = &[
    general::FIELD,
    wan::FIELD,
    policy::FIELD,
    set::FIELD,
    default::FIELD,
    control::FIELD,
    dns::FIELD,
    vrrp::FIELD,
    ipv6::FIELD,
];

/// The file as written, by section.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRoot {
    pub general: Option<S<RawGeneral>>,
    pub wan: Option<S<Vec<S<RawWan>>>>,
    pub policy: Option<S<Vec<S<RawPolicy>>>>,
    pub set: Option<S<Vec<S<RawSet>>>>,
    pub default: Option<S<RawDefault>>,
    pub control: Option<S<RawControl>>,
    pub dns: Option<S<RawDns>>,
    pub vrrp: Option<S<Vec<S<RawVrrp>>>>,
    pub ipv6: Option<S<RawIpv6>>,
}

/// The whole configuration in `text`, read from `path`.
pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    document::check(text, path, Keys::All(ROOT), build)
}

fn build(cx: &mut Ctx<'_>, raw: RawRoot) -> Config {
    let general_span = raw.general.as_ref().map_or(0..0, |g| g.span());
    // A refusal for memory or capacity points at the limit's own line.
    let memory_span = raw
        .general
        .as_ref()
        .and_then(|g| g.get_ref().max_memory.as_ref())
        .map_or(general_span, |v| v.span());
    let capacity_spans = general::capacity_spans(raw.general.as_ref());
    let mask_span = raw
        .general
        .as_ref()
        .and_then(|g| g.get_ref().mark_mask.as_ref())
        .map(|v| v.span());
    let general = general::build(cx, raw.general);
    let (wans, prefix6_spans) = wan::build(cx, raw.wan, &general, mask_span);
    let ipv6 = ipv6::build(cx, raw.ipv6, &wans, &prefix6_spans);
    let vrrp = vrrp::build(cx, raw.vrrp, &wan::defined(&wans));
    let policies = policy::build(cx, raw.policy, &wan::defined(&wans));
    let policy_names = policy::defined(&policies);
    let sets = set::build(
        cx,
        raw.set,
        &policy_names,
        &general,
        (&capacity_spans, &memory_span),
    );
    let default = default::build(cx, raw.default, &policy_names);
    let control = control::build(cx, raw.control);
    let dns = dns::build(cx, raw.dns);
    Config {
        path: cx.file.to_path_buf(),
        general,
        wans,
        policies,
        sets,
        default,
        control,
        dns,
        vrrp,
        ipv6,
    }
}

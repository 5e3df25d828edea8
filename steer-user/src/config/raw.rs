//! The file as written: every key optional and spanned, every integer an `i64`, every enum a
//! string. The schema walk has already checked types and presence; validation turns this into
//! [`super::Config`] and reports everything else.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;
pub(crate) type Strings = S<Vec<S<String>>>;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRoot {
    pub general: Option<S<RawGeneral>>,
    pub wan: Option<S<Vec<S<RawWan>>>>,
    pub policy: Option<S<Vec<S<RawPolicy>>>>,
    pub set: Option<S<Vec<S<RawSet>>>>,
    pub default: Option<S<RawDefault>>,
    pub control: Option<S<RawControl>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGeneral {
    pub lan: Option<Strings>,
    pub mark_mask: Option<S<i64>>,
    pub xdp: Option<S<bool>>,
    pub pin_dir: Option<S<String>>,
    pub capacity: Option<S<RawCapacity>>,
    pub log_packets: Option<S<bool>>,
    pub duplicates: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCapacity {
    pub dst_v4: Option<S<i64>>,
    pub dst_v6: Option<S<i64>>,
    pub src_v4: Option<S<i64>>,
    pub src_v6: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWan {
    pub name: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub mark: Option<S<i64>>,
    pub table: Option<S<i64>>,
    pub gateway: Option<S<String>>,
    pub gateway6: Option<S<String>>,
    pub track: Option<S<RawTrack>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTrack {
    pub method: Option<S<String>>,
    pub targets: Option<Strings>,
    pub query: Option<S<String>>,
    pub host: Option<S<String>>,
    pub interval_ms: Option<S<i64>>,
    pub timeout_ms: Option<S<i64>>,
    pub reliability: Option<S<i64>>,
    pub down_after: Option<S<i64>>,
    pub up_after: Option<S<i64>>,
    pub max_latency_ms: Option<S<i64>>,
    pub max_loss_percent: Option<S<i64>>,
    pub recover_latency_ms: Option<S<i64>>,
    pub recover_loss_percent: Option<S<i64>>,
    pub loss_window: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPolicy {
    pub name: Option<S<String>>,
    pub members: Option<S<Vec<S<RawMember>>>>,
    pub last_resort: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMember {
    pub wan: Option<S<String>>,
    pub metric: Option<S<i64>>,
    pub weight: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSet {
    pub name: Option<S<String>>,
    pub policy: Option<S<String>>,
    #[serde(rename = "match")]
    pub direction: Option<S<String>>,
    pub prefixes: Option<Strings>,
    pub files: Option<Strings>,
    pub domains: Option<Strings>,
    pub allow_default_route: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDefault {
    pub policy: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawControl {
    pub socket: Option<S<String>>,
    pub metrics: Option<S<String>>,
}

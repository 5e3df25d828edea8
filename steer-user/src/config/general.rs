//! `[general]`: the LAN interfaces, the packet-mark bits steer owns, the pin directory, the map
//! capacities and the duplicates policy — its keys, their raw form and their checks.

use std::{collections::HashSet, ops::Range, path::PathBuf};

use serde::Deserialize;

use super::{
    Capacity, DEFAULT_MARK_MASK, DEFAULT_PIN_DIR, DuplicatePolicy, General, LocalScope,
    MAX_CAPACITY, Written,
    check::{self, Bounds, Choices},
    diag::Ctx,
    names::ifname_problem,
    schema::{
        Example, Field,
        Kind::{Bool, Int, Str, StrList, Table},
        S, Strings, opt, opt_int, opt_shown, req,
    },
};
use crate::model::PrefixMap;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawGeneral {
    pub lan: Option<Strings>,
    pub mark_mask: Option<S<i64>>,
    pub xdp: Option<S<bool>>,
    pub pin_dir: Option<S<String>>,
    pub capacity: Option<S<RawCapacity>>,
    pub max_memory: Option<S<String>>,
    pub log_packets: Option<S<bool>>,
    pub duplicates: Option<S<String>>,
    pub local: Option<S<String>>,
    pub local_prefixes: Option<Strings>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCapacity {
    pub dst_v4: Option<S<i64>>,
    pub dst_v6: Option<S<i64>>,
    pub src_v4: Option<S<i64>>,
    pub src_v6: Option<S<i64>>,
}

impl RawCapacity {
    /// The key of `map`'s capacity, if written.
    fn of(&self, map: PrefixMap) -> Option<&S<i64>> {
        match map {
            PrefixMap::DstV4 => self.dst_v4.as_ref(),
            PrefixMap::DstV6 => self.dst_v6.as_ref(),
            PrefixMap::SrcV4 => self.src_v4.as_ref(),
            PrefixMap::SrcV6 => self.src_v6.as_ref(),
        }
    }
}

/// Where an error about each map's capacity (by [`PrefixMap::index`]) points: the key where
/// it is written, else the `[general.capacity]` table, else `[general]`. (The whole
/// `[general]` table of a file that writes only `[general.capacity]` starts at 1:1, so the
/// key's own place is what tells the reader which line to change.)
pub(super) fn capacity_spans(g: Option<&S<RawGeneral>>) -> [Range<usize>; PrefixMap::ALL.len()] {
    let general = g.map_or(0..0, |g| g.span());
    let table = g.and_then(|g| g.get_ref().capacity.as_ref());
    PrefixMap::ALL.map(|map| match table {
        Some(t) => t.get_ref().of(map).map_or_else(|| t.span(), |v| v.span()),
        None => general.clone(),
    })
}

pub(super) const EXAMPLE: &str = "[general] with lan = [\"br-lan\"]";

pub(super) const FIELD: Field = req("general", Table(FIELDS), EXAMPLE).when_missing(
    "the [general] section is missing",
    "add ",
    " (the interfaces whose traffic steer classifies)",
);

const FIELDS: &[Field] = &[
    req("lan", StrList, "lan = [\"br-lan\"]"),
    opt_shown("mark_mask", Int, Example::Hex(DEFAULT_MARK_MASK)),
    opt("xdp", Bool, "xdp = false"),
    PIN_DIR,
    opt(
        "capacity",
        Table(CAPACITY),
        "[general.capacity] with dst_v4 = 2097152",
    ),
    opt("max_memory", Str, MAX_MEMORY_EXAMPLE),
    opt("log_packets", Bool, "log_packets = false"),
    opt("duplicates", Str, "duplicates = \"error\""),
    opt("local", Str, "local = \"routes\""),
    opt(
        "local_prefixes",
        StrList,
        "local_prefixes = [\"172.16.0.0/12\"]",
    ),
];

const CAPACITY: &[Field] = &[
    opt_int("dst_v4", steer_common::DEFAULT_CAPACITY_DST_V4),
    opt_int("dst_v6", steer_common::DEFAULT_CAPACITY_DST_V6),
    opt_int("src_v4", steer_common::DEFAULT_CAPACITY_SRC_V4),
    opt_int("src_v6", steer_common::DEFAULT_CAPACITY_SRC_V6),
];

const MAX_MEMORY_EXAMPLE: &str = "max_memory = \"64M\"";

pub(super) const PIN_DIR: Field = opt_shown(
    "pin_dir",
    Str,
    Example::Pieces(&["pin_dir = \"", DEFAULT_PIN_DIR, "\""]),
);

const CAPACITY_BOUNDS: Bounds = Bounds {
    lo: 1,
    hi: MAX_CAPACITY as i64,
    unit: "entries",
};

const LOCAL: Choices<LocalScope> = Choices {
    what: "local",
    words: &[
        ("routes", LocalScope::Routes),
        ("connected", LocalScope::Connected),
        ("off", LocalScope::Off),
    ],
};

const DUPLICATES: Choices<DuplicatePolicy> = Choices {
    what: "duplicates policy",
    words: &[
        ("error", DuplicatePolicy::Error),
        ("first-set-wins", DuplicatePolicy::FirstSetWins),
    ],
};

pub(super) fn build(cx: &mut Ctx<'_>, raw: Option<S<RawGeneral>>) -> General {
    let g = raw.map(S::into_inner).unwrap_or_default();
    let (lan, lan_places) = lan(cx, &g.lan);
    General {
        lan,
        lan_places,
        mark_mask: mark_mask(cx, &g.mark_mask),
        mark_mask_place: Written(g.mark_mask.as_ref().map(|v| cx.src.locate(v.span().start))),
        xdp: g.xdp.as_ref().is_some_and(|v| *v.get_ref()),
        pin_dir: pin_dir(cx, &g),
        pin_dir_place: Written(g.pin_dir.as_ref().map(|v| cx.src.locate(v.span().start))),
        capacity: capacity(cx, &g),
        log_packets: g.log_packets.as_ref().is_some_and(|v| *v.get_ref()),
        duplicates: check::choice(
            cx,
            &g.duplicates,
            "general.duplicates",
            &DUPLICATES,
            DuplicatePolicy::Error,
        ),
        local: check::choice(cx, &g.local, "general.local", &LOCAL, LocalScope::Routes),
        local_prefixes: check::prefixes(cx, &g.local_prefixes, "general.local_prefixes"),
    }
}

/// The mask that WAN marks are checked against, unless it was refused (and reported): every
/// mark would then look wrong.
pub(super) fn usable_mark_mask(cx: &Ctx<'_>, general: &General) -> Option<u32> {
    let refused = general.mark_mask == 0 || cx.mistyped("general.mark_mask");
    (!refused).then_some(general.mark_mask)
}

/// The LAN interfaces, and where each is written.
fn lan(cx: &mut Ctx<'_>, list: &Option<Strings>) -> (Vec<String>, Vec<Written>) {
    let Some(list) = list else {
        return Default::default();
    };
    if list.get_ref().is_empty() {
        cx.err(
            &list.span(),
            "general.lan",
            "no LAN interface is listed",
            "list the interfaces whose incoming traffic steer should classify, e.g. lan = [\"br-lan\"]",
        );
    }
    let mut seen = HashSet::new();
    let mut lan = Vec::new();
    let mut places = Vec::new();
    for (i, v) in list.get_ref().iter().enumerate() {
        let field = format!("general.lan[{i}]");
        if cx.mistyped(&field) {
            continue;
        }
        if let Some(problem) = ifname_problem(v.get_ref()) {
            cx.err(
                &v.span(),
                &field,
                problem,
                "use the interface name as `ip link` shows it, e.g. br-lan",
            );
        } else if !seen.insert(v.get_ref().clone()) {
            cx.err(
                &v.span(),
                &field,
                format!("interface `{}` is listed twice", v.get_ref()),
                "list each interface once",
            );
        }
        lan.push(v.get_ref().clone());
        places.push(Written(Some(cx.src.locate(v.span().start))));
    }
    (lan, places)
}

/// The mask as written, or 0 after reporting.
fn mark_mask(cx: &mut Ctx<'_>, v: &Option<S<i64>>) -> u32 {
    let Some(v) = v else {
        return DEFAULT_MARK_MASK;
    };
    let n = *v.get_ref();
    let (message, hint) = if n == 0 {
        (
            "mark_mask is 0, so steer would own no bits of the packet mark",
            "set the bits steer may use, e.g. mark_mask = 0xff00",
        )
    } else if let Ok(mask) = u32::try_from(n) {
        return mask;
    } else {
        (
            "mark_mask must fit in the 32-bit packet mark",
            "use a value from 0x1 to 0xffffffff, e.g. 0xff00",
        )
    };
    cx.err(&v.span(), "general.mark_mask", message, hint);
    0
}

pub(super) fn pin_dir(cx: &mut Ctx<'_>, g: &RawGeneral) -> PathBuf {
    match &g.pin_dir {
        None => PathBuf::from(DEFAULT_PIN_DIR),
        Some(v) => check::absolute(
            cx,
            v,
            "general.pin_dir",
            &format!("e.g. {DEFAULT_PIN_DIR} (on a bpf filesystem)"),
        ),
    }
}

fn capacity(cx: &mut Ctx<'_>, g: &RawGeneral) -> Capacity {
    let d = Capacity {
        memory: g.max_memory.as_ref().and_then(|v| max_memory(cx, v)),
        ..Capacity::default()
    };
    let Some(c) = &g.capacity else { return d };
    let c = c.get_ref();
    let mut entries = |map: PrefixMap, v: &Option<S<i64>>| {
        let field = format!("general.capacity.{}", map.key());
        check::opt_ranged(cx, v, &field, CAPACITY_BOUNDS, d.of(map))
    };
    Capacity {
        dst_v4: entries(PrefixMap::DstV4, &c.dst_v4),
        dst_v6: entries(PrefixMap::DstV6, &c.dst_v6),
        src_v4: entries(PrefixMap::SrcV4, &c.src_v4),
        src_v6: entries(PrefixMap::SrcV6, &c.src_v6),
        memory: d.memory,
    }
}

/// `max_memory`: bytes, written as systemd's `MemoryMax=` takes them (`K`, `M`, `G` are powers
/// of 1024), or `None` after reporting.
fn max_memory(cx: &mut Ctx<'_>, v: &S<String>) -> Option<u64> {
    let (bytes, problem) = match parse_size(v.get_ref()) {
        Ok(0) => (None, "0 bytes leaves no room for any set".to_owned()),
        Ok(n) => (Some(n), String::new()),
        Err(problem) => (None, problem),
    };
    if bytes.is_none() {
        cx.err(
            &v.span(),
            "general.max_memory",
            problem,
            format!("write a size with K, M or G (powers of 1024), e.g. {MAX_MEMORY_EXAMPLE}"),
        );
    }
    bytes
}

/// A size such as `96M`, `1G`, `65536` (bytes), or why it is not one.
fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("unknown unit `{unit}` in `{text}`")),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a size"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;
    use crate::config::testing::{BASE, Scratch, errors_of};

    #[test]
    fn a_capacity_error_points_at_the_capacity_key() {
        let dir = Scratch::new("capacity-place");
        let text = format!(
            "{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\nprefixes = [\"192.0.2.0/24\", \
             \"198.51.100.0/24\", \"203.0.113.0/24\", \"2001:db8::/32\"]\n\
             [general.capacity]\nsrc_v4 = 10\n  dst_v4 = 2\n"
        );
        let key_line = text.lines().position(|l| l.contains("dst_v4")).unwrap() + 1;
        let config = dir.write("steer.toml", &text);
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(e.field, "general.capacity.dst_v4");
        assert_eq!((e.line, e.column), (key_line, 12), "{e}");
        assert!(e.message.starts_with("the sets hold 3 "), "{e}");
    }

    #[test]
    fn sizes_read_as_systemd_reads_them() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("96M"), Ok(96 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert!(parse_size("96X").unwrap_err().contains("unknown unit `X`"));
        assert!(parse_size("1.5G").unwrap_err().contains("not a size"));
        assert!(parse_size("M").unwrap_err().contains("not a size"));
        assert!(
            parse_size("99999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }
}

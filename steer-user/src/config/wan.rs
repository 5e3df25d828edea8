//! `[[wan]]`: each WAN's name, interface, mark, routing table and gateways — its keys, their raw
//! form and their checks. Its `[wan.track]` table is the `track` module's.

use serde::Deserialize;

use super::{
    General, NextHop, Wan, Written,
    check::Claims,
    diag::Ctx,
    general,
    ipv6::{self, Prefix6Span},
    names::{check_object_name, ifname_problem},
    references::Defined,
    schema::{
        Field,
        Kind::{Int, Str, TableList},
        S, item_label, opt, req,
    },
    track::{self, RawTrack},
};
use crate::{
    prefix::{AddrError, is_unicast, parse_addr},
    shown::shown,
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawWan {
    pub name: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub mark: Option<S<i64>>,
    pub table: Option<S<i64>>,
    pub gateway: Option<S<String>>,
    pub gateway6: Option<S<String>>,
    pub prefix6: Option<S<String>>,
    pub track: Option<S<RawTrack>>,
}

pub(super) const EXAMPLE: &str = "[[wan]] with name, interface, mark, table and [wan.track]";
pub(super) const NAME_EXAMPLE: &str = "name = \"wan1\"";
pub(super) const TABLE_EXAMPLE: &str = "table = 101";

pub(super) const FIELD: Field = req("wan", TableList(FIELDS), EXAMPLE).when_missing(
    "no WAN is defined",
    "add at least one ",
    "",
);

const FIELDS: &[Field] = &[
    req("name", Str, NAME_EXAMPLE),
    req("interface", Str, "interface = \"eth1\""),
    req("mark", Int, "mark = 0x100"),
    req("table", Int, TABLE_EXAMPLE),
    opt("gateway", Str, "gateway = \"auto\""),
    opt("gateway6", Str, "gateway6 = \"auto\""),
    opt("prefix6", Str, "prefix6 = \"auto\""),
    track::FIELD,
];

/// What each WAN must have to itself, and which WAN has it.
struct Taken {
    names: Claims<String, ()>,
    interfaces: Claims<String, String>,
    marks: Claims<u32, String>,
    tables: Claims<u32, String>,
}

/// The WANs, and where each one's `prefix6` is written (for `[ipv6]`'s checks).
pub(super) fn build(
    cx: &mut Ctx<'_>,
    raw: Option<S<Vec<S<RawWan>>>>,
    general: &General,
    mask_span: Option<std::ops::Range<usize>>,
) -> (Vec<Wan>, Vec<Prefix6Span>) {
    let Some(raw) = raw else {
        return (Vec::new(), Vec::new());
    };
    let list_span = raw.span();
    let raw = raw.into_inner();
    if raw.is_empty() {
        cx.err(
            &list_span,
            "wan",
            "no WAN is defined",
            format!("add at least one {EXAMPLE}"),
        );
    }
    // A mask without room for the WANs is the mask's error; checking each mark against it
    // would only blame the marks.
    let mask = general::usable_mark_mask(cx, general).filter(|&mask| {
        let Some(span) = &mask_span else { return true };
        mask_has_room(cx, span, mask, raw.len())
    });
    let mut taken = Taken {
        names: Claims::new(),
        interfaces: Claims::new(),
        marks: Claims::new(),
        tables: Claims::new(),
    };
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut names = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let span = w.span();
        let w = w.into_inner();
        let label = item_label("", "wan", i, w.name.as_ref().map(|n| n.get_ref().as_str()));
        if i == steer_common::MAX_WANS as usize {
            cx.err(
                &span,
                &label,
                format!(
                    "too many WANs: steer supports at most {}",
                    steer_common::MAX_WANS
                ),
                "remove WANs you do not need",
            );
            // The rest is not checked: one error says it, and some checks compare every
            // pair of WANs.
            break;
        }
        if cx.mistyped(&label) {
            continue;
        }
        spans.push(w.prefix6.as_ref().map_or(span, |v| v.span()));
        let name_span = w.name.as_ref().map(|n| n.span());
        out.push(wan(cx, w, &label, &general.lan, mask, &mut taken));
        names.push((label, name_span));
    }
    names_not_interfaces(cx, &out, &names);
    (out, spans)
}

/// A WAN named like another WAN's interface: `steer wan NAME` (what a DHCP hook runs with the
/// interface it knows) would act on the WAN of that name, not on the one on that interface.
fn names_not_interfaces(
    cx: &mut Ctx<'_>,
    wans: &[Wan],
    names: &[(String, Option<std::ops::Range<usize>>)],
) {
    for (w, (label, span)) in wans.iter().zip(names) {
        let Some(span) = span else { continue };
        let Some(other) = wans
            .iter()
            .find(|o| o.interface == w.name && o.name != w.name)
        else {
            continue;
        };
        cx.err(
            span,
            format!("{label}.name"),
            format!(
                "`{}` is the interface of WAN `{}`: `steer wan {}` (a DHCP hook on that \
                 interface) would mean this WAN",
                w.name, other.name, w.name
            ),
            "name the WAN after no other WAN's interface (naming it after its own is fine)",
        );
    }
}

/// The WANs' names, for the sections that refer to them.
pub(super) fn defined(wans: &[Wan]) -> Defined {
    Defined::new("WAN", "WANs", "wan", wans.iter().map(|w| &w.name))
}

fn wan(
    cx: &mut Ctx<'_>,
    w: RawWan,
    label: &str,
    lan: &[String],
    mask: Option<u32>,
    taken: &mut Taken,
) -> Wan {
    let f = |k: &str| format!("{label}.{k}");
    if let Some(n) = &w.name {
        check_object_name(cx, n, &f("name"), "WAN", &mut taken.names);
    }
    let name = w
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_default();
    if let Some(v) = &w.interface {
        interface(cx, v, &f("interface"), &name, lan, &mut taken.interfaces);
    }
    let mark = w.mark.as_ref().map_or(0, |v| {
        self::mark(cx, v, &f("mark"), &name, mask, &mut taken.marks)
    });
    let table = w.table.as_ref().map_or(0, |v| {
        self::table(cx, v, &f("table"), &name, &mut taken.tables)
    });
    let gateway = w
        .gateway
        .as_ref()
        .map_or(NextHop::Auto, |v| next_hop(cx, v, &f("gateway"), true));
    let gateway6 = w
        .gateway6
        .as_ref()
        .map_or(NextHop::Auto, |v| next_hop(cx, v, &f("gateway6"), false));
    let prefix6 = w
        .prefix6
        .as_ref()
        .and_then(|v| ipv6::wan_prefix(cx, v, &f("prefix6")));
    let track = track::build(cx, w.track, &f("track"));
    let place = |v: &Option<S<i64>>| Written(v.as_ref().map(|v| cx.src.locate(v.span().start)));
    let (mark_place, table_place) = (place(&w.mark), place(&w.table));
    let interface_place = Written(w.interface.as_ref().map(|v| cx.src.locate(v.span().start)));
    Wan {
        name,
        interface: w.interface.map(S::into_inner).unwrap_or_default(),
        interface_place,
        mark,
        table,
        mark_place,
        table_place,
        gateway,
        gateway6,
        prefix6,
        track,
    }
}

fn interface(
    cx: &mut Ctx<'_>,
    v: &S<String>,
    field: &str,
    wan: &str,
    lan: &[String],
    interfaces: &mut Claims<String, String>,
) {
    let interface = v.get_ref();
    if let Some(problem) = ifname_problem(interface) {
        cx.err(
            &v.span(),
            field,
            problem,
            "use the interface name as `ip link` shows it, e.g. eth1 or pppoe-wan",
        );
    } else if lan.contains(interface) {
        cx.err(
            &v.span(),
            field,
            format!("`{interface}` is also listed in general.lan"),
            "a WAN interface carries traffic to the internet; list only LAN-side interfaces in general.lan",
        );
    } else if let Err((other, line)) =
        interfaces.claim(cx, interface.clone(), wan.to_owned(), &v.span())
    {
        cx.err(
            &v.span(),
            field,
            format!("`{interface}` is already the interface of WAN `{other}` (line {line})"),
            "each WAN needs its own interface: its carrier and probes tell about that line only",
        );
    }
}

/// The WAN's mark (0 after reporting one that cannot be used at all). `mask` is the usable
/// general.mark_mask; without one, only what does not depend on it is checked.
fn mark(
    cx: &mut Ctx<'_>,
    v: &S<i64>,
    field: &str,
    wan: &str,
    mask: Option<u32>,
    marks: &mut Claims<u32, String>,
) -> u32 {
    let examples = mask.map_or_else(String::new, mark_examples);
    let n = *v.get_ref();
    if n == 0 {
        cx.err(
            &v.span(),
            field,
            "mark is 0, which means \"no WAN\"",
            format!("give each WAN its own nonzero mark inside general.mark_mask{examples}"),
        );
        return 0;
    }
    let Ok(mark) = u32::try_from(n) else {
        cx.err(
            &v.span(),
            field,
            "marks are 32-bit",
            format!("use a mark inside general.mark_mask{examples}"),
        );
        return 0;
    };
    if let Some(mask) = mask {
        check_mark_against_mask(cx, v, field, mark, mask, &examples);
    }
    if let Err((other, line)) = marks.claim(cx, mark, wan.to_owned(), &v.span()) {
        cx.err(
            &v.span(),
            field,
            format!("mark {mark:#x} is already used by WAN `{other}` (line {line})"),
            "each WAN needs its own mark, so packets for different WANs can be told apart",
        );
    }
    mark
}

/// Whether `mask` holds marks for `wans` WANs besides 0 ("no WAN") and the two last resorts
/// ([`crate::model::last_resort_marks`]); else reports it at `span` (general.mark_mask) with
/// the bits needed.
fn mask_has_room(cx: &mut Ctx<'_>, span: &std::ops::Range<usize>, mask: u32, wans: usize) -> bool {
    let bits = mask.count_ones();
    let values = 1u64 << bits;
    let room = values.saturating_sub(3);
    let wans = wans.max(1) as u64;
    if room >= wans {
        return true;
    }
    let need = (2..=32).find(|k| (1u64 << k) - 3 >= wans).unwrap_or(32);
    let shift = mask.trailing_zeros().min(32 - need);
    let example = u32::try_from(((1u64 << need) - 1) << shift).unwrap_or(0xff00);
    let (unreachable, blackhole) = crate::model::last_resort_marks(mask);
    let left = if room == 0 {
        "no room for any WAN mark".to_string()
    } else {
        format!("room for {room} WAN mark(s)")
    };
    cx.err(
        span,
        "general.mark_mask",
        format!(
            "mark_mask {mask:#x} has {bits} bit(s), so {values} marks: 0 means \"no WAN\" and the \
             two highest ({unreachable:#x}, {blackhole:#x}) are the `unreachable` and \
             `blackhole` last resorts, which leaves {left}; {wans} WAN(s) need a mask of at \
             least {need} bits"
        ),
        format!(
            "widen the mask, e.g. mark_mask = {example:#x} (the default 0xff00 holds 253 WANs), \
             and give each WAN a mark made of its bits"
        ),
    );
    false
}

/// `, such as 0x100 or 0x200`: the lowest marks made of the mask's bits.
fn mark_examples(mask: u32) -> String {
    let low = mask & mask.wrapping_neg();
    let mut e = vec![format!("{low:#x}")];
    if let Some(two) = low.checked_mul(2).filter(|t| t & !mask == 0) {
        e.push(format!("{two:#x}"));
    }
    format!(", such as {}", e.join(" or "))
}

/// A mark must be made of the mask's bits and must not be one of the two the last resorts use.
fn check_mark_against_mask(
    cx: &mut Ctx<'_>,
    v: &S<i64>,
    field: &str,
    mark: u32,
    mask: u32,
    examples: &str,
) {
    if mark & !mask != 0 {
        cx.err(
            &v.span(),
            field,
            if mark & mask == 0 {
                format!("mark {mark:#x} is outside general.mark_mask ({mask:#x})")
            } else {
                format!(
                    "mark {mark:#x} has bits outside general.mark_mask ({mask:#x}): {:#x}",
                    mark & !mask
                )
            },
            format!("use a mark made only of the mask's bits{examples}"),
        );
    }
    let (unreachable, blackhole) = crate::model::last_resort_marks(mask);
    if mark == unreachable || mark == blackhole {
        let what = if mark == unreachable {
            "unreachable"
        } else {
            "blackhole"
        };
        cx.err(
            &v.span(),
            field,
            format!(
                "mark {mark:#x} is reserved for the `{what}` last resort (the two highest \
                 marks inside mark_mask, {unreachable:#x} and {blackhole:#x}, are)"
            ),
            format!("use a lower mark inside general.mark_mask{examples}"),
        );
    }
}

/// The WAN's routing table, or 0 after reporting.
pub(super) fn table(
    cx: &mut Ctx<'_>,
    v: &S<i64>,
    field: &str,
    wan: &str,
    tables: &mut Claims<u32, String>,
) -> u32 {
    let n = *v.get_ref();
    let reserved = match n {
        0 => Some("unspec"),
        253 => Some("default"),
        254 => Some("main"),
        255 => Some("local"),
        _ => None,
    };
    if let Some(r) = reserved {
        cx.err(
            &v.span(),
            field,
            format!("table {n} is the kernel's reserved `{r}` table"),
            "steer owns and rewrites this WAN's table; pick an unused number such as 101",
        );
        return 0;
    }
    if !(1..(1i64 << 31)).contains(&n) {
        cx.err(
            &v.span(),
            field,
            format!("{n} is out of range: routing tables here are 1 to 2147483647"),
            "pick an unused table number such as 101",
        );
        return 0;
    }
    let table = n as u32;
    if let Err((other, line)) = tables.claim(cx, table, wan.to_owned(), &v.span()) {
        cx.err(
            &v.span(),
            field,
            format!("table {table} is already used by WAN `{other}` (line {line})"),
            "each WAN needs its own routing table",
        );
    }
    table
}

/// A next hop of the family the key is for (`v4`: `gateway`, else `gateway6`): `"auto"`,
/// `"none"` or an address. A bad value is reported and read as `auto`.
fn next_hop(cx: &mut Ctx<'_>, v: &S<String>, field: &str, v4: bool) -> NextHop {
    const WORDS: &str = "\"auto\" (learned from DHCP, PPP or router advertisements) or \"none\" \
                         (a point-to-point link)";
    let text = v.get_ref().trim();
    match text {
        "auto" => return NextHop::Auto,
        "none" => return NextHop::Direct,
        _ => {}
    }
    // A word, not an address: what it most likely meant (`Auto`, `dhcp`, `ra`), without the
    // address parser's talk of domain names.
    if text.chars().all(|c| c.is_ascii_alphabetic() || c == '-') && !text.is_empty() {
        let meant = match text.to_ascii_lowercase().as_str() {
            "none" | "direct" | "ppp" | "p2p" | "device" => "\"none\"",
            _ => "\"auto\"",
        };
        cx.err(
            &v.span(),
            field,
            format!("`{}` is neither an address nor a known word", shown(text)),
            format!("write {meant}: the words are {WORDS}; or the next hop's address"),
        );
        return NextHop::Auto;
    }
    let a = match parse_addr(text) {
        Ok(a) => a,
        Err(AddrError::ZoneId { without, .. }) => {
            cx.err(
                &v.span(),
                field,
                format!("`{}` has a zone id (%...)", shown(text)),
                format!(
                    "write `{}`: the WAN's route names its interface already",
                    shown(&without)
                ),
            );
            return NextHop::Auto;
        }
        Err(e) => {
            let hint = format!("{}; or {WORDS}", e.hint());
            cx.err(&v.span(), field, e.message(), hint);
            return NextHop::Auto;
        }
    };
    if a.is_ipv4() != v4 {
        let (msg, hint) = if v4 {
            (
                "`gateway` is the IPv4 next hop",
                "put an IPv6 gateway in `gateway6`",
            )
        } else {
            (
                "`gateway6` is the IPv6 next hop",
                "put an IPv4 gateway in `gateway`",
            )
        };
        cx.err(&v.span(), field, msg, hint);
        return NextHop::Auto;
    }
    if !is_unicast(a) || a.is_loopback() {
        cx.err(
            &v.span(),
            field,
            format!("{a} cannot be a gateway"),
            "write the address of the next-hop router on this WAN",
        );
        return NextHop::Auto;
    }
    NextHop::Via(a)
}

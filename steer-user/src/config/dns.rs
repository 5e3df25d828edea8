//! `[dns]`: how domain sets learn their addresses — the forwarder (listen addresses,
//! upstreams, timeout), snoop mode, lifetimes, capacities and rebinding protection — its keys,
//! their raw form and their checks. Without the section, sets' domains are not steered.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{
    check::{self, Bounds},
    diag::Ctx,
    schema::{
        Field,
        Kind::{Bool, StrList, Table},
        S, Strings, opt, opt_int,
    },
    targets::parse_socket_addr,
};
use crate::prefix::Prefix;

/// The `[dns]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Run the forwarder (`forward`, default true).
    pub forward: bool,
    /// Where the forwarder listens, UDP and TCP (required with `forward`).
    pub listen: Vec<SocketAddr>,
    /// Where it forwards, tried in order (required with `forward`).
    pub upstreams: Vec<SocketAddr>,
    /// Sources the forwarder answers besides the LAN's (the subnets the router routes out of
    /// a `general.lan` interface) and the router's own: a VPN's clients.
    pub clients: Vec<Prefix>,
    /// How long one upstream may take to answer before the next is tried (or SERVFAIL).
    pub timeout_ms: u32,
    /// Learned lifetimes: an answer's TTL clamped to `[min_ttl, max_ttl]` seconds.
    pub min_ttl: u32,
    pub max_ttl: u32,
    /// Learned hosts per family at most.
    pub capacity_v4: u32,
    pub capacity_v6: u32,
    /// Refuse private, loopback, link-local, ULA, unspecified, multicast and IPv4-mapped
    /// addresses (the router's own subnets are always refused).
    pub rebind_protection: bool,
    /// Networks learned even though rebinding protection covers them.
    pub rebind_allow: Vec<Prefix>,
    /// Answer `use-application-dns.net` with NXDOMAIN (browsers then keep the router's DNS).
    pub block_application_dns: bool,
    /// Snoop mode: learn from DNS answers routed to the LAN (plain DNS to other resolvers).
    pub snoop: bool,
    /// The NFQUEUE number snoop mode holds answers in, and the NFLOG group it is copied the
    /// queries on.
    pub snoop_queue: u16,
}

/// What an unwritten `[dns]` key means (also the documented defaults).
impl Dns {
    pub const DEFAULT_TIMEOUT_MS: u32 = 2000;
    pub const DEFAULT_MIN_TTL: u32 = 300;
    pub const DEFAULT_MAX_TTL: u32 = 86_400;
    pub const DEFAULT_CAPACITY_V4: u32 = 65_536;
    pub const DEFAULT_CAPACITY_V6: u32 = 65_536;
    pub const DEFAULT_SNOOP_QUEUE: u16 = 5353;
    /// Longest lifetime steer keeps (a week).
    pub const MAX_TTL_LIMIT: u32 = 604_800;
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDns {
    pub forward: Option<S<bool>>,
    pub listen: Option<Strings>,
    pub upstreams: Option<Strings>,
    pub clients: Option<Strings>,
    pub timeout_ms: Option<S<i64>>,
    pub min_ttl: Option<S<i64>>,
    pub max_ttl: Option<S<i64>>,
    pub capacity_v4: Option<S<i64>>,
    pub capacity_v6: Option<S<i64>>,
    pub rebind_protection: Option<S<bool>>,
    pub rebind_allow: Option<Strings>,
    pub block_application_dns: Option<S<bool>>,
    pub snoop: Option<S<bool>>,
    pub snoop_queue: Option<S<i64>>,
}

pub(super) const FIELD: Field = opt(
    "dns",
    Table(FIELDS),
    "[dns] with listen = [\"192.168.1.1:53\"] and upstreams = [\"127.0.0.1:5335\"]",
);

const FIELDS: &[Field] = &[
    opt("forward", Bool, "forward = true"),
    opt("listen", StrList, "listen = [\"192.168.1.1:53\"]"),
    opt("upstreams", StrList, "upstreams = [\"127.0.0.1:5335\"]"),
    opt("clients", StrList, "clients = [\"10.8.0.0/24\"]"),
    opt_int("timeout_ms", Dns::DEFAULT_TIMEOUT_MS),
    opt_int("min_ttl", Dns::DEFAULT_MIN_TTL),
    opt_int("max_ttl", Dns::DEFAULT_MAX_TTL),
    opt_int("capacity_v4", Dns::DEFAULT_CAPACITY_V4),
    opt_int("capacity_v6", Dns::DEFAULT_CAPACITY_V6),
    opt("rebind_protection", Bool, "rebind_protection = true"),
    opt("rebind_allow", StrList, "rebind_allow = [\"10.20.0.0/16\"]"),
    opt(
        "block_application_dns",
        Bool,
        "block_application_dns = true",
    ),
    opt("snoop", Bool, "snoop = false"),
    opt_int("snoop_queue", Dns::DEFAULT_SNOOP_QUEUE as u32),
];

const TIMEOUT: Bounds = Bounds {
    lo: 10,
    hi: 30_000,
    unit: "ms",
};
const TTL: Bounds = Bounds {
    lo: 0,
    hi: Dns::MAX_TTL_LIMIT as i64,
    unit: "seconds",
};
const CAPACITY: Bounds = Bounds {
    lo: 1,
    hi: steer_common::LEARNED_MAX_ENTRIES as i64,
    unit: "entries",
};
const QUEUE: Bounds = Bounds {
    lo: 0,
    hi: 65_535,
    unit: "",
};

fn flag(v: &Option<S<bool>>, default: bool) -> bool {
    v.as_ref().map_or(default, |v| *v.get_ref())
}

pub(super) fn build(cx: &mut Ctx<'_>, raw: Option<S<RawDns>>) -> Option<Dns> {
    let raw = raw?;
    let span = raw.span();
    let d = raw.into_inner();
    let forward = flag(&d.forward, true);
    let listen = addresses(cx, &d.listen, "dns.listen");
    let upstreams = addresses(cx, &d.upstreams, "dns.upstreams");
    if forward {
        for (list, key, example) in [
            (
                &d.listen,
                "listen",
                "listen = [\"192.168.1.1:53\"] (the router's LAN address)",
            ),
            (
                &d.upstreams,
                "upstreams",
                "upstreams = [\"127.0.0.1:5335\"] (e.g. dnsmasq moved to port 5335)",
            ),
        ] {
            let missing = list.as_ref().is_none_or(|l| l.get_ref().is_empty());
            if missing && !cx.mistyped(&format!("dns.{key}")) {
                cx.err_value(
                    &span,
                    format!("dns.{key}"),
                    "",
                    format!("the forwarder needs `{key}`"),
                    format!("add {example}, or set forward = false for snoop mode alone"),
                );
            }
        }
    }
    check_no_loop(cx, &d.upstreams, &listen, &upstreams);
    let min_ttl = check::opt_ranged(cx, &d.min_ttl, "dns.min_ttl", TTL, Dns::DEFAULT_MIN_TTL);
    let max_ttl = check::opt_ranged(cx, &d.max_ttl, "dns.max_ttl", TTL, Dns::DEFAULT_MAX_TTL);
    if max_ttl < min_ttl {
        let at = d
            .max_ttl
            .as_ref()
            .or(d.min_ttl.as_ref())
            .map_or(span.clone(), S::span);
        cx.err(
            &at,
            "dns.max_ttl",
            format!("max_ttl ({max_ttl} s) is below min_ttl ({min_ttl} s)"),
            "make max_ttl at least min_ttl",
        );
    }
    let snoop_queue = check::opt_ranged(
        cx,
        &d.snoop_queue,
        "dns.snoop_queue",
        QUEUE,
        u32::from(Dns::DEFAULT_SNOOP_QUEUE),
    );
    Some(Dns {
        forward,
        listen,
        upstreams,
        clients: check::prefixes(cx, &d.clients, "dns.clients"),
        timeout_ms: check::opt_ranged(
            cx,
            &d.timeout_ms,
            "dns.timeout_ms",
            TIMEOUT,
            Dns::DEFAULT_TIMEOUT_MS,
        ),
        min_ttl,
        max_ttl,
        capacity_v4: check::opt_ranged(
            cx,
            &d.capacity_v4,
            "dns.capacity_v4",
            CAPACITY,
            Dns::DEFAULT_CAPACITY_V4,
        ),
        capacity_v6: check::opt_ranged(
            cx,
            &d.capacity_v6,
            "dns.capacity_v6",
            CAPACITY,
            Dns::DEFAULT_CAPACITY_V6,
        ),
        rebind_protection: flag(&d.rebind_protection, true),
        rebind_allow: check::prefixes(cx, &d.rebind_allow, "dns.rebind_allow"),
        block_application_dns: flag(&d.block_application_dns, true),
        snoop: flag(&d.snoop, false),
        snoop_queue: u16::try_from(snoop_queue).unwrap_or(Dns::DEFAULT_SNOOP_QUEUE),
    })
}

/// `address:port` entries, each once.
fn addresses(cx: &mut Ctx<'_>, list: &Option<Strings>, key: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, v) in list.iter().flat_map(|l| l.get_ref().iter()).enumerate() {
        let field = format!("{key}[{i}]");
        if cx.mistyped(&field) {
            continue;
        }
        match parse_socket_addr(v.get_ref()) {
            Ok(a) if out.contains(&a) => cx.err(
                &v.span(),
                &field,
                format!("{a} is listed twice"),
                "list each address once",
            ),
            Ok(a) if key == "dns.listen" && unservable(a).is_some() => {
                let (m, h) = unservable(a).unwrap_or_default();
                cx.err(&v.span(), &field, m, h);
            }
            Ok(a) => out.push(a),
            // A port-less entry: the example port is DNS's.
            Err((m, _)) if m.ends_with("has no port") => cx.err(
                &v.span(),
                &field,
                m,
                format!("add the port, e.g. {}:53", v.get_ref().trim()),
            ),
            Err((m, h)) => cx.err(&v.span(), &field, m, h),
        }
    }
    out
}

/// Why the forwarder cannot serve on `a`: a UDP answer to a query sent to one address of a
/// wildcard socket may leave from another (clients drop it), and a link-local address needs
/// an interface, which a listen address cannot name.
fn unservable(a: SocketAddr) -> Option<(String, String)> {
    match a.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => Some((
            format!("the forwarder cannot listen on {a}: its UDP answers to a query sent to a secondary address would come from another one, which clients drop"),
            "list each address the LAN asks, e.g. listen = [\"192.168.1.1:53\"]".into(),
        )),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => Some((
            format!("the forwarder cannot listen on {a}: its UDP answers to a query sent to one of the router's addresses may come from another one, which clients drop"),
            "list each address the LAN asks, e.g. listen = [\"[fd00::1]:53\"]".into(),
        )),
        std::net::IpAddr::V6(ip) if ip.is_unicast_link_local() => Some((
            format!("the forwarder cannot listen on {a}: a link-local address is one of every interface's, and a listen address cannot name the interface"),
            "list the LAN's global or ULA address instead (and announce that one as the DNS server)".into(),
        )),
        _ => None,
    }
}

/// An upstream that is one of the listen addresses (or on the same port of a wildcard listen
/// address, from the loopback) would send every query back to steer.
fn check_no_loop(
    cx: &mut Ctx<'_>,
    raw: &Option<Strings>,
    listen: &[SocketAddr],
    upstreams: &[SocketAddr],
) {
    let Some(raw) = raw else { return };
    for (i, up) in upstreams.iter().enumerate() {
        let looped = listen.iter().any(|l| {
            l == up
                || (l.port() == up.port()
                    && l.ip().is_unspecified()
                    && (up.ip().is_loopback() || up.ip().is_unspecified()))
        });
        if looped && let Some(v) = raw.get_ref().get(i) {
            cx.err(
                &v.span(),
                format!("dns.upstreams[{i}]"),
                format!("{up} is where steer itself listens: queries would go round in a loop"),
                "point upstreams at the resolver behind steer, e.g. dnsmasq moved to 127.0.0.1:5335",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{BASE, errors_in};

    #[test]
    fn the_forwarder_needs_listen_and_upstreams_and_no_loop() {
        assert_eq!(
            errors_in(&format!("{BASE}\n[dns]\nmin_ttl = 10\n")),
            [
                "dns.listen: the forwarder needs `listen`",
                "dns.upstreams: the forwarder needs `upstreams`",
            ]
        );
        assert_eq!(
            errors_in(&format!(
                "{BASE}\n[dns]\nlisten = [\"0.0.0.0:53\", \"127.0.0.1:53\", \"127.0.0.1:53\", \"[fe80::1]:53\", \"[::]:53\"]\n\
                 upstreams = [\"127.0.0.1:53\", \"127.0.0.1\"]\n\
                 min_ttl = 600\nmax_ttl = 60\ncapacity_v4 = 0\nrebind_allow = [\"10.0.0.1/8\"]\n\
                 clients = [\"10.8.0.0/24\", \"10.9.0.1/16\", \"0.0.0.0/0\", 5]\n"
            )),
            [
                "dns.listen[0]: the forwarder cannot listen on 0.0.0.0:53: its UDP answers to a query sent to a secondary address would come from another one, which clients drop",
                "dns.listen[2]: 127.0.0.1:53 is listed twice",
                "dns.listen[3]: the forwarder cannot listen on [fe80::1]:53: a link-local address is one of every interface's, and a listen address cannot name the interface",
                "dns.listen[4]: the forwarder cannot listen on [::]:53: its UDP answers to a query sent to one of the router's addresses may come from another one, which clients drop",
                "dns.upstreams[0]: 127.0.0.1:53 is where steer itself listens: queries would go round in a loop",
                "dns.upstreams[1]: `127.0.0.1` has no port",
                "dns.max_ttl: max_ttl (60 s) is below min_ttl (600 s)",
                "dns.capacity_v4: 0 is out of range: it must be from 1 to 262144 entries",
                "dns.rebind_allow[0]: `10.0.0.1/8` has host bits set; the network is 10.0.0.0/8",
                "dns.clients[1]: `10.9.0.1/16` has host bits set; the network is 10.9.0.0/16",
                "dns.clients[2]: `0.0.0.0/0` matches every IPv4 address (a default route)",
                "dns.clients[3]: expected a string (in quotes), found an integer",
            ]
        );
        let snoop_only = format!("{BASE}\n[dns]\nforward = false\nsnoop = true\n");
        let c = crate::config::parse(&snoop_only, std::path::Path::new("s.toml")).unwrap();
        assert!(
            c.dns
                .is_some_and(|d| d.snoop && !d.forward && d.clients.is_empty())
        );
        let vpn = format!(
            "{BASE}\n[dns]\nlisten = [\"192.168.1.1:53\"]\nupstreams = [\"127.0.0.1:5335\"]\n\
             clients = [\"10.8.0.0/24\", \"fd08::/64\"]\n"
        );
        let c = crate::config::parse(&vpn, std::path::Path::new("s.toml")).unwrap();
        let clients: Vec<String> = c
            .dns
            .unwrap()
            .clients
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(clients, ["10.8.0.0/24", "fd08::/64"]);
    }
}

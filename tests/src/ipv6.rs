//! What the IPv6 multi-WAN tests share (`tests/ipv6_wans.rs`, `tests/ipv6_sources.rs`): steer
//! on the router of the delegated-prefix lab ([`Lab::with_delegated_prefixes`]), each ISP
//! dropping what it does not route, and the checks of where datagrams arrived from.

use std::{
    net::{IpAddr, Ipv6Addr},
    process::Output,
    time::Duration,
};

use steer::prefix::Prefix;

use crate::{
    daemon::{Daemon, Workdir},
    lab::{Arrival, Lab, Wan, nft_counter_packets, udp_arrivals},
    scenario::{Options, Scenario, config_text},
};

/// Datagrams a check sends.
pub const N: usize = 20;
/// Bound on every wait for the daemon or for traffic.
pub const SETTLE: Duration = Duration::from_secs(10);

/// SERVER_A6: the scenario sends it by wan1.
pub fn a6() -> IpAddr {
    Lab::SERVER_A6.into()
}

/// SERVER_B6 is in the scenario's `bypass` set (wan2-first); everything else goes by wan1.
pub fn b6() -> IpAddr {
    Lab::SERVER_B6.into()
}

/// `text` as a prefix (a test's own constant).
pub fn prefix(text: &str) -> Prefix {
    steer::prefix::parse_prefix(text, false).expect("a prefix")
}

/// The client's fd10::2 with its first `p.len()` bits replaced by `p`'s: what NPT with target
/// `p` makes of it.
pub fn client_in(p: Prefix) -> Ipv6Addr {
    let IpAddr::V6(net) = p.addr() else {
        panic!("{p} is not IPv6")
    };
    let mask = u128::MAX.checked_shl(128 - u32::from(p.len())).unwrap_or(0);
    Ipv6Addr::from((u128::from(net) & mask) | (u128::from(Lab::CLIENT_V6) & !mask))
}

/// The scenario's configuration with `ipv6` (an `[ipv6]` section) before the WANs and WAN N's
/// `prefix6` set to `prefix6[N - 1]` (`"auto"` or a prefix).
pub fn config(work: &Workdir, ipv6: &str, prefix6: [&str; 2]) -> String {
    let text = config_text(work, &Options::default());
    assert!(text.contains("[[wan]]"), "{text}");
    let mut text = text.replacen("[[wan]]", &format!("{ipv6}\n[[wan]]"), 1);
    for w in Wan::ALL {
        let line = format!("gateway6 = \"{}\"\n", Lab::gateway_v6(w));
        assert!(text.contains(&line), "{line} in {text}");
        text = text.replacen(
            &line,
            &format!("{line}prefix6 = \"{}\"\n", prefix6[w.index()]),
            1,
        );
    }
    text
}

/// The delegated-prefix lab with `steer run` on its router, routing in place.
pub fn start(tag: &str, ipv6: &str, prefix6: [&str; 2]) -> Scenario {
    crate::require_root();
    let lab = Lab::with_delegated_prefixes();
    let work = Workdir::new(tag);
    work.write("steer.toml", &config(&work, ipv6, prefix6));
    let daemon = Daemon::start(&lab.router, &work);
    let s = Scenario { daemon, work, lab };
    s.wait_until("routing in sync", SETTLE, |st| {
        st["routing"]["in_sync"] == true
    });
    s
}

/// A command's standard output and error, together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The router's rules, routes, addresses, nftables and steer's log, for failure messages.
pub fn router_state(s: &Scenario) -> String {
    let out = s.lab.router.try_run(
        "ip -6 rule; ip -6 route show table all; ip -6 addr; nft list ruleset 2>&1; \
         conntrack -L -f ipv6 2>&1",
    );
    let client = s.lab.client.try_run("ip -6 addr; ip -6 route");
    format!(
        "router:\n{}\nclient:\n{}\ndaemon log:\n{}",
        text(&out),
        text(&client),
        s.daemon.log_text()
    )
}

/// Both ISPs dropped nothing for a foreign source: the router sent them only what they route.
pub fn assert_no_foreign_source_reached_an_isp(s: &Scenario, when: &str) {
    let dropped = Wan::ALL.map(|w| s.lab.isp_foreign_sources(w));
    assert_eq!(
        dropped,
        [0, 0],
        "{when}: the ISPs dropped packets with a foreign IPv6 source [ISP 1, ISP 2]\n{}",
        router_state(s)
    );
}

/// All `n` datagrams arrived over `w`'s ISP link, each from `source`.
pub fn assert_all_from(s: &Scenario, got: &[Arrival], w: Wan, source: Ipv6Addr, what: &str) {
    let wrong: Vec<&Arrival> = got
        .iter()
        .filter(|a| a.link != Some(w) || a.from.ip() != IpAddr::V6(source))
        .collect();
    assert!(
        got.len() == N && wrong.is_empty(),
        "{what}: want {N} datagrams over ISP {} from {source}; got {} ({} otherwise: {wrong:?})\n{}",
        w.number(),
        got.len(),
        wrong.len(),
        router_state(s)
    );
}

/// Sends [`N`] datagrams from the client (the source its routing picks) to `server:port` and
/// asserts they all arrived over `w`'s ISP link from `source`.
pub fn assert_udp_from(s: &Scenario, server: IpAddr, port: u16, w: Wan, source: Ipv6Addr) {
    let got = udp_arrivals(&s.lab, server, port, N);
    assert_all_from(s, &got, w, source, &format!("udp to {server}:{port}"));
}

/// The router's count of IPv6 packets it refused to send out of `w` with a foreign source.
pub fn router_foreign(s: &Scenario, w: Wan) -> u64 {
    nft_counter_packets(
        &s.lab.router,
        "inet steer",
        &format!("foreign_source_{}", Lab::wan_iface(w)),
    )
}

//! Reloads whose cost follows the change (issue 15), with the real daemon in the namespace lab:
//! nothing changed reads and writes nothing, one changed list line writes exactly its entries,
//! and a bad or duplicate line in a changed list is refused where it is written with nothing
//! changed. What the kernel holds is read from the pinned maps, not from the daemon's word.

use std::{collections::BTreeSet, time::Duration};

use steer::{
    dataplane::Maps,
    model::{Direction, PrefixMap},
    prefix::Prefix,
};
use steer_tests::{
    daemon::{Daemon, Workdir},
    lab::{Lab, Stream, Wan},
    scenario::lab_wans,
};

/// A set `other` with an inline prefix, then a list-only set `big` (destinations, v4 and v6
/// from one file), both on wan2. `other` comes first, so a duplicate is reported in the list.
fn setup(tag: &str, list: &str) -> (Lab, Workdir, Daemon) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    work.write("lists/big.txt", list);
    work.write(
        "steer.toml",
        &format!(
            r#"
[general]
lan = ["lan0"]
{pins}
{wans}
[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2", metric = 1 }}, {{ wan = "wan1", metric = 2 }}]

[[set]]
name = "other"
policy = "wan2-first"
prefixes = ["192.0.2.128/25"]

[[set]]
name = "big"
policy = "wan2-first"
files = ["lists/big.txt"]
{control}"#,
            pins = work.private_paths(),
            wans = lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]"),
            control = work.control_section()
        ),
    );
    let daemon = Daemon::start(&lab.router, &work);
    (lab, work, daemon)
}

/// The list the tests start from: 2,000 IPv4 /24s and 200 IPv6 /48s.
fn list() -> Vec<String> {
    let mut lines: Vec<String> = (0..2000u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    lines.extend((0..200u32).map(|i| format!("2001:db8:{i:x}::/48")));
    lines
}

fn text(lines: &[String]) -> String {
    let mut t = String::from("# a list\n");
    for l in lines {
        t.push_str(l);
        t.push('\n');
    }
    t
}

/// Every destination prefix the kernel holds.
fn kernel(work: &Workdir) -> BTreeSet<Prefix> {
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    [PrefixMap::DstV4, PrefixMap::DstV6]
        .iter()
        .flat_map(|m| maps.prefixes(*m).expect("read map"))
        .map(|(p, _)| p)
        .collect()
}

fn p(s: &str) -> Prefix {
    steer::prefix::parse_prefix(s, false).unwrap()
}

/// A list written less than a second ago is waited for (config::read); the tests wait instead,
/// so the reload's own timing is not that wait.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn a_reload_with_nothing_changed_parses_nothing_and_writes_nothing() {
    let (_lab, work, daemon) = setup("reload-same", &text(&list()));
    let before = kernel(&work);
    assert_eq!(before.len(), 2201, "{}", daemon.log_text());
    settle();
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("are unchanged"), "{out}");
    assert!(out.contains("nothing parsed"), "{out}");
    assert!(out.contains("0 map writes in all"), "{out}");
    assert_eq!(kernel(&work), before);
    // Rewritten with the same bytes: its time differs, so it is parsed, but nothing is written.
    work.write("lists/big.txt", &text(&list()));
    settle();
    let again = work.steer_ok(&["reload"]);
    assert!(again.contains("only a list of set big changed"), "{again}");
    assert!(again.contains("0 map writes in all"), "{again}");
    assert_eq!(kernel(&work), before);
}

#[test]
fn one_changed_line_writes_exactly_its_entries_and_nothing_else_is_read() {
    let mut lines = list();
    let (_lab, work, _daemon) = setup("reload-line", &text(&lines));
    let before = kernel(&work);
    lines[1000] = "10.200.1.0/24".into();
    work.write("lists/big.txt", &text(&lines));
    settle();
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(
        out.contains("set big: 1 added, 0 changed, 1 removed"),
        "{out}"
    );
    assert!(out.contains("2 prefix writes, 0 policy writes"), "{out}");
    assert!(out.contains("2 map writes in all"), "{out}");
    let after = kernel(&work);
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert_eq!(added, [&p("10.200.1.0/24")]);
    assert_eq!(removed, [&p("10.3.232.0/24")]);

    // A line moved and a repeat added: the same prefixes, nothing written.
    lines.swap(0, 5);
    lines.push("10.0.0.0/24".into());
    work.write("lists/big.txt", &text(&lines));
    settle();
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("only a list of set big changed"), "{out}");
    assert!(out.contains("0 map writes in all"), "{out}");
    assert_eq!(kernel(&work), after);

    // An IPv6 line goes: one removal, and `explain` names the list's new line numbers.
    lines.retain(|l| l != "2001:db8:7::/48");
    work.write("lists/big.txt", &text(&lines));
    settle();
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains("set big: 0 added, 0 changed, 1 removed"),
        "{out}"
    );
    assert!(!kernel(&work).contains(&p("2001:db8:7::/48")));
    let explain = work.steer_ok(&["explain", "10.200.1.9"]);
    assert!(explain.contains("big"), "{explain}");
}

#[test]
fn a_bad_line_in_a_changed_list_is_refused_where_it_is_and_nothing_changes() {
    let mut lines = list();
    let (_lab, work, _daemon) = setup("reload-bad", &text(&lines));
    let before = kernel(&work);
    lines[1] = "  010.1.2.3".into();
    lines[7] = "172.31.0.0/24".into();
    work.write("lists/big.txt", &text(&lines));
    settle();
    let (ok, _, err) = work.steer(&["reload"]);
    assert!(!ok);
    // Line 3 of the file (a comment comes first), column 3.
    assert!(err.contains("big.txt:3:3"), "{err}");
    assert!(err.contains("leading zero"), "{err}");
    assert_eq!(kernel(&work), before, "a refused list changes nothing");

    // Fixed: the next reload applies the list (against what the kernel still holds).
    lines[1] = "10.201.2.0/24".into();
    work.write("lists/big.txt", &text(&lines));
    settle();
    let out = work.steer_ok(&["reload"]);
    assert!(
        out.contains("set big: 2 added, 0 changed, 2 removed"),
        "{out}"
    );
}

#[test]
fn a_changed_line_that_another_set_holds_is_refused_as_a_duplicate() {
    let mut lines = list();
    let (_lab, work, _daemon) = setup("reload-dup", &text(&lines));
    let before = kernel(&work);
    lines.push("192.0.2.128/25".into());
    work.write("lists/big.txt", &text(&lines));
    settle();
    let (ok, _, err) = work.steer(&["reload"]);
    assert!(!ok);
    let line = lines.len() + 1;
    assert!(err.contains(&format!("big.txt:{line}:1")), "{err}");
    assert!(err.contains("also in set `other`"), "{err}");
    assert_eq!(kernel(&work), before, "a refused list changes nothing");
    // The kernel's view of the other set is untouched.
    let maps = Maps::from_pins(&work.pin_dir).expect("pinned maps");
    let hit = maps
        .containing(Direction::Dst, "192.0.2.200".parse().unwrap())
        .unwrap();
    assert_eq!(hit.first().map(|(p, _)| *p), Some(p("192.0.2.128/25")));
}

/// A firewall restart flushes the ruleset, steer's connection-marking table with it: a reload
/// with nothing changed still puts it back (and still writes no map). The daemon may have put
/// it back already, on the nftables events of the delete: either says so.
#[test]
fn a_reload_with_nothing_changed_restores_a_flushed_nftables_table() {
    let (lab, work, daemon) = setup("reload-repair", &text(&list()));
    let table = format!("inet {}", steer::conntrack::NFT_TABLE);
    assert!(
        lab.router
            .try_run(&format!("nft list table {table}"))
            .status
            .success(),
        "{}",
        daemon.log_text()
    );
    settle();
    // Deleted just before the reload, so the daemon's periodic check (every 10 s) cannot be
    // what puts it back.
    lab.router.run(&format!("nft delete table {table}"));
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("are unchanged"), "{out}");
    assert!(out.contains("0 map writes in all"), "{out}");
    assert!(
        out.contains("was missing") || daemon.log_text().contains("was missing"),
        "the reload or the daemon says it restored the table: {out}\n{}",
        daemon.log_text()
    );
    let listed = lab.router.try_run(&format!("nft list table {table}"));
    assert!(
        listed.status.success(),
        "the table is back after the reload: {out}\n{}",
        daemon.log_text()
    );
}

/// steer's table as `nft` lists it, without handles or counter values.
fn steer_table(lab: &Lab) -> String {
    let out = lab.router.try_run(&format!(
        "nft -s list table inet {}",
        steer::conntrack::NFT_TABLE
    ));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (bounded by `within`) until steer's table is `want` again; whether it was.
fn table_back(lab: &Lab, want: &str, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if steer_table(lab) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `nft flush table inet steer` keeps the table and its chains and removes every rule: no
/// connection is marked, and the replies of a port forward in on wan2 leave by the main
/// table's wan1. The daemon notices an emptied table, not only a deleted one, puts every rule
/// back with a warning that says what was wrong, and `steer status` tells of it; a reload
/// right after a flush leaves the table whole too.
#[test]
fn an_emptied_nftables_table_is_restored_with_a_warning() {
    let (lab, work, daemon) = setup("nft-flush", &text(&list()));
    let whole = steer_table(&lab);
    assert!(whole.contains("vmap"), "{whole}\n{}", daemon.log_text());
    // The check that the events of steer's own install bring finds nothing wrong.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !daemon.log_text().contains("nftables table inet steer"),
        "{}",
        daemon.log_text()
    );
    // Not checked emptied here: the daemon's event-driven check may restore it before a
    // listing could run; the warning below says it found the table emptied.
    lab.router.run("nft flush table inet steer");
    // The periodic check (every 10 s) at the latest.
    assert!(
        table_back(&lab, &whole, Duration::from_secs(15)),
        "the emptied table was not restored:\n{}\n{}",
        steer_table(&lab),
        daemon.log_text()
    );
    daemon.wait_log(
        "rules were removed, its chains left empty: restored",
        Duration::from_secs(5),
    );
    let status = work.steer_ok(&["status"]);
    assert!(
        status.contains("connection marking: nftables table inet steer in place")
            && status.contains("s ago: it had been changed: all its ")
            && status.contains("rules were removed, its chains left empty"),
        "{status}"
    );

    // Flushed just before a reload: the table is whole once the reload has answered.
    lab.router.run("nft flush table inet steer");
    let out = work.steer_ok(&["reload"]);
    assert!(out.contains("are unchanged"), "{out}");
    assert_eq!(
        steer_table(&lab),
        whole,
        "after the reload: {out}\n{}",
        daemon.log_text()
    );
}

/// A firewall restart (`nft -f` of a file that starts with `flush ruleset`, as fw4's does)
/// deletes steer's table. The daemon hears of it on the nftables events and puts it back within
/// moments, not at its next periodic check (every 10 s), while the replies of port forwards
/// leave by the wrong WAN. Twice in a row: the second flush comes right after the table came
/// back, which, were it the periodic check that brought it back, leaves a whole period before
/// the next one.
#[test]
fn a_firewall_restart_that_flushes_the_ruleset_gets_steers_table_back_at_once() {
    let (lab, work, daemon) = setup("nft-ruleset", &text(&list()));
    let whole = steer_table(&lab);
    assert!(whole.contains("vmap"), "{whole}\n{}", daemon.log_text());
    let firewall = work.write(
        "firewall.nft",
        "flush ruleset\n\
         table inet fw4 {\n\
         \tchain input {\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t}\n\
         }\n",
    );
    for round in 1..=2 {
        lab.router.run(&format!("nft -f {}", firewall.display()));
        // Generous for a loaded machine, and still short of the 10 s of a periodic check.
        assert!(
            table_back(&lab, &whole, Duration::from_secs(3)),
            "round {round}: steer's table not back within 3 s of the firewall restart:\n{}\n{}",
            steer_table(&lab),
            daemon.log_text()
        );
    }
    assert!(
        daemon
            .log_text()
            .contains("nftables table inet steer was missing"),
        "{}",
        daemon.log_text()
    );
}

/// Something that keeps emptying steer's table (here 200 `nft flush table` in a row) does not
/// make the daemon repair it in a loop with the events its own repairs cause: after a repair
/// it waits a second before the next, so the warnings number about one per second of the
/// storm; the table is whole once the storm is over.
#[test]
fn a_storm_of_flushes_is_repaired_about_once_a_second_not_in_a_loop() {
    let (lab, _work, daemon) = setup("nft-storm", &text(&list()));
    let whole = steer_table(&lab);
    assert!(whole.contains("vmap"), "{whole}\n{}", daemon.log_text());
    let started = std::time::Instant::now();
    lab.router
        .run("for i in $(seq 200); do nft flush table inet steer; done");
    let storm = started.elapsed();
    assert!(
        table_back(&lab, &whole, Duration::from_secs(5)),
        "not back after the storm:\n{}\n{}",
        steer_table(&lab),
        daemon.log_text()
    );
    let log = daemon.log_text();
    let repairs = log
        .matches("nftables table inet steer had been changed")
        .count();
    let bound = storm.as_secs() as usize + 5;
    assert!(
        (1..=bound).contains(&repairs),
        "{repairs} repairs in a storm of {storm:?} (at most {bound}):\n{log}"
    );
}

/// A reload that gives a WAN another mark and table moves its flows to the new rule and table
/// without a gap: the classifier stamped the new mark before any rule routed it, and a stream
/// on that WAN left by the main table's default (wan1, another NAT address) for ~15 ms.
#[test]
fn a_wans_new_mark_and_table_are_routed_before_the_classifier_stamps_them() {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new("reload-mark");
    let config = |mark: u32, table: u32| {
        let wans = lab_wans("targets = [\"192.0.2.1\"]", "targets = [\"192.0.2.2\"]").replace(
            &format!(
                "mark = {:#x}\ntable = {}\n",
                Wan::Two.mark(),
                Wan::Two.table()
            ),
            &format!("mark = {mark:#x}\ntable = {table}\n"),
        );
        format!(
            "[general]\nlan = [\"lan0\"]\n{pins}\n{wans}\n\
             [[policy]]\nname = \"wan2-first\"\n\
             members = [{{ wan = \"wan2\", metric = 1 }}, {{ wan = \"wan1\", metric = 2 }}]\n\
             [[set]]\nname = \"bypass\"\npolicy = \"wan2-first\"\nprefixes = [\"{server}/32\"]\n\
             {control}",
            pins = work.private_paths(),
            server = Lab::SERVER_A,
            control = work.control_section()
        )
    };
    work.write("steer.toml", &config(Wan::Two.mark(), Wan::Two.table()));
    let daemon = Daemon::start(&lab.router, &work);
    settle();
    let stream = Stream::start(
        &lab,
        Lab::SERVER_A.into(),
        7203,
        Duration::from_millis(1),
        Duration::from_secs(3),
    );
    std::thread::sleep(Duration::from_millis(800));
    work.write("steer.toml", &config(0x400, 104));
    work.steer_ok(&["reload"]);
    let rules = lab.router.run("ip rule show");
    assert!(
        rules.contains("fwmark 0x400/0xff00 lookup 104") && !rules.contains("lookup 102"),
        "{rules}\n{}",
        daemon.log_text()
    );
    // The count of what was sent is final once the stream has run its 3 s (read while it
    // still sends, it could be fewer than what arrives).
    let ran_out = std::time::Instant::now() + Duration::from_secs(10);
    while !stream.is_finished() && std::time::Instant::now() < ran_out {
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = stream.sent();
    let arrivals = stream.stop();
    let via_wan1 = arrivals.iter().filter(|a| a.via == Some(Wan::One)).count();
    assert_eq!(via_wan1, 0, "{}", daemon.log_text());
    let lost = (sent as usize).saturating_sub(arrivals.len());
    assert!(lost <= 3, "{lost} of {sent} lost\n{}", daemon.log_text());
}

/// `steer reload -c OTHER` (the same socket) re-reads the daemon's own file: said, so that
/// "unchanged" does not read as if OTHER had been checked and applied.
#[test]
fn a_reload_naming_another_file_says_which_file_the_daemon_reloaded() {
    let (_lab, work, _daemon) = setup("reload-other", &text(&list()));
    let other = work.write(
        "other.toml",
        &std::fs::read_to_string(work.config()).unwrap(),
    );
    let out = std::process::Command::new(steer_tests::daemon::steer_bin())
        .args(["reload", "-c"])
        .arg(&other)
        .output()
        .expect("run steer reload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: the daemon reloaded the file it runs")
            && err.contains(&other.display().to_string()),
        "{err}"
    );
}

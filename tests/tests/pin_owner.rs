//! Which daemon and which pinned state a start or a command deals with: bpffs is one filesystem
//! for every network namespace, so two routers (namespaces) given the same pin directory or
//! socket path must not take each other's state; and with no daemon answering the CLI says
//! what still steers.

use std::time::Duration;

use steer::dataplane::{Dataplane, DataplaneError, pin, pin_owner, remove_pinned_here};
use steer::netns;
use steer_tests::{
    daemon::{Daemon, Workdir, steer_in},
    lab::Lab,
    netns::Netns,
    scenario::{Options, config_text},
};

fn setup(tag: &str) -> (Lab, Workdir) {
    steer_tests::require_root();
    let lab = Lab::new();
    let work = Workdir::new(tag);
    work.write("steer.toml", &config_text(&work, &Options::default()));
    (lab, work)
}

/// Runs `steer ARGS` in `ns`: (success, stdout, stderr).
fn steer_there(ns: &Netns, args: &[&str]) -> (bool, String, String) {
    let out = steer_in(ns).args(args).output().expect("run steer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Trial t8b: router 1's daemon killed, a daemon of router 2 (another namespace) started with
/// the same pin_dir adopted router 1's pins, detached its classifier ("t8b-rl: classifier
/// detached") and took its WAN counters; `steer stop` there would have removed them. Both are
/// refused while router 1's namespace exists, naming it; router 1's own restart adopts.
#[test]
fn another_namespace_is_refused_the_pinned_state_of_a_router_that_exists() {
    let (lab, work) = setup("owner");
    let mut daemon = Daemon::start(&lab.router, &work);
    daemon.kill9();
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);

    // Router 2: its own namespace and socket, the same interface names, router 1's pin_dir.
    let r2 = Netns::new("r2");
    r2.run(
        "for i in lan0 wan1 wan2; do ip link add $i type veth peer name $i-p && \
         ip link set $i up && ip link set $i-p up; done",
    );
    let work2 = Workdir::new("owner-r2");
    let text = std::fs::read_to_string(work.config()).unwrap().replace(
        &work.socket.display().to_string(),
        &work2.socket.display().to_string(),
    );
    work2.write("steer.toml", &text);

    let mut refused = Daemon::spawn(&work2, steer_in(&r2));
    let exit = refused.wait_exit(Duration::from_secs(20));
    let log = refused.log_text();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "router 2 started:\n{log}"
    );
    let pin_dir = work.pin_dir.display().to_string();
    for needed in [
        pin_dir.as_str(),
        "another network namespace",
        lab.router.name.as_str(),
        "general.pin_dir",
        "nothing was changed",
    ] {
        assert!(log.contains(needed), "`{needed}` missing:\n{log}");
    }
    assert!(!log.contains("classifier detached"), "{log}");
    assert_eq!(
        lab.lan_tcx_programs(),
        ["steer_tc"],
        "router 1 still classifies"
    );
    assert!(work.pin_dir.join("links/tc-lan0").exists());
    assert!(work.pin_dir.join("links/wan-egress-wan1").exists());

    // `steer stop` on router 2 (no daemon there) must not remove router 1's pins either.
    let (ok, _, err) = steer_there(&r2, &["stop", "-c", &work2.config().display().to_string()]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("another network namespace") && err.contains(&lab.router.name),
        "{err}"
    );
    assert!(work.pin_dir.join("links/tc-lan0").exists(), "pins kept");
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);

    // Router 1's own restart adopts its state as always.
    let daemon = Daemon::start(&lab.router, &work);
    assert!(
        daemon.log_text().contains("adopting pinned state"),
        "{}",
        daemon.log_text()
    );
}

/// `f`, again while the pin directory's lock is held: a process another test's thread forks
/// holds a copy of the lock's descriptor (taken by this test a moment before) until it execs.
fn past_forks<T>(f: impl Fn() -> Result<T, DataplaneError>) -> Result<T, DataplaneError> {
    for _ in 0..100 {
        match f() {
            Err(DataplaneError::Pin(pin::PinError::Locked { .. })) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
    f()
}

/// The namespace that pinned the state is gone: the state is stale and taken over (with a
/// warning); state an older steer pinned, with no namespace recorded, is adopted as before
/// (the upgrade path) and gets the record.
#[test]
fn state_of_a_namespace_that_is_gone_or_of_an_older_steer_is_taken_over() {
    steer_tests::require_root();
    let work = Workdir::new("owner-stale");
    let owner_pin = work.pin_dir.join("maps/PIN_OWNER");
    let other = Netns::new("gone");
    other.enter(|| drop(past_forks(|| Dataplane::open_pinned(&work.pin_dir)).expect("fresh pins")));
    assert!(owner_pin.exists(), "the namespace is recorded");

    // While it exists, another namespace (this test's) may neither adopt nor remove it.
    let err = past_forks(|| Dataplane::open_pinned(&work.pin_dir)).expect_err("must not adopt it");
    let msg = err.to_string();
    assert!(
        msg.contains(&other.name) && msg.contains("adopting") && msg.contains("general.pin_dir"),
        "{msg}"
    );
    let err = past_forks(|| remove_pinned_here(&work.pin_dir)).expect_err("must not remove it");
    assert!(err.to_string().contains("removing"), "{err}");
    assert!(work.pin_dir.join("maps/POLICY").exists());

    // An older steer's state: no record. Adopted, and recorded as this namespace's.
    std::fs::remove_file(&owner_pin).unwrap();
    drop(
        past_forks(|| Dataplane::open_pinned(&work.pin_dir)).expect("unrecorded state is adopted"),
    );
    let here = netns::this_namespace().unwrap();
    let recorded = pin_owner::recorded_owner(&work.pin_dir)
        .unwrap()
        .expect("recorded");
    assert!(
        netns::same_namespace(recorded, here),
        "{recorded:?} vs {here:?}"
    );

    // Recorded by `other` again, then `other` goes: the state is stale, taken over.
    std::fs::remove_file(&owner_pin).unwrap();
    other.enter(|| {
        drop(past_forks(|| Dataplane::open_pinned(&work.pin_dir)).expect("adopted there"))
    });
    assert!(past_forks(|| Dataplane::open_pinned(&work.pin_dir)).is_err());
    drop(other);
    drop(past_forks(|| Dataplane::open_pinned(&work.pin_dir)).expect("stale state is taken over"));
    let recorded = pin_owner::recorded_owner(&work.pin_dir)
        .unwrap()
        .expect("recorded");
    assert!(
        netns::same_namespace(recorded, here),
        "{recorded:?} vs {here:?}"
    );
    assert_eq!(
        past_forks(|| remove_pinned_here(&work.pin_dir))
            .ok()
            .map(|n| n > 0),
        Some(true)
    );
}

/// Trial t8b: `steer stop -c A` reached the daemon of another configuration (another router's
/// namespace) listening on the same socket path, stopped it and said "steer stopped". A
/// command that changes state is refused when the daemon answering runs another pin_dir;
/// `steer status` warns.
#[test]
fn commands_that_change_state_refuse_a_daemon_of_another_pin_dir() {
    let (lab, work) = setup("owner-socket");
    let _daemon = Daemon::start(&lab.router, &work);
    let other_pins = format!("{}-b", work.pin_dir.display());
    let text = std::fs::read_to_string(work.config())
        .unwrap()
        .replace(&work.pin_dir.display().to_string(), &other_pins);
    let b = work.write("b.toml", &text);
    let b = b.display().to_string();

    for args in [
        vec!["stop", "-c", &b],
        vec!["wan", "wan1", "down", "-c", &b],
        vec!["reload", "-c", &b],
        vec!["set", "bypass", "add", "192.0.2.77", "-c", &b],
    ] {
        let (ok, _, err) = steer_there(&lab.router, &args);
        assert!(!ok, "{args:?} succeeded: {err}");
        assert!(
            err.contains("is not the one of -c")
                && err.contains(&work.pin_dir.display().to_string())
                && err.contains("nothing was sent"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(work.wan_state("wan1"), "up", "the daemon was left alone");
    assert_eq!(lab.lan_tcx_programs(), ["steer_tc"]);

    let (ok, out, err) = steer_there(&lab.router, &["status", "-c", &b]);
    assert!(ok && out.contains("WAN"), "{err}");
    assert!(
        err.contains("warning") && err.contains("is not the one of -c"),
        "{err}"
    );
    let a = work.config().display().to_string();
    let (ok, _, err) = steer_there(&lab.router, &["status", "-c", &a]);
    assert!(ok && !err.contains("warning"), "{err}");
    let (ok, out, err) = steer_there(&lab.router, &["wan", "wan1", "down", "-c", &a]);
    assert!(ok, "{out}{err}");
}

/// Trial t8b: with the socket file removed under a running daemon, `steer status` said "not
/// running ... start it" (a start is refused), and no command reached the daemon until a
/// restart; with the daemon dead, `steer explain` gave the
/// frozen verdict as if a daemon watched the WANs, and `steer status` did not say that the
/// last daemon's classifier still steers.
#[test]
fn without_an_answering_daemon_the_cli_says_what_still_steers() {
    let (lab, work) = setup("owner-gone");
    let mut daemon = Daemon::start(&lab.router, &work);
    let a = work.config().display().to_string();

    // The daemon's periodic check may make the socket again between the removal and the
    // status: tried a few times.
    let err = (0..3)
        .find_map(|_| {
            std::fs::remove_file(&work.socket).unwrap();
            let (ok, _, err) = steer_there(&lab.router, &["status", "-c", &a]);
            (!ok).then_some(err)
        })
        .expect("status failed with the socket removed");
    assert!(
        err.contains(&format!("(pid {})", daemon.pid()))
            && err.contains("was removed")
            && err.contains("periodic check")
            && !err.contains("start it with"),
        "{err}"
    );
    // ... and the daemon makes it again (the periodic check: every 10 s).
    daemon.wait_log("made it again", Duration::from_secs(25));
    let (ok, out, err) = steer_there(&lab.router, &["status", "-c", &a]);
    assert!(ok && out.contains("wan1"), "{out}{err}");

    daemon.kill9();
    let (ok, _, err) = steer_there(&lab.router, &["status", "-c", &a]);
    assert!(!ok);
    assert!(
        err.contains("not running")
            && err.contains("classifier (attached to lan0")
            && err.contains("no failover"),
        "{err}"
    );
    let probe = Lab::SERVER_B.to_string();
    let (ok, out, err) = steer_there(
        &lab.router,
        &["explain", &probe, "--src", "10.10.0.2", "-c", &a],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("wan      wan2")
            && out.contains("daemon   no steer daemon answers on")
            && out.contains("failover frozen"),
        "{out}"
    );
}

//! `steer check` on the real binary against the machine it runs on: what the file's checks
//! cannot see (an interface this machine lacks) is a note with its place, and the check still
//! passes (the interface may come later, or the check runs off the router).

mod common;

use std::process::Command;

use common::TempDir;

const STEER: &str = env!("CARGO_BIN_EXE_steer");

#[test]
fn a_lan_interface_this_machine_lacks_is_a_note_with_its_line() {
    let dir = TempDir::new("check-here");
    let config = dir.join("steer.toml");
    std::fs::write(
        &config,
        "[general]\nlan = [\"t7c-nolan\"]\n\n\
         [[wan]]\nname = \"w\"\ninterface = \"lo\"\nmark = 0x100\ntable = 101\n\
         [wan.track]\ntargets = [\"1.1.1.1\"]\n\n\
         [[policy]]\nname = \"p\"\nmembers = [{ wan = \"w\" }]\n",
    )
    .unwrap();
    let out = Command::new(STEER)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("run steer check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let want = format!(
        "note: {}:2:8: general.lan[0] = \"t7c-nolan\": there is no interface t7c-nolan on this \
         machine (it has ",
        config.display()
    );
    assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    // The interfaces it has are listed, `lo` among them (as a whole item of the list).
    let listed = err
        .split("(it has ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    assert!(
        listed.split(", ").any(|name| name == "lo"),
        "lo in `{listed}` of:\n{err}"
    );
    // The WAN's interface exists: no note on it.
    assert!(!err.contains("wan[w].interface"), "{err}");
}

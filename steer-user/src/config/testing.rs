//! What the unit tests of the configuration modules share: a scratch directory, a small valid
//! configuration, and the errors of a text or file.

use std::path::{Path, PathBuf};

use super::{ConfigErrors, Diagnostic, parse};

/// A directory of its own for one test's config and list files, removed on drop.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("steer-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) const BASE: &str = r#"
[general]
lan = ["br-lan"]

[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["1.1.1.1"]

[[policy]]
name = "p"
members = [{ wan = "wan1" }]
"#;

/// Two WANs, `wan1` on eth1 (mark 0x100, table 101) and `wan2` on eth2 (0x200, 102), each
/// probed by ICMP: what the controller's and VRRP's unit tests build their configurations on.
pub(crate) const TWO_WANS: &str = r#"
[[wan]]
name = "wan1"
interface = "eth1"
mark = 0x100
table = 101
[wan.track]
targets = ["192.0.2.1"]
[[wan]]
name = "wan2"
interface = "eth2"
mark = 0x200
table = 102
[wan.track]
targets = ["192.0.2.2"]
"#;

pub(super) fn errors_of(config: &Path) -> Vec<Diagnostic> {
    let text = std::fs::read_to_string(config).unwrap();
    match parse(&text, config) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.errors,
    }
}

/// The errors of a config without list files, as `field: message` lines.
pub(super) fn errors_in(text: &str) -> Vec<String> {
    match parse(text, Path::new("steer.toml")) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => field_messages(&e),
    }
}

/// Each error as a `field: message` line.
pub(super) fn field_messages(errors: &ConfigErrors) -> Vec<String> {
    errors
        .errors
        .iter()
        .map(|d| format!("{}: {}", d.field, d.message))
        .collect()
}

/// A WAN of the test fixtures: mark 0x100, table 101, gateways learned, no probe targets.
pub(crate) fn wan(name: &str, interface: &str) -> super::Wan {
    use super::NextHop;
    super::Wan {
        name: name.into(),
        interface: interface.into(),
        interface_place: super::Written::default(),
        mark: 0x100,
        table: 101,
        mark_place: super::Written::default(),
        table_place: super::Written::default(),
        gateway: NextHop::Auto,
        gateway6: NextHop::Auto,
        prefix6: None,
        track: super::Track {
            targets: vec![],
            ..icmp_track(500, 400, 3, 5)
        },
    }
}

/// Tracking by ICMP to two targets (192.0.2.1 and .2; one answer a round is enough), no
/// latency or loss limits, the pacing defaults for `interval_ms`.
pub(crate) fn icmp_track(
    interval_ms: u32,
    timeout_ms: u32,
    down_after: u32,
    up_after: u32,
) -> super::Track {
    use super::{Pacing, ProbeTarget, Track, TrackMethod};
    Track {
        method: TrackMethod::Icmp,
        targets: vec![
            ProbeTarget::Icmp("192.0.2.1".parse().unwrap()),
            ProbeTarget::Icmp("192.0.2.2".parse().unwrap()),
        ],
        target_places: Vec::new(),
        interval_ms,
        timeout_ms,
        reliability: 1,
        down_after,
        up_after,
        max_latency_ms: None,
        max_loss_percent: None,
        recover_latency_ms: None,
        recover_loss_percent: None,
        loss_window: 10,
        pace: Pacing::defaults(interval_ms),
    }
}

//! The daemon's state as one typed document: what `steer status` prints, what the control
//! protocol carries (as JSON), and what the metrics endpoint exports. The controller fills it;
//! everyone else only reads it, by field, never by string key.
//!
//! Report lines ([`ReportLine`]) carry a [`Severity`], so the daemon's log, `steer reload` and
//! the status agree on what was a warning or a failure without comparing strings.

mod dns;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use dns::{DnsStatus, Histogram};

use crate::routing::RoutingStatus;

/// How much a report line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// What changed as asked.
    Info,
    /// Something that did not stop the change but the operator should know.
    Warning,
    /// A step that failed.
    Error,
}

/// One line of what the daemon did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportLine {
    pub severity: Severity,
    pub text: String,
}

impl ReportLine {
    pub fn info(text: impl Into<String>) -> Self {
        Self::new(Severity::Info, text)
    }

    pub fn warning(text: impl Into<String>) -> Self {
        Self::new(Severity::Warning, text)
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self::new(Severity::Error, text)
    }

    pub fn new(severity: Severity, text: impl Into<String>) -> Self {
        ReportLine {
            severity,
            text: text.into(),
        }
    }

    /// Writes the line to the daemon's log at its severity.
    pub fn log(&self, prefix: &str) {
        let level = match self.severity {
            Severity::Info => log::Level::Info,
            Severity::Warning => log::Level::Warn,
            Severity::Error => log::Level::Error,
        };
        log::log!(level, "{prefix}{}", self.text);
    }
}

impl std::fmt::Display for ReportLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `steer status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The configuration file the daemon runs.
    pub config: PathBuf,
    pub pin_dir: PathBuf,
    pub uptime_s: u64,
    /// The live policy generation; `None` when the maps could not be read.
    pub generation: Option<u32>,
    /// The daemon adopted pinned state from an earlier one.
    pub adopted: bool,
    /// The policy table in the kernel follows the WAN states (false while a failed write is
    /// being retried).
    pub policy_in_sync: bool,
    pub lan: Vec<LanStatus>,
    pub wans: Vec<WanStatus>,
    pub policies: Vec<PolicyStatus>,
    pub sets: Vec<SetStatus>,
    /// The kernel memory the prefix sets take now, and `general.max_memory`.
    #[serde(default)]
    pub set_memory: SetMemory,
    pub routing: RoutingStatus,
    pub last_failover: Option<LastFailover>,
    pub last_apply: Option<LastApply>,
    /// Domain sets: the forwarder, the snooper and the learned hosts (with a `[dns]` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,
    /// The `[[vrrp]]` instances (none without HA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrrp: Vec<VrrpStatus>,
    /// IPv6 sources on the WANs (with an `[ipv6]` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Status>,
    /// How long the WAN state changes since the daemon started took to detect and to switch.
    #[serde(default)]
    pub failover_times: FailoverTimes,
    /// Precomputed failover: the WAN failures a standby policy generation is ready for
    /// (`wan1 down (ipv4+ipv6) -> generation 3`).
    #[serde(default)]
    pub standbys: Vec<String>,
    /// WAN failures no standby covers (they fail over by writing the table, then flipping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys_missing: Vec<String>,
    /// steer's nftables table, as the drift check last found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_marking: Option<MarkingStatus>,
}

/// steer's nftables table `inet steer` (connection marking), as the drift check last found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkingStatus {
    /// `in place`, `missing`, `changed (what differs)`, `unknown (why)`, `not checked yet`.
    pub table: String,
    pub checked_seconds_ago: Option<u64>,
    /// The last time steer installed it again, and what was wrong.
    pub last_repair: Option<MarkingRepair>,
    /// When it is checked: on nftables events and at the periodic check, or the latter only
    /// (and why).
    pub watched: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkingRepair {
    pub seconds_ago: u64,
    pub what: String,
}

/// The detection and switch times of every WAN state change (the numbers of the change's log
/// line), as histograms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverTimes {
    /// From the first failed (or first good) probe round to the decision; only changes probes
    /// found (a carrier event or a command is its own detection and has none).
    pub detection: Histogram,
    /// From the decision to the flipped policy generation.
    pub switch: Histogram,
}

impl FailoverTimes {
    /// Bucket bounds of detection: probe rounds, from fast (10 ms intervals) to slow.
    const DETECTION_US: [u64; 12] = [
        10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
        10_000_000, 30_000_000, 60_000_000,
    ];
    /// Bucket bounds of the switch: one policy-table write and a flip, well under a millisecond
    /// unless the machine is loaded.
    const SWITCH_US: [u64; 10] = [
        50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000,
    ];

    /// Records one change.
    pub fn record(&mut self, detection: Option<std::time::Duration>, switch: std::time::Duration) {
        if let Some(d) = detection {
            self.detection.record(d);
        }
        self.switch.record(switch);
    }
}

impl Default for FailoverTimes {
    fn default() -> Self {
        FailoverTimes {
            detection: Histogram::with_bounds(&Self::DETECTION_US),
            switch: Histogram::with_bounds(&Self::SWITCH_US),
        }
    }
}

/// A LAN interface the classifier is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanStatus {
    pub interface: String,
    /// XDP attach mode ("native", "generic") when the XDP pre-classifier is attached.
    pub xdp: Option<String>,
    /// Why the interface classifies nothing, or classifies in vain; `None` when it works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WanState {
    Up,
    Down,
    /// One address family up, the other down.
    Partial,
    /// An address family without a gateway (no lease, no RA, no PPP device): it carries
    /// nothing, but nothing failed either.
    Waiting,
}

impl WanState {
    pub fn from_up(up: bool) -> Self {
        if up { WanState::Up } else { WanState::Down }
    }

    /// The state of a family: waiting without a gateway, else up or down.
    pub fn of_family(has_gateway: bool, up: bool) -> Self {
        if has_gateway {
            WanState::from_up(up)
        } else {
            WanState::Waiting
        }
    }

    /// The state of a WAN whose families are in `families`: up or down as the families with
    /// a gateway are (an IPv4-only line is up, not partial), down when none has one.
    pub fn of(families: &[WanState]) -> Self {
        let live: Vec<bool> = families
            .iter()
            .filter(|s| **s != WanState::Waiting)
            .map(|s| *s == WanState::Up)
            .collect();
        match (live.iter().all(|u| *u), live.iter().any(|u| *u)) {
            (true, true) => WanState::Up,
            (false, true) => WanState::Partial,
            _ => WanState::Down,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WanState::Up => "up",
            WanState::Down => "down",
            WanState::Partial => "partial",
            WanState::Waiting => "waiting",
        }
    }
}

/// One address family of a WAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyStatus {
    /// "IPv4" or "IPv6".
    pub family: String,
    pub state: WanState,
    pub detail: String,
    /// Its next hop and where it came from, or what it waits for.
    #[serde(default)]
    pub gateway: String,
    /// Times the family went up, and down, since the daemon started.
    #[serde(default)]
    pub went_up: u64,
    #[serde(default)]
    pub went_down: u64,
    /// Changes to down by what found them (`probes`, `passive`, `carrier`, `event`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub detected_by: std::collections::BTreeMap<String, u64>,
    /// The family's probes: their pace and cost (none for a family that follows the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<ProbeStatus>,
    /// Its probe targets over the loss window (none for a family that follows the other).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
}

/// One probe target of a WAN family over the loss window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// As the configuration writes it: `1.1.1.1`, `1.1.1.1:443`, `http://...`.
    pub target: String,
    /// Rounds of the window that asked it, and that it answered in time.
    pub sent: u32,
    pub answered: u32,
    /// How long it has not answered (its last round went unanswered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_s: Option<u64>,
}

/// The probes of one WAN family: the pace of now, what the traffic says, what they cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// "fast" (confirming a failure), "normal", "quiet" (traffic proves the line), or
    /// "waiting" (not probed: the family waits for a gateway; the figures of a pace are 0).
    pub pace: String,
    /// Between rounds at that pace.
    pub interval_ms: u64,
    /// A round not passed within this hastens the next ones.
    pub late_after_ms: u64,
    /// The traffic's window in force (configured, widened to the line's round trip).
    pub passive_window_ms: u64,
    /// Why the traffic is suspect, when it is: `passive: 41 packets out, 0 back in 52 ms`.
    pub suspect: Option<String>,
    /// How long the line has answered nothing (neither traffic nor probes), when it is known
    /// to be silent: its confirming rounds end when this reaches the timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<u64>,
    /// Since the daemon started.
    pub rounds: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// At this pace, with every probe answered.
    pub probes_per_day: u64,
    pub bytes_per_day: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WanStatus {
    pub name: String,
    pub interface: String,
    #[serde(with = "hex")]
    pub mark: u32,
    pub table: u32,
    /// Up when the families with a gateway all are, down when none is (or none has a
    /// gateway), partial otherwise.
    pub state: WanState,
    /// Why it is in that state, since when, and how far the next change is.
    pub detail: String,
    /// Each address family's own state.
    #[serde(default)]
    pub families: Vec<FamilyStatus>,
    pub carrier: bool,
    /// Packets and bytes the classifier steered to it.
    pub packets: u64,
    pub bytes: u64,
}

/// `[ipv6]` as it runs: the mode and each WAN's prefix and guard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ipv6Status {
    /// `npt` or `masquerade`.
    pub mode: String,
    /// The prefix LAN hosts use (npt).
    pub lan_prefix: Option<String>,
    pub wans: Vec<WanSourceStatus>,
    /// Why the guards' counters could not be read (`nft` failed), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WanSourceStatus {
    pub wan: String,
    /// The WAN's prefix (`prefix6`), if it has one.
    pub prefix6: Option<String>,
    /// Where the prefix comes from, in words ("configured").
    pub origin: String,
    /// What a LAN host's IPv6 source becomes on this WAN, in words.
    pub translation: String,
    /// Packets the guard dropped for a source this WAN does not carry.
    pub foreign_dropped: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub name: String,
    /// Where it sends traffic now, in words.
    pub now: String,
    /// For a balanced policy: each WAN's share of new flows by its weight, and the share of
    /// packets the classifier actually sent it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareStatus {
    pub wan: String,
    /// Percent of the slots, from the weights of the WANs that are up.
    pub target_percent: f64,
    /// Percent of the packets the policy's rules sent to this WAN since its WANs last changed
    /// (or the daemon started).
    pub measured_percent: f64,
    /// Those packets.
    #[serde(default)]
    pub measured_packets: u64,
    /// Seconds the measurement covers.
    #[serde(default)]
    pub since_seconds: u64,
    /// The policy's IPv6 goes elsewhere, and its IPv6 packets are counted in too (the counters
    /// are per rule and WAN, not per family).
    #[serde(default)]
    pub with_other_family: bool,
}

/// The prefix maps' kernel memory: the range tables and records as allocated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMemory {
    pub bytes: u64,
    pub max_memory: Option<u64>,
    /// The memory limit of the daemon's cgroup (systemd's `MemoryMax=`), which every change
    /// is held against, and the file it was read from.
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub limit_file: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetStatus {
    pub name: String,
    pub rule: u32,
    /// "dst", "src", "ordered" (a set with conditions) or "default".
    #[serde(rename = "match")]
    pub matches: String,
    pub policy: Option<String>,
    /// Prefixes of the set in the kernel.
    pub prefixes: usize,
    /// Of those, runtime entries (`steer set`).
    #[serde(default)]
    pub runtime: usize,
    pub packets: u64,
    pub bytes: u64,
    /// A set with conditions: its place in the order the classifier tries them (1 first, the
    /// first met decides), as `steer dump rules` numbers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailover {
    pub seconds_ago: u64,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApply {
    pub seconds_ago: u64,
    pub changes: Vec<ReportLine>,
}

/// One `[[vrrp]]` instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    /// "steer" (steer speaks VRRP) or "keepalived" (steer follows it).
    pub engine: String,
    pub interface: Option<String>,
    pub vrid: Option<u8>,
    /// "initialize", "backup", "master" or "fault".
    pub state: String,
    /// The configured priority.
    pub base_priority: u8,
    /// What the adverts carry now (WAN health taken off).
    pub effective_priority: u8,
    /// How the effective priority came about.
    pub priority_why: String,
    /// Why the instance is held in the fault state, if it is.
    pub fault: Option<String>,
    /// The master's address, as far as this router knows.
    pub master: Option<String>,
    pub vips: Vec<String>,
    pub last_transition: Option<VrrpTransition>,
    pub transitions: u64,
    pub adverts_sent: u64,
    /// Adverts the kernel would not send (no route to a peer, a firewall, a source address the
    /// router does not hold): the other router hears nothing from this one.
    #[serde(default)]
    pub send_errors: u64,
    pub adverts_received: u64,
    /// Received packets dropped, by reason (`ttl`, `version`, `count`, ...).
    pub dropped: std::collections::BTreeMap<String, u64>,
    pub wans: Vec<VrrpWanStatus>,
    /// What else the user should know: whom a backup follows and why it stays backup, a
    /// master advertising another interval, another router claiming our VIPs.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpTransition {
    pub seconds_ago: u64,
    pub to: String,
    pub why: String,
}

/// A WAN an instance gates or weighs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpWanStatus {
    pub wan: String,
    pub master_only: bool,
    pub weight: u8,
    /// "up", "down", "held down (not master)", ...
    pub state: String,
}

/// A `u32` written as `"0x100"`, as marks are everywhere else.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| D::Error::custom(format!("`{text}` is not a 0x… mark")))?;
        u32::from_str_radix(digits, 16).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_round_trips_through_json_with_the_documented_field_names() {
        let status = Status {
            config: "/etc/steer/steer.toml".into(),
            pin_dir: "/sys/fs/bpf/steer".into(),
            uptime_s: 5,
            generation: Some(1),
            adopted: false,
            policy_in_sync: true,
            lan: vec![LanStatus {
                interface: "br-lan".into(),
                xdp: None,
                problem: None,
            }],
            wans: vec![WanStatus {
                name: "wan1".into(),
                interface: "eth1".into(),
                mark: 0x100,
                table: 101,
                state: WanState::Up,
                detail: "up".into(),
                families: vec![],
                carrier: true,
                packets: 3,
                bytes: 180,
            }],
            policies: vec![],
            sets: vec![SetStatus {
                name: "bypass".into(),
                rule: 1,
                matches: "dst".into(),
                policy: Some("p".into()),
                prefixes: 2,
                runtime: 0,
                packets: 0,
                bytes: 0,
                order: None,
            }],
            set_memory: SetMemory {
                bytes: 1 << 20,
                max_memory: Some(64 << 20),
                ..SetMemory::default()
            },
            routing: RoutingStatus::default(),
            last_failover: None,
            last_apply: Some(LastApply {
                seconds_ago: 1,
                changes: vec![ReportLine::warning("careful")],
            }),
            dns: None,
            vrrp: vec![],
            failover_times: FailoverTimes::default(),
            standbys: vec!["wan1 down (ipv4) -> generation 2".into()],
            standbys_missing: vec![],
            ipv6: None,
            connection_marking: Some(MarkingStatus {
                table: "in place".into(),
                checked_seconds_ago: Some(2),
                last_repair: Some(MarkingRepair {
                    seconds_ago: 40,
                    what: "it was missing".into(),
                }),
                watched: "on nftables events and at the periodic check".into(),
            }),
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["wans"][0]["mark"], "0x100");
        assert_eq!(json["wans"][0]["state"], "up");
        assert_eq!(json["sets"][0]["match"], "dst");
        assert_eq!(json["set_memory"]["max_memory"], 64 << 20);
        assert_eq!(json["last_apply"]["changes"][0]["severity"], "warning");
        assert_eq!(json["failover_times"]["switch"]["count"], 0);
        assert_eq!(json["connection_marking"]["table"], "in place");
        assert_eq!(
            json["connection_marking"]["last_repair"]["what"],
            "it was missing"
        );
        assert_eq!(serde_json::from_value::<Status>(json).unwrap(), status);
    }
}

#[cfg(test)]
mod failover_times_tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn detection_is_recorded_only_when_probes_found_the_change() {
        let mut t = FailoverTimes::default();
        t.record(Some(Duration::from_millis(300)), Duration::from_micros(400));
        t.record(None, Duration::from_micros(40));
        assert_eq!(t.detection.count, 1);
        assert_eq!(t.detection.sum_us, 300_000);
        // 300 ms is in the 500 ms bucket (above 250 ms).
        assert_eq!(t.detection.quantile_us(1.0), Some(500_000));
        assert_eq!(t.switch.count, 2);
        assert_eq!(t.switch.counts[0], 1, "40 us: the first bucket");
        assert_eq!(t.switch.quantile_us(1.0), Some(500));
        assert_eq!(t.switch.counts.len(), t.switch.bounds_us.len() + 1);
        // Older daemons' status documents have no times: they read as empty.
        let json = serde_json::json!({ "detection": t.detection, "switch": t.switch });
        assert_eq!(serde_json::from_value::<FailoverTimes>(json).unwrap(), t);
    }
}

//! The capabilities `steer run` and `steer stop` need, checked before anything changes.
//!
//! Without one, the daemon used to start and fail piece by piece: without `CAP_NET_ADMIN`
//! nftables, routes and conntrack refused it while it still said it was ready; without
//! `CAP_PERFMON` the verifier's log and a bare "Permission denied" were all a user saw. The
//! needs follow the configuration (raw sockets only for ICMP probes and steer's own VRRP, a
//! low port only for a DNS forwarder listening on one).

use std::path::Path;

use crate::config::{Config, Engine, TrackMethod};

/// One Linux capability: its bit in the capability sets and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    bit: u32,
    name: &'static str,
}

pub const NET_BIND_SERVICE: Cap = Cap {
    bit: 10,
    name: "CAP_NET_BIND_SERVICE",
};
pub const NET_ADMIN: Cap = Cap {
    bit: 12,
    name: "CAP_NET_ADMIN",
};
pub const NET_RAW: Cap = Cap {
    bit: 13,
    name: "CAP_NET_RAW",
};
pub const SYS_ADMIN: Cap = Cap {
    bit: 21,
    name: "CAP_SYS_ADMIN",
};

/// What one part of steer needs: a capability, and what for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    cap: Cap,
    why: String,
}

impl Need {
    fn new(cap: Cap, why: impl Into<String>) -> Need {
        Need {
            cap,
            why: why.into(),
        }
    }

    fn met_by(&self, have: u64) -> bool {
        have >> self.cap.bit & 1 == 1
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.cap.name, self.why)
    }
}

/// The classifier's maps and programs. `CAP_BPF` and `CAP_PERFMON` load them, but reopening
/// them by id, which a restarted daemon's adoption does, takes `CAP_SYS_ADMIN`: without it a
/// first start works and the restart after a crash fails, so it is asked for at every start.
fn bpf() -> Need {
    Need::new(
        SYS_ADMIN,
        "the classifier's maps and programs, and adopting them after a restart; CAP_BPF and \
         CAP_PERFMON alone cannot reopen them",
    )
}

/// What `steer run` with `config` needs; `unprivileged_port_start` is the lowest port a
/// process may bind without `CAP_NET_BIND_SERVICE`.
pub fn for_run(config: &Config, unprivileged_port_start: u16) -> Vec<Need> {
    let mut needs = vec![
        Need::new(
            NET_ADMIN,
            "routes, rules, nftables, conntrack and the classifier's attachment",
        ),
        bpf(),
    ];
    let icmp: Vec<&str> = config
        .wans
        .iter()
        .filter(|w| w.track.method == TrackMethod::Icmp)
        .map(|w| w.name.as_str())
        .collect();
    let speaks_vrrp = config
        .vrrp
        .iter()
        .any(|v| matches!(v.engine, Engine::Steer(_)));
    let raw = match (icmp.is_empty(), speaks_vrrp) {
        (false, false) => Some(format!("ICMP probes of {}", icmp.join(", "))),
        (true, true) => Some("VRRP adverts".to_owned()),
        (false, true) => Some(format!(
            "ICMP probes of {} and VRRP adverts",
            icmp.join(", ")
        )),
        (true, false) => None,
    };
    if let Some(why) = raw {
        needs.push(Need::new(NET_RAW, why));
    }
    if let Some(dns) = config.dns.as_ref().filter(|d| d.forward) {
        let low: Vec<String> = dns
            .listen
            .iter()
            .filter(|a| a.port() < unprivileged_port_start)
            .map(ToString::to_string)
            .collect();
        if !low.is_empty() {
            needs.push(Need::new(
                NET_BIND_SERVICE,
                format!("the DNS forwarder on {}", low.join(", ")),
            ));
        }
    }
    needs
}

/// What `steer stop` needs: it detaches the classifier and removes rules, routes and tables.
pub fn for_stop() -> Vec<Need> {
    vec![
        Need::new(
            NET_ADMIN,
            "removing rules, routes, nftables and the classifier's attachment",
        ),
        bpf(),
    ]
}

/// Needs the capability set `have` does not meet.
#[derive(Debug, thiserror::Error)]
#[error(
    "steer {command} lacks capabilities it needs: {}; nothing was changed. Run it as root (the \
     shipped service files do), or give it these capabilities (systemd: AmbientCapabilities= \
     and CapabilityBoundingSet= with them)",
    .missing.join("; ")
)]
pub struct Missing {
    command: &'static str,
    missing: Vec<String>,
}

/// Checks `needs` against the capability set `have` (a `CapEff` mask).
pub fn check(command: &'static str, needs: &[Need], have: u64) -> Result<(), Missing> {
    let missing: Vec<String> = needs
        .iter()
        .filter(|n| !n.met_by(have))
        .map(Need::describe)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Missing { command, missing })
    }
}

/// This process's effective capabilities (`CapEff` of `/proc/self/status`); `None` when they
/// cannot be read (no procfs): then nothing is checked in advance.
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective(&status)
}

fn parse_effective(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The lowest port a process may bind without `CAP_NET_BIND_SERVICE` in this network namespace
/// (1024 when the sysctl cannot be read).
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string(Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1024)
}

/// Refuses `command` when this process lacks what `needs` names (unknown capabilities pass:
/// the kernel's own refusal then speaks).
pub fn require(command: &'static str, needs: &[Need]) -> Result<(), Missing> {
    match effective() {
        Some(have) => check(command, needs, have),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |m, c| m | 1 << c.bit)
    }

    #[test]
    fn reads_the_effective_set() {
        let status = "Name:\tsteer\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_effective("Name:\tsteer\n"), None);
    }

    #[test]
    fn root_passes_and_each_missing_capability_is_named_with_what_it_is_for() {
        let stop = for_stop();
        assert!(check("stop", &stop, u64::MAX).is_ok());
        assert!(check("stop", &stop, mask(&[NET_ADMIN, SYS_ADMIN])).is_ok());
        let e = check("stop", &stop, mask(&[NET_ADMIN])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "steer stop lacks capabilities it needs: CAP_SYS_ADMIN (the classifier's maps and \
             programs, and adopting them after a restart; CAP_BPF and CAP_PERFMON alone cannot \
             reopen them); nothing was changed. Run it as root (the shipped service files do), \
             or give it these capabilities (systemd: AmbientCapabilities= and \
             CapabilityBoundingSet= with them)"
        );
        let e = check("stop", &stop, 0).unwrap_err().to_string();
        assert!(e.contains("CAP_NET_ADMIN (removing rules"), "{e}");
    }

    fn config(track: &str, extra: &str) -> Config {
        let text = format!(
            "[general]\nlan = [\"br-lan\"]\n\
             [[wan]]\nname = \"a\"\ninterface = \"wa\"\nmark = 0x100\ntable = 101\n\
             gateway = \"192.0.2.1\"\n[wan.track]\n{track}\n\
             [[policy]]\nname = \"p\"\nmembers = [{{ wan = \"a\" }}]\n\
             [default]\npolicy = \"p\"\n{extra}"
        );
        crate::config::parse(&text, Path::new("steer.toml")).expect("valid")
    }

    #[test]
    fn raw_sockets_and_low_ports_are_asked_for_only_when_the_configuration_uses_them() {
        let names =
            |needs: Vec<Need>| -> Vec<&'static str> { needs.iter().map(|n| n.cap.name).collect() };
        let icmp = config("targets = [\"192.0.2.1\"]", "");
        assert_eq!(
            names(for_run(&icmp, 1024)),
            ["CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_RAW"]
        );
        let http = config("method = \"http\"\ntargets = [\"http://192.0.2.1/\"]", "");
        assert_eq!(
            names(for_run(&http, 1024)),
            ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
        );
        let dns = "[dns]\nlisten = [\"10.0.0.1:53\"]\nupstreams = [\"10.0.0.2:53\"]\n";
        let forwarder = config("method = \"http\"\ntargets = [\"http://192.0.2.1/\"]", dns);
        let needs = for_run(&forwarder, 1024);
        assert_eq!(
            needs[2].describe(),
            "CAP_NET_BIND_SERVICE (the DNS forwarder on 10.0.0.1:53)"
        );
        assert_eq!(names(for_run(&forwarder, 0)).len(), 2, "ports are free");
    }
}

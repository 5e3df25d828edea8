//! The failover scenario shared by the end-to-end tests, the benchmark and `cargo xtask demo`:
//! the lab, a configuration for its two WANs, and `steer run` on the router.
//!
//! Default traffic prefers WAN 1 (`wan1-first`), the `bypass` set (SERVER_B) prefers WAN 2
//! (`wan2-first`); each WAN is probed by ICMP through itself (WAN 1: PROBE_1, WAN 2: PROBE_2).

use std::time::{Duration, Instant};

use crate::{
    daemon::{Daemon, Workdir, wan_state_in},
    lab::{Lab, Wan},
};

/// Knobs of the scenario's configuration.
#[derive(Clone, Debug)]
pub struct Options {
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub down_after: u32,
    pub up_after: u32,
    /// `last_resort` of the default policy.
    pub last_resort: &'static str,
    /// Extra `[[set]]` tables appended to the configuration.
    pub extra_sets: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval_ms: 100,
            timeout_ms: 80,
            down_after: 3,
            up_after: 5,
            last_resort: "unreachable",
            extra_sets: String::new(),
        }
    }
}

/// The lab's two `[[wan]]` tables, named after their interfaces, with [`Wan::mark`],
/// [`Wan::table`] and the ISPs' gateways, each followed by its `[wan.track]` table.
pub fn lab_wans(track1: &str, track2: &str) -> String {
    let wan = |w: Wan, track: &str| {
        format!(
            "[[wan]]\nname = \"{name}\"\ninterface = \"{name}\"\nmark = {mark:#x}\n\
             table = {table}\ngateway = \"{gw4}\"\ngateway6 = \"{gw6}\"\n[wan.track]\n{track}\n",
            name = Lab::wan_iface(w),
            mark = w.mark(),
            table = w.table(),
            gw4 = Lab::gateway_v4(w),
            gw6 = Lab::gateway_v6(w),
        )
    };
    format!("{}{}", wan(Wan::One, track1), wan(Wan::Two, track2))
}

/// The `[wan.track]` body of ICMP probes to `target` with the scenario's timing.
fn icmp_track(target: &str, o: &Options) -> String {
    format!(
        "method = \"icmp\"\ntargets = [\"{target}\"]\ninterval_ms = {}\ntimeout_ms = {}\n\
         reliability = 1\ndown_after = {}\nup_after = {}\n",
        o.interval_ms, o.timeout_ms, o.down_after, o.up_after
    )
}

/// The configuration for the lab (see the module docs).
pub fn config_text(work: &Workdir, o: &Options) -> String {
    format!(
        r#"# The lab: two WANs; default traffic prefers wan1, the bypass set prefers wan2.
[general]
lan = ["lan0"]
mark_mask = 0xff00
{pins}
{wans}
[[policy]]
name = "wan1-first"
members = [{{ wan = "wan1", metric = 1 }}, {{ wan = "wan2", metric = 2 }}]
last_resort = "{last_resort}"

[[policy]]
name = "wan2-first"
members = [{{ wan = "wan2", metric = 1 }}, {{ wan = "wan1", metric = 2 }}]

[[set]]
name = "bypass"
policy = "wan2-first"
prefixes = ["{b}", "{b6}"]
{extra}
[default]
policy = "wan1-first"

{control}"#,
        pins = work.private_paths(),
        wans = lab_wans(
            &icmp_track(&Lab::PROBE_1.to_string(), o),
            &icmp_track(&Lab::PROBE_2.to_string(), o)
        ),
        last_resort = o.last_resort,
        b = Lab::SERVER_B,
        b6 = Lab::SERVER_B6,
        extra = o.extra_sets,
        control = work.control_section(),
    )
}

/// The configuration text with WAN `from` renamed `to` (its table and every policy member).
pub fn renamed(text: &str, from: &str, to: &str) -> String {
    text.replace(&format!("name = \"{from}\""), &format!("name = \"{to}\""))
        .replace(&format!("wan = \"{from}\""), &format!("wan = \"{to}\""))
}

/// A lab with `steer run` on its router.
pub struct Scenario {
    pub daemon: Daemon,
    pub work: Workdir,
    pub lab: Lab,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("work", &self.work.dir)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    pub fn start(tag: &str, options: &Options) -> Scenario {
        Scenario::start_on(tag, options, Lab::LAN_IFACE, |_| {})
    }

    /// [`Scenario::start`] on a lab that `prepare` changed first, with steer classifying on
    /// the LAN interface `lan` (a bridge `prepare` made, say).
    pub fn start_on(
        tag: &str,
        options: &Options,
        lan: &str,
        prepare: impl FnOnce(&Lab),
    ) -> Scenario {
        crate::require_root();
        let lab = Lab::new();
        prepare(&lab);
        let work = Workdir::new(tag);
        let config = config_text(&work, options).replace(
            &format!("lan = [\"{}\"]", Lab::LAN_IFACE),
            &format!("lan = [\"{lan}\"]"),
        );
        work.write("steer.toml", &config);
        let daemon = Daemon::start(&lab.router, &work);
        let s = Scenario { daemon, work, lab };
        // Routing is installed right after start; wait until it is (bounded).
        s.wait_until("routing in sync", Duration::from_secs(10), |st| {
            st["routing"]["in_sync"] == true
        });
        s
    }

    /// Runs the CLI against this scenario's daemon and pins ([`Workdir::steer`]); panics with
    /// its output and the daemon's log on failure.
    pub fn steer(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.work.steer(args);
        assert!(
            ok,
            "steer {args:?} failed:\n{out}{err}\ndaemon log:\n{}",
            self.daemon.log_text()
        );
        out
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.steer(&["status", "--json"])).expect("status --json")
    }

    /// The state ("up"/"down") of a WAN in `steer status`.
    pub fn wan_state(&self, wan: &str) -> String {
        wan_state_in(&self.status(), wan)
    }

    /// Polls `steer status` until `cond` holds; panics with the status and log after `within`.
    pub fn wait_until(
        &self,
        what: &str,
        within: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let st = self.status();
            if cond(&st) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}\nstatus: {}\ndaemon log:\n{}",
                serde_json::to_string_pretty(&st).unwrap_or_default(),
                self.daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a WAN has the given state.
    pub fn wait_wan(&self, wan: &str, state: &str, within: Duration) -> Duration {
        self.wait_until(&format!("{wan} {state}"), within, |st| {
            st["wans"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|w| w["name"] == wan && w["state"] == state)
        })
    }
}

//! Probes sent out through one WAN: ICMP echo, TCP connect, DNS query, HTTP GET.
//!
//! Every probe socket is bound to the WAN's interface (`SO_BINDTODEVICE`) and carries the WAN's
//! packet mark (`SO_MARK`). The mark selects the WAN's routing table through steer's
//! `fwmark <mark> lookup <table>` rule and the device binding pins the output interface, so a
//! probe tests *that* WAN even when a steering rule (or the main table) would send LAN traffic
//! for the same target elsewhere. Sockets are created fresh for every probe and closed after it.
//!
//! A [`round`] sends one probe to every target concurrently and returns once all of them have
//! an outcome or the spec's timeout has passed, whichever comes first; no probe outlives it.
//! [`spawn_prober`] runs rounds at a fixed interval and hands each finished [`Round`] to the
//! health state machine.
//!
//! What counts as an answer, per method:
//! - **ICMP** (v4 and v6): an echo reply from the target carrying this probe's identifier and
//!   sequence number, received on the WAN's interface. An ICMP destination unreachable about
//!   this very echo request is [`ProbeOutcome::Failed`].
//! - **TCP**: the three-way handshake completes. A refused connection (the target answered
//!   the SYN with a RST, or an ICMP port unreachable came back: the kernel reports both as
//!   "connection refused") fails by default, because a refusal need not come from the target:
//!   a captive portal, an ISP's access router without upstream or a transparent proxy sends
//!   RSTs and ICMP errors of its own. With `tcp_refused = "pass"` it counts as an answer
//!   (something beyond the WAN answered), for targets whose port is known to be closed. Other
//!   hard ICMP errors (host unreachable, administratively prohibited) always fail the probe at
//!   once; soft ones (e.g. ICMPv6 "no route") leave the kernel retrying the SYN, so the probe
//!   times out.
//! - **DNS**: one UDP query (random id, recursion desired, type NS for the configured name,
//!   class IN) to port 53; any well-formed response with the same id passes, whatever its
//!   RCODE: the server answered through this WAN.
//! - **HTTP**: `GET` over a fresh TCP connection; passes when a status line `HTTP/1.x NNN`
//!   arrives whose NNN is one of `http_status` (by default 200-299: a captive portal's 302, or
//!   its login page under another code, is not the answer asked for). A refused connection
//!   fails (no server answered the request).
//!
//! The kind of probe follows the target's variant ([`ProbeTarget`]); the configuration
//! guarantees that every target matches [`ProbeSpec::method`], which is kept for reporting.

mod dns;
mod icmp;
mod sock;
mod tcp;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::pace::Schedule;
use crate::{
    config::{ProbeTarget, TrackMethod, Wan},
    model::Family,
};

pub use sock::Exchanged;
use sock::ProbeError;

/// What to probe through which WAN, and for how long a round may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The WAN's interface; every probe socket is bound to it.
    pub interface: String,
    /// The WAN's packet mark; every probe socket carries it.
    pub mark: u32,
    pub method: TrackMethod,
    pub targets: Vec<ProbeTarget>,
    /// How long a round waits for answers.
    pub timeout: Duration,
    /// Answers that pass a round (`reliability`, at most the targets).
    pub needed: usize,
}

impl ProbeSpec {
    /// The probes of `wan`'s `[wan.track]` section to targets of `family`; `None` when it has
    /// none of that family.
    pub fn from_wan(wan: &Wan, family: Family) -> Option<ProbeSpec> {
        let targets: Vec<ProbeTarget> = wan
            .track
            .targets
            .iter()
            .filter(|t| Family::of(&t.ip()) == family)
            .cloned()
            .collect();
        (!targets.is_empty()).then(|| ProbeSpec {
            interface: wan.interface.clone(),
            mark: wan.mark,
            method: wan.track.method,
            needed: (wan.track.reliability as usize).min(targets.len()),
            targets,
            timeout: Duration::from_millis(wan.track.timeout_ms.into()),
        })
    }
}

/// The outcome of one probe: `Answered(rtt)` when a valid answer arrived within the timeout,
/// else why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A valid answer arrived after this round-trip time.
    Answered(Duration),
    /// No valid answer within the timeout.
    Timeout,
    /// The probe failed before the timeout, e.g. "connection refused",
    /// "ICMP destination unreachable (code 1) from 100.64.1.1",
    /// "bind to wan1: No such device"; `exchanged` is what went over the wire.
    Failed { why: String, exchanged: Exchanged },
}

impl ProbeOutcome {
    /// Whether the probe was answered.
    pub fn is_answered(&self) -> bool {
        matches!(self, ProbeOutcome::Answered(_))
    }

    /// The round-trip time of an answered probe.
    pub fn rtt(&self) -> Option<Duration> {
        match self {
            ProbeOutcome::Answered(rtt) => Some(*rtt),
            _ => None,
        }
    }
}

/// One round: a probe to every target of a [`ProbeSpec`], in the order of its targets.
#[derive(Debug, Clone)]
pub struct Round {
    pub started: Instant,
    pub outcomes: Vec<(ProbeTarget, ProbeOutcome)>,
    /// It waited less than the spec's timeout (its schedule's `answer_by`, while the line
    /// was silent): its failure only counts if the line is still silent.
    pub cut_short: bool,
}

impl Round {
    /// How many targets answered.
    pub fn answered(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.is_answered())
            .count()
    }

    /// The first probe that failed before its timeout, as `target: why`
    /// (`http://192.0.2.1/: HTTP status 302 (wanted 200-299)`): what an operator needs to see
    /// when a WAN is down although its targets "answer". Timeouts say nothing more than the
    /// count of answers does, so they are not named.
    pub fn first_failure(&self) -> Option<String> {
        self.outcomes
            .iter()
            .find_map(|(target, outcome)| match outcome {
                ProbeOutcome::Failed { why, .. } => Some(format!("{target}: {why}")),
                _ => None,
            })
    }
}

/// Sends one probe per target concurrently and returns when all have an outcome or `timeout`
/// has passed (never later than `started + timeout` plus scheduling delay).
pub async fn round(spec: &ProbeSpec) -> Round {
    counted_round(spec, Instant::now(), spec.timeout, &AtomicUsize::new(0)).await
}

/// [`round`] with its own `timeout`, counting the answers in `answered` as they arrive.
async fn counted_round(
    spec: &ProbeSpec,
    started: Instant,
    timeout: Duration,
    answered: &AtomicUsize,
) -> Round {
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let probes = spec
        .targets
        .iter()
        .enumerate()
        .map(|(i, target)| async move {
            // The sequence number of an ICMP echo: unique per target within the round.
            let seq = i as u16;
            let outcome = match tokio::time::timeout_at(deadline, probe(spec, target, seq)).await {
                Ok(Ok(rtt)) => {
                    answered.fetch_add(1, Ordering::Relaxed);
                    ProbeOutcome::Answered(rtt)
                }
                Ok(Err(e)) => ProbeOutcome::Failed {
                    why: e.to_string(),
                    exchanged: e.exchanged(),
                },
                Err(_) => ProbeOutcome::Timeout,
            };
            log::trace!("probe {target:?} via {}: {outcome:?}", spec.interface);
            (target.clone(), outcome)
        });
    let outcomes = futures::future::join_all(probes).await;
    Round {
        started,
        outcomes,
        cut_short: timeout < spec.timeout,
    }
}

/// One probe of `target` through the spec's WAN; the caller bounds it in time.
async fn probe(spec: &ProbeSpec, target: &ProbeTarget, seq: u16) -> Result<Duration, ProbeError> {
    match target {
        ProbeTarget::Icmp(addr) => icmp::probe(spec, *addr, seq).await,
        ProbeTarget::Tcp { addr, refused } => tcp::connect(spec, *addr, *refused).await,
        ProbeTarget::Dns { server, query } => dns::probe(spec, *server, query).await,
        ProbeTarget::Http {
            addr,
            host,
            path,
            status,
        } => tcp::http(spec, *addr, &tcp::HttpRequest { host, path }, status).await,
    }
}

/// What a prober reports.
#[derive(Debug)]
pub enum ProberEvent<K> {
    /// A round finished.
    Round(K, Round),
    /// The round that started at this instant has not passed within the schedule's
    /// `late_after` (it goes on until its timeout), with this many answers so far.
    Late(K, Instant, usize),
}

/// Runs rounds at the pace `schedule` says and sends each finished [`Round`] to `tx`, tagged
/// with `key` (which WAN, and which family, the rounds are for), and a [`ProberEvent::Late`]
/// when a round has not passed (`spec.needed` answers) within the schedule's `late_after`.
///
/// A round starts `interval` after the previous one *started*, even if that one is still
/// waiting for answers: rounds overlap when the pace is faster than the timeout (fast rounds
/// confirming a failure do not wait for the slow round before them). A new schedule takes
/// effect at once: the next round starts `interval` (the new one) after the last one started,
/// or now if that is past. The task stops when `tx` is closed (the receiver dropped) or when
/// the returned handle is aborted; dropping the handle only detaches the task, which then
/// stops with the receiver.
pub fn spawn_prober<K>(
    key: K,
    spec: ProbeSpec,
    mut schedule: watch::Receiver<Schedule>,
    tx: mpsc::Sender<ProberEvent<K>>,
) -> JoinHandle<()>
where
    K: Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let spec = Arc::new(spec);
    tokio::spawn(async move {
        let mut current = *schedule.borrow_and_update();
        let mut watching = true;
        let mut last_start: Option<tokio::time::Instant> = None;
        let mut next = tokio::time::Instant::now();
        let mut running = FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                () = tokio::time::sleep_until(next) => {
                    let now = tokio::time::Instant::now();
                    last_start = Some(now);
                    next = now + current.interval.max(MIN_INTERVAL);
                    running.push(watched_round(
                        key.clone(),
                        Arc::clone(&spec),
                        current,
                        tx.clone(),
                    ));
                }
                changed = schedule.changed(), if watching => {
                    match changed {
                        Ok(()) => {
                            current = *schedule.borrow_and_update();
                            if let Some(last) = last_start {
                                next = last + current.interval.max(MIN_INTERVAL);
                            }
                        }
                        // The controller dropped the schedule: keep the last one.
                        Err(_) => watching = false,
                    }
                }
                Some(done) = running.next(), if !running.is_empty() => {
                    if tx.send(ProberEvent::Round(key.clone(), done)).await.is_err() {
                        break;
                    }
                }
            }
        }
        log::debug!("prober for {key:?} stopped: the receiver is gone");
    })
}

/// The shortest time between rounds, whatever a schedule says.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// One round, as long as `schedule` gives it, that reports itself late to `tx` when it has
/// not passed within the schedule's `late_after`.
async fn watched_round<K>(
    key: K,
    spec: Arc<ProbeSpec>,
    schedule: Schedule,
    tx: mpsc::Sender<ProberEvent<K>>,
) -> Round {
    let started = Instant::now();
    let answered = AtomicUsize::new(0);
    let timeout = schedule.round_timeout(started, spec.timeout);
    let late_after = schedule.late_after;
    let round = counted_round(&spec, started, timeout, &answered);
    tokio::pin!(round);
    if late_after < timeout {
        tokio::select! {
            done = &mut round => return done,
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(started + late_after)) => {}
        }
        let so_far = answered.load(Ordering::Relaxed);
        if so_far < spec.needed {
            // A full channel or a gone receiver: the round itself still reports.
            let _ = tx.try_send(ProberEvent::Late(key, started, so_far));
        }
    }
    round.await
}

/// A pace that never changes (tests, tools): `interval` between rounds, no round late before
/// its timeout.
pub fn fixed_schedule(interval: Duration, spec: &ProbeSpec) -> watch::Receiver<Schedule> {
    let (tx, rx) = watch::channel(Schedule {
        interval,
        late_after: spec.timeout,
        answer_by: None,
    });
    // The receiver keeps the last value when the sender is gone.
    drop(tx);
    rx
}

/// Packets and bytes one probe puts on the wire, each way (IP headers included; TCP and HTTP
/// roughly: handshake, request, answer and close). An estimate for the cost of probing a
/// metered line, not a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wire {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
}

impl Wire {
    pub fn add(&mut self, other: Wire) {
        self.packets_out += other.packets_out;
        self.bytes_out += other.bytes_out;
        self.packets_in += other.packets_in;
        self.bytes_in += other.bytes_in;
    }

    pub fn packets(&self) -> u64 {
        self.packets_out + self.packets_in
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_out + self.bytes_in
    }
}

/// A TCP segment without payload, with the options Linux sends (timestamps; a SYN also
/// carries MSS, SACK and window scale).
const TCP_HEADER: u64 = 32;
const TCP_SYN_HEADER: u64 = 40;
/// A DNS response to an NS query, on average (the root's answer without EDNS is ~500 bytes).
const DNS_RESPONSE: u64 = 500;
/// An HTTP status line and headers of a small answer.
const HTTP_RESPONSE: u64 = 300;

/// What probing `target` once costs: the request when it left, the answer when there was one
/// (a probe that failed on what it was answered counts the whole exchange).
pub fn wire(target: &ProbeTarget, outcome: &ProbeOutcome) -> Wire {
    let ip = match Family::of(&target.ip()) {
        Family::V4 => 20,
        Family::V6 => 40,
    };
    let answered = match outcome {
        ProbeOutcome::Answered(_) => true,
        ProbeOutcome::Timeout => false,
        ProbeOutcome::Failed { exchanged, .. } => match exchanged {
            Exchanged::All => true,
            Exchanged::Request => false,
            Exchanged::Nothing => return Wire::default(),
        },
    };
    // (packets out, bytes out, packets in, bytes in) of an answered probe.
    let (po, bo, pi, bi) = match target {
        ProbeTarget::Icmp(_) => (1, ip + 8 + 48, 1, ip + 8 + 48),
        // SYN, ACK, FIN+ACK, ACK out; SYN+ACK, FIN+ACK in.
        ProbeTarget::Tcp { .. } => (
            4,
            4 * ip + TCP_SYN_HEADER + 3 * TCP_HEADER,
            2,
            2 * ip + TCP_SYN_HEADER + TCP_HEADER,
        ),
        ProbeTarget::Dns { query, .. } => (
            1,
            ip + 8 + 12 + query.len() as u64 + 2 + 4,
            1,
            ip + 8 + DNS_RESPONSE,
        ),
        ProbeTarget::Http { host, path, .. } => {
            let request = 40 + host.len() as u64 + path.len() as u64;
            (
                5,
                5 * ip + TCP_SYN_HEADER + 4 * TCP_HEADER + request,
                3,
                3 * ip + TCP_SYN_HEADER + 2 * TCP_HEADER + HTTP_RESPONSE,
            )
        }
    };
    if answered {
        Wire {
            packets_out: po,
            bytes_out: bo,
            packets_in: pi,
            bytes_in: bi,
        }
    } else {
        // Only the first packet left (a SYN, a query, an echo request).
        let first = match target {
            ProbeTarget::Icmp(_) => ip + 8 + 48,
            ProbeTarget::Dns { .. } => bo,
            ProbeTarget::Tcp { .. } | ProbeTarget::Http { .. } => ip + TCP_SYN_HEADER,
        };
        Wire {
            packets_out: 1,
            bytes_out: first,
            ..Wire::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn failed(exchanged: Exchanged) -> ProbeOutcome {
        ProbeOutcome::Failed {
            why: "test".into(),
            exchanged,
        }
    }

    #[test]
    fn a_failed_probe_counts_what_went_over_the_wire_and_no_answer_it_did_not_get() {
        let icmp = ProbeTarget::Icmp(Ipv4Addr::new(192, 0, 2, 1).into());
        let answered = wire(&icmp, &ProbeOutcome::Answered(Duration::from_millis(1)));
        let timeout = wire(&icmp, &ProbeOutcome::Timeout);
        assert_eq!((answered.packets_out, answered.packets_in), (1, 1));
        assert_eq!((timeout.packets_out, timeout.packets_in), (1, 0));
        // No device: nothing left, nothing came back.
        assert_eq!(wire(&icmp, &failed(Exchanged::Nothing)), Wire::default());
        // An ICMP error about the request: the request only.
        assert_eq!(wire(&icmp, &failed(Exchanged::Request)), timeout);
        // A wrong HTTP status: the whole exchange.
        assert_eq!(wire(&icmp, &failed(Exchanged::All)), answered);
        let no_device = ProbeError::Bind {
            interface: "wan4".into(),
            err: sock::OsError(std::io::Error::from_raw_os_error(libc::ENODEV)),
        };
        assert_eq!(no_device.exchanged(), Exchanged::Nothing);
        let no_route = ProbeError::io(
            "connect to",
            "192.0.2.1",
            std::io::Error::from_raw_os_error(libc::ENETUNREACH),
        );
        assert_eq!(no_route.exchanged(), Exchanged::Nothing);
        assert_eq!(ProbeError::Refused.exchanged(), Exchanged::Request);
    }
}

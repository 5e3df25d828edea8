//! The state machine of one virtual router (RFC 9568 section 6.4), pure: it is fed the start,
//! valid adverts, timer ticks, priority changes, faults and the shutdown, each with the time
//! passed in, and answers with [`Action`]s for the socket code (send an advert, announce the
//! addresses) and the controller (the state changed, the master-only WANs may come up).
//! [`Machine::next_deadline`] says when to tick next. Tested rule by rule below.
//!
//! The RFC's rules, as steer applies them:
//!
//! - Timers: Skew_Time = (256 - Priority) x Master_Adver_Interval / 256; Master_Down_Interval =
//!   3 x Master_Adver_Interval + Skew_Time. Master_Adver_Interval is the master's advertised
//!   interval, learnt from each advert a backup accepts.
//! - Initialize: the address owner (priority 255) becomes master at once (advert, announce);
//!   anyone else becomes backup with the master-down timer at Master_Down_Interval.
//! - Backup: the master-down timer firing makes it master (advert, announce). An advert with
//!   priority 0 sets the timer to Skew_Time. An advert with a priority at least ours, or any
//!   advert when preemption is off (or still delayed by `preempt_delay`), restarts the timer.
//!   A lower-priority advert is discarded when preempting: the timer runs out and this router
//!   takes over.
//! - Master: the advert timer sends an advert every Advertisement_Interval. An advert with
//!   priority 0 is answered with an advert at once. An advert with a higher priority, or the
//!   same priority from a higher primary address (unsigned, network order), makes it backup.
//! - Shutdown: a master sends an advert with priority 0 so a backup takes over after its skew
//!   time instead of the whole master-down interval.
//!
//! steer's additions (not in the RFC):
//!
//! - Fault: while the interface is down or the instance cannot serve (every WAN down, a failed
//!   takeover step), it neither sends nor takes over; a master entering it sends priority 0.
//!   Leaving it is a new start.
//! - Split brain: a master that hears a lower-priority advert (another router also believes it
//!   is master: the advert path was cut and healed) answers with an advert at once and announces
//!   its addresses again, so the loser backs off and every host points at the winner. Which
//!   advert crosses first is a race, so a master that steps down for a better advert sends one
//!   last advert with its own priority (keepalived's `higher_prio_send_advert`): the winner
//!   hears a lower master either way and announces.
//! - WAN gating: a new master says [`Action::WansClear`] only after a hold-off of one advert
//!   interval + skew as master (two backups that time out together, equal priorities after a
//!   LAN flap, both become master: their first adverts cross at once and one steps down well
//!   within it; stepping down cancels the pending clear), and once no other router has
//!   advertised for 1.5 of that router's intervals, at the latest one master-down interval
//!   after taking over. The old master takes its master-only WANs down before anything else
//!   when it leaves, so both routers' master-only WANs are never up together unless that step
//!   takes longer than the wait.
//! - Conflicts: an advert for this virtual router dropped for how it was sent or what it lists
//!   (a source that is not a configured peer, unicast against multicast, other VIPs: see
//!   `packet::claim`) still shows another router claims mastership: the WANs wait, without
//!   bound, until such adverts have stopped for 1.5 of their intervals ([`Machine::conflict`]).
//! - Stepping down: the controller may ask a master to resign and become backup
//!   ([`Machine::step_down`]), so that instances sharing a master-only WAN end on one router.
//! - The master's interval a backup learns is capped at [`max_learnt_cs`]: one forged advert
//!   with interval 4095 cs would otherwise keep this router out of mastership for minutes.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

/// The states of a virtual router (Fault is steer's, see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings the machine runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// The effective priority (1..=255).
    pub priority: u8,
    /// Advertisement_Interval, centiseconds.
    pub interval_cs: u16,
    pub preempt: bool,
    /// Preemption is held this long after a start (or after leaving fault).
    pub preempt_delay: Duration,
    /// This router's primary address on the link (the source of its adverts): the tie-breaker
    /// between equal priorities.
    pub own: IpAddr,
}

/// A valid advert, as the machine needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heard {
    pub from: IpAddr,
    pub priority: u8,
    pub interval_cs: u16,
}

/// What the machine asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: resigning).
    Send(u8),
    /// Announce the virtual addresses (gratuitous ARP, unsolicited neighbour advertisements).
    Announce,
    /// The state changed, and why (in words).
    Became { state: State, why: String },
    /// As master: the master-only WANs may come up now.
    WansClear,
}

/// One virtual router.
#[derive(Clone, Debug)]
pub struct Machine {
    p: Params,
    state: State,
    /// Master_Adver_Interval, centiseconds.
    master_adver_cs: u16,
    master_down_at: Option<Instant>,
    /// The master-down timer was set by a resigning master (priority 0).
    resigned: Option<IpAddr>,
    /// As backup: the last lower-priority advert discarded while preempting (from, priority,
    /// when), to say so when the timer runs out.
    lower: Option<(IpAddr, u8, Instant)>,
    adver_at: Option<Instant>,
    /// When the last start was (preempt_delay counts from it).
    started: Instant,
    master: Option<IpAddr>,
    /// As master: when the master-only WANs may come up (`None`: they may, or not master).
    wans_clear_at: Option<Instant>,
    /// As master: the latest the WANs wait.
    wans_clear_by: Option<Instant>,
    /// The last advert of another router claiming mastership: when, and its interval.
    other: Option<(Instant, Duration)>,
    /// Until when adverts of an unconfigured source claiming this virtual router hold the
    /// master-only WANs down.
    conflict_until: Option<Instant>,
    fault: Option<String>,
}

fn cs(v: u16) -> Duration {
    Duration::from_millis(u64::from(v) * 10)
}

/// The longest master's interval a backup configured with `configured_cs` learns from an
/// advert: 10 x its own, at least 1 s (keepalived's default `advert_int 1` against steer's
/// 100 ms is learnt as it is).
pub fn max_learnt_cs(configured_cs: u16) -> u16 {
    configured_cs.saturating_mul(10).max(100)
}

impl Machine {
    pub fn new(p: Params, now: Instant) -> Machine {
        Machine {
            master_adver_cs: p.interval_cs,
            p,
            state: State::Initialize,
            master_down_at: None,
            resigned: None,
            lower: None,
            adver_at: None,
            started: now,
            master: None,
            wans_clear_at: None,
            wans_clear_by: None,
            other: None,
            conflict_until: None,
            fault: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> &Params {
        &self.p
    }

    /// New preemption settings (a reload); the running timers stay.
    pub fn set_preempt(&mut self, preempt: bool, delay: Duration) {
        self.p.preempt = preempt;
        self.p.preempt_delay = delay;
    }

    /// This router's primary address (known once its socket is open).
    pub fn set_own(&mut self, own: IpAddr) {
        self.p.own = own;
    }

    /// The master as far as this router knows: itself as master, the sender of the adverts it
    /// follows as backup.
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.p.own),
            State::Backup => self.master,
            _ => None,
        }
    }

    /// Skew_Time for the current Master_Adver_Interval.
    pub fn skew(&self) -> Duration {
        cs(self.master_adver_cs) * (256 - u32::from(self.p.priority)) / 256
    }

    /// Master_Down_Interval.
    pub fn master_down_interval(&self) -> Duration {
        cs(self.master_adver_cs) * 3 + self.skew()
    }

    /// The earliest instant a timer of the current state fires.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.master_down_at, self.adver_at, self.wans_clear_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The Startup event.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.started = now;
        if let Some(why) = self.fault.clone() {
            return self.enter(State::Fault, why);
        }
        if self.p.priority == 255 {
            return self.become_master(now, "address owner (priority 255)".into());
        }
        self.master_adver_cs = self.p.interval_cs;
        self.master = None;
        self.lower = None;
        self.master_down_at = Some(now + self.master_down_interval());
        let why = format!(
            "started: waiting {} ms for a master's advert",
            self.master_down_interval().as_millis()
        );
        self.enter(State::Backup, why)
    }

    /// A valid advert arrived.
    pub fn receive(&mut self, h: Heard, now: Instant) -> Vec<Action> {
        if h.priority > 0 {
            self.other = Some((now, cs(h.interval_cs)));
        }
        match self.state {
            State::Backup => self.backup_receives(h, now),
            State::Master => self.master_receives(h, now),
            State::Initialize | State::Fault => Vec::new(),
        }
    }

    fn backup_receives(&mut self, h: Heard, now: Instant) -> Vec<Action> {
        if h.priority == 0 {
            self.master_down_at = Some(now + self.skew());
            self.resigned = Some(h.from);
            return Vec::new();
        }
        if !self.preempting(now) || h.priority >= self.p.priority {
            self.master_adver_cs = h.interval_cs.min(max_learnt_cs(self.p.interval_cs));
            self.master_down_at = Some(now + self.master_down_interval());
            self.resigned = None;
            self.lower = None;
            self.master = Some(h.from);
        } else {
            // A lower priority while preempting: discarded, the timer runs out. It is the
            // master on the link all the same (the one followed before may be long gone: a
            // forged advert), so `master` names it.
            self.lower = Some((h.from, h.priority, now));
            self.master = Some(h.from);
        }
        Vec::new()
    }

    fn master_receives(&mut self, h: Heard, now: Instant) -> Vec<Action> {
        let interval = cs(self.p.interval_cs);
        if h.priority == 0 {
            self.adver_at = Some(now + interval);
            return vec![Action::Send(self.p.priority)];
        }
        let wins = h.priority > self.p.priority
            || (h.priority == self.p.priority && addr_bits(h.from) > addr_bits(self.p.own));
        if wins {
            self.adver_at = None;
            self.wans_clear_at = None;
            self.wans_clear_by = None;
            self.master_adver_cs = h.interval_cs.min(max_learnt_cs(self.p.interval_cs));
            self.master_down_at = Some(now + self.master_down_interval());
            self.resigned = None;
            self.master = Some(h.from);
            let why = if h.priority > self.p.priority {
                format!(
                    "{} advertises priority {}, higher than ours ({})",
                    h.from, h.priority, self.p.priority
                )
            } else {
                format!(
                    "{} advertises the same priority ({}) from a higher address",
                    h.from, h.priority
                )
            };
            // A last advert with our priority before going quiet (keepalived's
            // `higher_prio_send_advert`): the winner may never have heard us claim mastership
            // (its advert reached us first as a split brain healed), and only it can point the
            // hosts back at itself. Hearing a lower master, it announces again (steer, and
            // keepalived with its lower-priority gratuitous ARPs).
            let mut out = vec![Action::Send(self.p.priority)];
            out.extend(self.enter(State::Backup, why));
            return out;
        }
        // Another router believes it is master (split brain healing): answer at once, show
        // every host where the addresses are, and keep the WANs waiting while it still claims.
        self.adver_at = Some(now + interval);
        if let Some(at) = self.wans_clear_at.as_mut() {
            let later = now + cs(h.interval_cs) * 3 / 2;
            *at = (*at).max(later).min(self.wans_clear_by.unwrap_or(later));
        }
        vec![Action::Send(self.p.priority), Action::Announce]
    }

    /// Timers that are due at `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Backup if self.master_down_at.is_some_and(|t| t <= now) => {
                let down = self.master_down_interval();
                let why = match (self.resigned, self.lower) {
                    (Some(from), _) => format!("the master {from} resigned (priority 0)"),
                    // The lower master was advertising all along: it is preempted, not dead.
                    (None, Some((from, p, at))) if now.duration_since(at) < down => format!(
                        "preempted {from}, a master with priority {p}, lower than ours ({})",
                        self.p.priority
                    ),
                    _ => format!("no advert from a master for {} ms", down.as_millis()),
                };
                out.extend(self.become_master(now, why));
            }
            State::Master => {
                if self.adver_at.is_some_and(|t| t <= now) {
                    self.adver_at = Some(now + cs(self.p.interval_cs));
                    out.push(Action::Send(self.p.priority));
                }
                if self.wans_clear_at.is_some_and(|t| t <= now) {
                    if let Some(until) = self.conflict_until.filter(|t| *t > now) {
                        self.wans_clear_at = Some(until);
                    } else {
                        self.wans_clear_at = None;
                        self.wans_clear_by = None;
                        out.push(Action::WansClear);
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// The effective priority changed (WAN health). A master tells the others at once.
    pub fn set_priority(&mut self, priority: u8, now: Instant) -> Vec<Action> {
        let priority = priority.max(1);
        if priority == self.p.priority {
            return Vec::new();
        }
        self.p.priority = priority;
        if self.state == State::Master {
            self.adver_at = Some(now + cs(self.p.interval_cs));
            return vec![Action::Send(priority)];
        }
        Vec::new()
    }

    /// Enters (`Some(why)`) or leaves (`None`) the fault state. A master entering it resigns
    /// with priority 0; leaving it is a new start.
    pub fn set_fault(&mut self, fault: Option<String>, now: Instant) -> Vec<Action> {
        if fault == self.fault {
            return Vec::new();
        }
        self.fault = fault;
        match (&self.fault, self.state) {
            // Already in fault for another reason: no transition (the controller logs and shows
            // the fault it asks for).
            (Some(_), State::Fault) => Vec::new(),
            (Some(why), state) => {
                let why = why.clone();
                let mut out = Vec::new();
                if state == State::Master {
                    out.push(Action::Send(0));
                }
                self.clear_timers();
                out.extend(self.enter(State::Fault, why));
                out
            }
            (None, State::Fault) => self.start(now),
            (None, _) => Vec::new(),
        }
    }

    /// The Shutdown event: a master resigns with priority 0.
    pub fn shutdown(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Send(0));
        }
        self.clear_timers();
        out.extend(self.enter(State::Initialize, "shutting down".into()));
        out
    }

    /// A master steps down for `why` (its sibling instance follows another router, see
    /// `controller::vrrp`): it resigns with priority 0, so the other router takes over after
    /// its skew time, and waits as backup a master-down interval for its adverts (following
    /// them, at an equal priority, from then on). Nothing as any other state.
    pub fn step_down(&mut self, why: String, now: Instant) -> Vec<Action> {
        if self.state != State::Master {
            return Vec::new();
        }
        self.clear_timers();
        self.master_adver_cs = self.p.interval_cs;
        self.master = None;
        self.lower = None;
        self.master_down_at = Some(now + self.master_down_interval());
        let mut out = vec![Action::Send(0)];
        out.extend(self.enter(State::Backup, why));
        out
    }

    fn become_master(&mut self, now: Instant, why: String) -> Vec<Action> {
        self.master_down_at = None;
        self.resigned = None;
        self.lower = None;
        self.adver_at = Some(now + cs(self.p.interval_cs));
        self.master_adver_cs = self.p.interval_cs;
        let mut out = vec![Action::Send(self.p.priority), Action::Announce];
        out.extend(self.enter(State::Master, why));
        let by = now + self.master_down_interval();
        // Never at once: another backup may have timed out with us (see the module
        // documentation); its first advert reaches us well within an interval + skew.
        let hold = now + cs(self.p.interval_cs) + self.skew();
        let quiet = self
            .other
            .map(|(at, interval)| at + interval * 3 / 2)
            .filter(|t| *t > now)
            .map_or(hold, |t| t.min(by));
        self.wans_clear_at = Some(hold.max(quiet));
        self.wans_clear_by = Some(by.max(hold));
        out
    }

    /// An advert of this virtual router from a source that is not a configured peer (dropped
    /// otherwise): another router claims mastership, so the master-only WANs do not come up
    /// before such adverts have stopped for 1.5 of their (capped) intervals.
    pub fn conflict(&mut self, h: Heard, now: Instant) {
        if h.priority == 0 {
            return;
        }
        let interval = cs(h.interval_cs.min(max_learnt_cs(self.p.interval_cs)));
        self.conflict_until = Some(now + interval * 3 / 2);
    }

    /// Whether adverts of an unconfigured source claim this virtual router now.
    pub fn conflicting(&self, now: Instant) -> bool {
        self.conflict_until.is_some_and(|t| t > now)
    }

    fn preempting(&self, now: Instant) -> bool {
        self.p.preempt && now >= self.started + self.p.preempt_delay
    }

    fn clear_timers(&mut self) {
        self.master_down_at = None;
        self.adver_at = None;
        self.wans_clear_at = None;
        self.wans_clear_by = None;
        self.resigned = None;
    }

    fn enter(&mut self, state: State, why: String) -> Vec<Action> {
        self.state = state;
        vec![Action::Became { state, why }]
    }
}

/// An address as an unsigned integer in network byte order.
fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "10.0.0.11";
    const PEER: &str = "10.0.0.12";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn params(priority: u8) -> Params {
        Params {
            priority,
            interval_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            own: ip(OWN),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn heard(priority: u8) -> Heard {
        Heard {
            from: ip(PEER),
            priority,
            interval_cs: 100,
        }
    }

    fn became(actions: &[Action]) -> Option<State> {
        actions.iter().find_map(|a| match a {
            Action::Became { state, .. } => Some(*state),
            _ => None,
        })
    }

    /// A machine started at `t0` with `p`.
    fn started(p: Params, t0: Instant) -> Machine {
        let mut m = Machine::new(p, t0);
        m.start(t0);
        m
    }

    #[test]
    fn skew_and_master_down_interval_follow_the_formulas() {
        let t0 = Instant::now();
        let m = started(params(100), t0);
        // 1 s interval: skew = 156/256 s = 609.375 ms; down = 3 s + skew.
        assert_eq!(m.skew(), Duration::from_micros(609_375));
        assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
        let m = started(params(254), t0);
        assert_eq!(m.skew(), Duration::from_nanos(7_812_500));
    }

    #[test]
    fn startup_makes_a_backup_with_the_master_down_timer() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100), t0);
        let a = m.start(t0);
        assert_eq!(became(&a), Some(State::Backup));
        assert!(
            !a.contains(&Action::Send(100)),
            "a backup does not advertise"
        );
        assert_eq!(m.next_deadline(), Some(t0 + m.master_down_interval()));
    }

    #[test]
    fn the_address_owner_becomes_master_at_once() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(255), t0);
        let a = m.start(t0);
        assert_eq!(a[..2], [Action::Send(255), Action::Announce]);
        assert_eq!(became(&a), Some(State::Master));
        assert!(!a.contains(&Action::WansClear), "never at once");
        let hold = ms(1000) + m.skew();
        assert!(
            m.tick(t0 + hold).contains(&Action::WansClear),
            "nobody was heard"
        );
    }

    #[test]
    fn master_down_timer_makes_master_which_advertises_every_interval() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        let down = m.master_down_interval();
        assert!(m.tick(t0 + down - ms(1)).is_empty(), "not yet");
        let a = m.tick(t0 + down);
        assert_eq!(a[..2], [Action::Send(100), Action::Announce]);
        assert_eq!(became(&a), Some(State::Master));
        assert_eq!(m.master(), Some(ip(OWN)));
        let t1 = t0 + down;
        assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
        assert_eq!(m.tick(t1 + ms(1000)), [Action::Send(100)]);
        // The WANs wait one interval + skew as master.
        assert_eq!(
            m.tick(t1 + ms(2000)),
            [Action::Send(100), Action::WansClear]
        );
        assert_eq!(m.tick(t1 + ms(3000)), [Action::Send(100)]);
    }

    #[test]
    fn a_backup_follows_a_master_with_priority_at_least_its_own() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        for p in [100, 200] {
            let t = t0 + ms(3000);
            assert!(m.receive(heard(p), t).is_empty());
            assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
            assert_eq!(m.master(), Some(ip(PEER)));
        }
    }

    #[test]
    fn a_backup_learns_the_masters_interval() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        let fast = Heard {
            interval_cs: 10,
            ..heard(200)
        };
        m.receive(fast, t0);
        // 3 x 100 ms + 156/256 x 100 ms.
        assert_eq!(m.master_down_interval(), Duration::from_nanos(360_937_500));
    }

    #[test]
    fn priority_zero_sets_the_master_down_timer_to_skew_time() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        m.receive(heard(200), t0);
        let t1 = t0 + ms(500);
        assert!(m.receive(heard(0), t1).is_empty());
        assert_eq!(m.next_deadline(), Some(t1 + m.skew()));
        let a = m.tick(t1 + m.skew());
        assert_eq!(became(&a), Some(State::Master));
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::Became { why, .. } if why.contains("resigned"))),
            "{a:?}"
        );
    }

    #[test]
    fn preemption_discards_lower_priority_adverts_so_the_timer_runs_out() {
        let t0 = Instant::now();
        let mut m = started(params(200), t0);
        let down = m.master_down_interval();
        for i in 0..3 {
            assert!(m.receive(heard(100), t0 + ms(1000 * i)).is_empty());
        }
        assert_eq!(
            m.next_deadline(),
            Some(t0 + down),
            "lower adverts did not restart the timer"
        );
        let a = m.tick(t0 + down);
        assert_eq!(became(&a), Some(State::Master));
        let why = a.iter().find_map(|x| match x {
            Action::Became { why, .. } => Some(why.as_str()),
            _ => None,
        });
        assert_eq!(
            why,
            Some("preempted 10.0.0.12, a master with priority 100, lower than ours (200)"),
            "the master was advertising: a preemption, not a silence"
        );
    }

    #[test]
    fn without_preemption_a_higher_backup_stays_backup() {
        let t0 = Instant::now();
        let mut m = started(
            Params {
                preempt: false,
                ..params(200)
            },
            t0,
        );
        for i in 0..10 {
            let t = t0 + ms(1000 * i);
            m.receive(heard(100), t);
            assert!(m.tick(t).is_empty());
        }
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn preempt_delay_holds_preemption_after_a_start() {
        let t0 = Instant::now();
        let mut m = started(
            Params {
                preempt_delay: ms(10_000),
                ..params(200)
            },
            t0,
        );
        for i in 0..10 {
            let t = t0 + ms(1000 * i);
            m.receive(heard(100), t);
            assert!(m.tick(t).is_empty(), "held at {i} s");
        }
        // From 10 s on, lower adverts are discarded: master one master-down interval after
        // the last one that still counted (at 9 s).
        let down = m.master_down_interval();
        m.receive(heard(100), t0 + ms(10_000));
        assert_eq!(m.next_deadline(), Some(t0 + ms(9_000) + down));
        assert_eq!(became(&m.tick(t0 + ms(9_000) + down)), Some(State::Master));
    }

    /// A master at `t0` (waited out its master-down interval), returning the time it took over.
    fn master(p: Params, t0: Instant) -> (Machine, Instant) {
        let mut m = started(p, t0);
        let t1 = t0 + m.master_down_interval();
        m.tick(t1);
        assert_eq!(m.state(), State::Master);
        (m, t1)
    }

    #[test]
    fn a_master_answers_priority_zero_with_an_advert() {
        let (mut m, t1) = master(params(100), Instant::now());
        let t = t1 + ms(300);
        assert_eq!(m.receive(heard(0), t), [Action::Send(100)]);
        assert_eq!(m.next_deadline(), Some(t + ms(1000)), "advert timer reset");
    }

    #[test]
    fn a_master_yields_to_a_higher_priority() {
        let (mut m, t1) = master(params(100), Instant::now());
        let a = m.receive(heard(150), t1);
        assert_eq!(became(&a), Some(State::Backup));
        assert_eq!(a[0], Action::Send(100), "a last advert before going quiet");
        assert_eq!(a.iter().filter(|x| matches!(x, Action::Send(_))).count(), 1);
        assert_eq!(m.master(), Some(ip(PEER)));
        assert_eq!(m.next_deadline(), Some(t1 + m.master_down_interval()));
    }

    #[test]
    fn equal_priorities_go_to_the_higher_address() {
        let t0 = Instant::now();
        let (mut m, t1) = master(params(100), t0);
        assert_eq!(
            became(&m.receive(heard(100), t1)),
            Some(State::Backup),
            "10.0.0.12 > 10.0.0.11"
        );
        let (mut m, t1) = master(params(100), t0);
        let lower = Heard {
            from: ip("10.0.0.3"),
            ..heard(100)
        };
        let a = m.receive(lower, t1);
        assert_eq!(became(&a), None, "10.0.0.3 < 10.0.0.11: stays master");
    }

    #[test]
    fn a_master_that_hears_a_lower_master_reasserts_and_announces() {
        let (mut m, t1) = master(params(200), Instant::now());
        assert_eq!(
            m.receive(heard(100), t1 + ms(10)),
            [Action::Send(200), Action::Announce]
        );
        assert_eq!(m.state(), State::Master);
    }

    /// The adverts `acts` sends, as `from` with `priority` heard by the other machine.
    fn sent(acts: &[Action], from: &str) -> Vec<Heard> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Send(p) if *p > 0 => Some(Heard {
                    from: ip(from),
                    priority: *p,
                    interval_cs: 100,
                }),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_healed_split_brain_ends_with_the_winner_announcing_whichever_advert_crosses_first() {
        for winner_first in [true, false] {
            let t0 = Instant::now();
            let (mut w, t1) = master(params(200), t0);
            let (mut l, _) = master(
                Params {
                    own: ip(PEER),
                    ..params(100)
                },
                t0,
            );
            let heal = t1 + ms(5000);
            let mut w_acts = Vec::new();
            if winner_first {
                // The winner's advert reaches the loser first: it steps down...
                let l_acts = l.receive(sent(&[Action::Send(200)], OWN)[0], heal);
                assert_eq!(l.state(), State::Backup);
                // ...and its last advert reaches the winner.
                for h in sent(&l_acts, PEER) {
                    w_acts.extend(w.receive(h, heal + ms(1)));
                }
            } else {
                w_acts = w.receive(sent(&[Action::Send(100)], PEER)[0], heal);
                for h in sent(&w_acts, OWN) {
                    l.receive(h, heal + ms(1));
                }
                assert_eq!(l.state(), State::Backup);
            }
            assert!(
                w_acts.contains(&Action::Announce),
                "winner_first {winner_first}: {w_acts:?}"
            );
            assert_eq!(w.state(), State::Master);
        }
    }

    #[test]
    fn shutdown_of_a_master_sends_priority_zero() {
        let t0 = Instant::now();
        let (mut m, t1) = master(params(100), t0);
        let a = m.shutdown(t1);
        assert_eq!(a[0], Action::Send(0));
        assert_eq!(became(&a), Some(State::Initialize));
        assert_eq!(m.next_deadline(), None);
        let mut b = started(params(100), t0);
        assert!(
            !b.shutdown(t0).iter().any(|x| matches!(x, Action::Send(_))),
            "a backup leaves quietly"
        );
    }

    #[test]
    fn fault_resigns_mastership_and_leaving_it_starts_again() {
        let (mut m, t1) = master(params(100), Instant::now());
        let a = m.set_fault(Some("every WAN is down".into()), t1);
        assert_eq!(a[0], Action::Send(0));
        assert_eq!(became(&a), Some(State::Fault));
        assert_eq!(m.next_deadline(), None, "silent in fault");
        assert!(m.receive(heard(50), t1).is_empty());
        let a = m.set_fault(None, t1 + ms(100));
        assert_eq!(became(&a), Some(State::Backup));
    }

    #[test]
    fn preempt_delay_counts_again_from_leaving_fault() {
        // A master whose link dies (fault), while the other router takes over; the link comes
        // back long after the start: the delay still holds preemption, from the fault's end.
        let t0 = Instant::now();
        let p = Params {
            preempt_delay: ms(3000),
            ..params(150)
        };
        let mut m = started(p, t0);
        let t1 = t0 + ms(60_000);
        m.tick(t1);
        assert_eq!(m.state(), State::Master);
        m.set_fault(Some("lan0 is down".into()), t1);
        let back = t1 + ms(10_000);
        assert_eq!(became(&m.set_fault(None, back)), Some(State::Backup));
        for i in 0..30 {
            let t = back + ms(100 * i);
            m.receive(heard(100), t);
            assert!(m.tick(t).is_empty(), "held {} ms after the fault", 100 * i);
        }
        assert_eq!(
            m.master(),
            Some(ip(PEER)),
            "follows the lower master meanwhile"
        );
        let last = back + ms(2900);
        m.receive(heard(100), back + ms(3000));
        let down = m.master_down_interval();
        assert_eq!(became(&m.tick(last + down)), Some(State::Master));
    }

    #[test]
    fn a_master_announces_a_priority_change_at_once() {
        let (mut m, t1) = master(params(200), Instant::now());
        assert_eq!(m.set_priority(150, t1), [Action::Send(150)]);
        assert!(m.set_priority(150, t1).is_empty(), "no change, no advert");
    }

    #[test]
    fn wans_wait_until_the_old_master_is_quiet() {
        // A higher-priority router takes over from a live lower one (preemption): the old
        // master's last advert came 200 ms before; the WANs may rise 1.5 of its intervals
        // after that advert.
        let t0 = Instant::now();
        let mut m = started(params(200), t0);
        let t1 = t0 + m.master_down_interval();
        m.receive(heard(100), t1 - ms(200));
        let a = m.tick(t1);
        assert_eq!(became(&a), Some(State::Master));
        assert!(
            !a.contains(&Action::WansClear),
            "the old master spoke 200 ms ago"
        );
        assert_eq!(m.tick(t1 + ms(1000)), [Action::Send(200)]);
        assert_eq!(m.next_deadline(), Some(t1 + ms(1300)));
        // It speaks once more before hearing us: we answer, and the wait moves on.
        let again = t1 + ms(1100);
        assert_eq!(
            m.receive(heard(100), again),
            [Action::Send(200), Action::Announce]
        );
        assert!(m.tick(t1 + ms(1300)).is_empty());
        assert_eq!(m.tick(again + ms(1000)), [Action::Send(200)]);
        assert_eq!(m.tick(again + ms(1500)), [Action::WansClear]);
    }

    #[test]
    fn after_a_crash_the_wans_are_clear_after_one_interval_and_skew() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        m.receive(heard(200), t0);
        let t1 = t0 + m.master_down_interval();
        let a = m.tick(t1);
        assert!(!a.contains(&Action::WansClear), "{a:?}");
        let hold = t1 + ms(1000) + m.skew();
        assert!(!m.tick(hold - ms(1)).contains(&Action::WansClear));
        assert!(m.tick(hold).contains(&Action::WansClear));
    }

    /// Runs two machines that hear each other's adverts at once from `t0` to `end`, in steps
    /// of 1 ms; returns when each said `WansClear`.
    fn pair(
        a: &mut Machine,
        b: &mut Machine,
        t0: Instant,
        end: Duration,
    ) -> (Vec<Duration>, Vec<Duration>) {
        let (mut ca, mut cb) = (Vec::new(), Vec::new());
        let (fa, fb) = (a.p.own.to_string(), b.p.own.to_string());
        let mut t = t0;
        while t <= t0 + end {
            let acts_a = a.tick(t);
            let acts_b = b.tick(t);
            let mut pending = vec![(true, acts_a), (false, acts_b)];
            while let Some((from_a, acts)) = pending.pop() {
                if acts.contains(&Action::WansClear) {
                    (if from_a { &mut ca } else { &mut cb }).push(t - t0);
                }
                let (to, from) = if from_a {
                    (&mut *b, &fa)
                } else {
                    (&mut *a, &fb)
                };
                for h in sent(&acts, from) {
                    let reply = to.receive(h, t);
                    pending.push((!from_a, reply));
                }
            }
            t += ms(1);
        }
        (ca, cb)
    }

    #[test]
    fn equal_backups_timing_out_together_never_both_clear_their_wans() {
        // A LAN flap (or a stranger's priority-255 adverts stopping): both routers are backup
        // with the same timers, both time out at once and become master.
        for (pa, pb) in [(100, 100), (99, 100), (90, 100)] {
            let t0 = Instant::now();
            let mut a = started(params(pa), t0);
            let mut b = started(
                Params {
                    own: ip(PEER),
                    ..params(pb)
                },
                t0,
            );
            let (ca, cb) = pair(&mut a, &mut b, t0, ms(10_000));
            assert_eq!(a.state(), State::Backup, "{pa}/{pb}");
            assert_eq!(b.state(), State::Master, "{pa}/{pb}");
            assert!(
                ca.is_empty(),
                "{pa}/{pb}: the loser cleared its WANs at {ca:?}"
            );
            assert_eq!(cb.len(), 1, "{pa}/{pb}: {cb:?}");
        }
    }

    #[test]
    fn a_master_that_steps_down_within_the_hold_off_never_clears() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        let t1 = t0 + m.master_down_interval();
        assert!(!m.tick(t1).contains(&Action::WansClear), "not at once");
        assert_eq!(m.state(), State::Master);
        m.receive(heard(150), t1 + ms(500));
        assert_eq!(m.state(), State::Backup);
        for i in 0..3000 {
            assert!(!m.tick(t1 + ms(i)).contains(&Action::WansClear), "{i} ms");
        }
    }

    #[test]
    fn adverts_of_an_unconfigured_source_hold_the_wans_while_they_last() {
        // `peers` has a wrong address: the real master's adverts are dropped, so this router
        // becomes master; they still show another master, for as long as they come.
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        let stranger = Heard {
            interval_cs: 10,
            ..heard(150)
        };
        let mut t = t0;
        let end = t0 + ms(30_000);
        while t < end {
            m.conflict(stranger, t);
            assert!(m.conflicting(t));
            assert!(!m.tick(t).contains(&Action::WansClear), "{:?}", t - t0);
            t += ms(100);
        }
        assert_eq!(m.state(), State::Master, "its adverts were dropped");
        let mut cleared = None;
        while t < end + ms(5000) {
            if m.tick(t).contains(&Action::WansClear) {
                cleared = Some(t);
                break;
            }
            t += ms(1);
        }
        let last = end - ms(100);
        assert!(
            cleared.is_some_and(|c| c >= last + ms(150) && c <= last + ms(1200)),
            "{:?}",
            cleared.map(|c| c - last)
        );
    }

    #[test]
    fn a_forged_long_interval_is_capped() {
        let t0 = Instant::now();
        let mut m = started(
            Params {
                interval_cs: 10,
                ..params(150)
            },
            t0,
        );
        let forged = Heard {
            interval_cs: 4095,
            ..heard(254)
        };
        m.receive(forged, t0);
        // 10 x 100 ms: 3 s + skew, not 3 x 40.95 s.
        assert!(
            m.master_down_interval() < ms(3500),
            "{:?}",
            m.master_down_interval()
        );
        assert_eq!(max_learnt_cs(100), 1000);
        assert_eq!(max_learnt_cs(10), 100);
    }

    #[test]
    fn the_wait_for_the_wans_is_bounded_by_one_master_down_interval() {
        let t0 = Instant::now();
        let mut m = started(params(200), t0);
        let down = m.master_down_interval();
        m.receive(heard(100), t0 + down - ms(1));
        let t1 = t0 + down;
        m.tick(t1);
        // A one-way link: the other keeps claiming, every 500 ms.
        let mut cleared = None;
        for i in 1..20 {
            let t = t1 + ms(500 * i);
            m.receive(heard(100), t);
            if m.tick(t).contains(&Action::WansClear) {
                cleared = Some(t);
                break;
            }
        }
        let bound = t1 + m.master_down_interval();
        assert!(
            cleared.is_some_and(|t| t <= bound + ms(500)),
            "{cleared:?} vs {bound:?}"
        );
    }

    #[test]
    fn a_lower_master_heard_while_preempting_is_the_master_named() {
        // A forged advert (priority 254) was followed; the real master (100, lower than our
        // 150) is the one advertising now: status names it, not the forger.
        let t0 = Instant::now();
        let mut m = started(params(150), t0);
        let forged = Heard {
            from: ip("10.0.0.100"),
            ..heard(254)
        };
        m.receive(forged, t0);
        assert_eq!(m.master(), Some(ip("10.0.0.100")));
        m.receive(heard(100), t0 + ms(1000));
        assert_eq!(m.master(), Some(ip(PEER)));
    }

    #[test]
    fn another_fault_reason_while_in_fault_is_no_transition() {
        let t0 = Instant::now();
        let mut m = started(params(100), t0);
        let a = m.set_fault(Some("every WAN is down (dsl, lte)".into()), t0);
        assert_eq!(became(&a), Some(State::Fault));
        let a = m.set_fault(Some("every WAN is down (lte)".into()), t0 + ms(10));
        assert_eq!(became(&a), None, "fault -> fault is no transition: {a:?}");
        assert_eq!(m.state(), State::Fault);
    }

    /// Two instances that share a master-only line must be master on one router: one that
    /// steps down resigns (the other router's backup takes over after its skew) and then
    /// follows that router at the same priority, so the pair stays as it is.
    #[test]
    fn a_master_that_steps_down_resigns_and_then_follows_an_equal_master() {
        let t0 = Instant::now();
        let (mut m, t) = master(params(100), t0);
        let acts = m.step_down("sibling follows 10.0.0.12".into(), t);
        assert_eq!(acts[0], Action::Send(0), "{acts:?}");
        assert_eq!(became(&acts), Some(State::Backup));
        // The other router's backup hears priority 0 and takes over: it advertises at our
        // priority, which we follow.
        let mut t = t + ms(100);
        for _ in 0..20 {
            assert!(m.receive(heard(100), t).is_empty());
            assert!(became(&m.tick(t)).is_none());
            t += ms(1000);
        }
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master(), Some(ip(PEER)));
        // Nobody took over: master again after a master-down interval.
        let (mut m2, t) = master(params(100), t0);
        m2.step_down("test".into(), t);
        let down = m2.master_down_interval();
        assert!(became(&m2.tick(t + down - ms(1))).is_none());
        assert_eq!(became(&m2.tick(t + down)), Some(State::Master));
        // A backup has nothing to step down from.
        let mut b = started(params(100), t0);
        assert!(b.step_down("x".into(), t0).is_empty());
        assert_eq!(b.state(), State::Backup);
    }
}

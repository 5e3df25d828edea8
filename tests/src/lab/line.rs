//! A faulty line between two ends, `a` and `b`: delay, loss, answers held and released in
//! bursts, a silent cut, set per direction while traffic runs. This kernel has no `sch_netem`,
//! so the lab makes the faults itself, in the thread that relays a [`crate::tun::TunLink`].
//!
//! [`LineCore`] is the pure model on a clock passed in (every packet offered with its arrival
//! time, released by [`LineCore::pop_due`]); [`Line`] is the shared handle a test keeps to
//! change the faults while the relay runs. Each direction is a FIFO: a packet is never
//! released before one that arrived earlier, so a delay that drops from 300 to 1 ms drains the
//! queue in order, as a line would. Loss is drawn from a seeded [`Rng`]: the same packets with
//! the same faults lose the same ones.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::rng::Rng;

/// Packets one direction holds at most (delayed or held); more are dropped, as by a full queue.
pub const QUEUE_LIMIT: usize = 16_384;

/// Which direction(s) of the line a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From end `a` to end `b` (in the lab: from the router towards the ISP).
    AToB,
    /// From end `b` to end `a` (in the lab: the ISP's answers towards the router).
    BToA,
    Both,
}

impl Way {
    /// The direction indices (0: a → b, 1: b → a) this selects.
    fn indices(self) -> &'static [usize] {
        match self {
            Way::AToB => &[0],
            Way::BToA => &[1],
            Way::Both => &[0, 1],
        }
    }
}

/// The faults of one direction. The default is a perfect line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// Added to every packet's trip.
    pub delay: Duration,
    /// Percent of the packets dropped (0-100), drawn at arrival.
    pub loss_percent: u32,
    /// When non-zero, packets are released only at multiples of this period (since the line
    /// started): a line that delivers in bursts.
    pub hold_period: Duration,
    /// Everything is dropped silently, also what is queued when the cut comes.
    pub cut: bool,
}

/// What one direction did with its packets so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WayStats {
    pub offered: u64,
    pub delivered: u64,
    /// Dropped by the loss draw.
    pub lost: u64,
    /// Dropped because the direction was cut.
    pub cut: u64,
    /// Dropped because the queue held [`QUEUE_LIMIT`] packets.
    pub overflow: u64,
}

/// The line's state: faults, queues, loss draws and counts. Pure: time is passed in.
#[derive(Debug)]
pub struct LineCore {
    epoch: Instant,
    faults: [Fault; 2],
    queues: [VecDeque<(Instant, Vec<u8>)>; 2],
    stats: [WayStats; 2],
    rng: Rng,
}

impl LineCore {
    /// A perfect line started at `epoch` (the origin of the hold periods).
    pub fn new(seed: u64, epoch: Instant) -> LineCore {
        LineCore {
            epoch,
            faults: [Fault::default(); 2],
            queues: [VecDeque::new(), VecDeque::new()],
            stats: [WayStats::default(); 2],
            rng: Rng::new(seed),
        }
    }

    /// Changes the faults of `way` with `f`; takes effect for the packets offered from now on
    /// (a cut also for those queued).
    pub fn update(&mut self, way: Way, f: impl Fn(&mut Fault)) {
        for &i in way.indices() {
            f(&mut self.faults[i]);
        }
    }

    pub fn fault(&self, dir: usize) -> Fault {
        self.faults[dir]
    }

    pub fn stats(&self, dir: usize) -> WayStats {
        self.stats[dir]
    }

    /// A packet arrives at `now` in direction `dir` (0: a → b, 1: b → a).
    pub fn offer(&mut self, dir: usize, packet: Vec<u8>, now: Instant) {
        let fault = self.faults[dir];
        let stats = &mut self.stats[dir];
        stats.offered += 1;
        if fault.cut {
            stats.cut += 1;
            return;
        }
        if fault.loss_percent > 0 && self.rng.chance(u64::from(fault.loss_percent)) {
            stats.lost += 1;
            return;
        }
        let queue = &mut self.queues[dir];
        if queue.len() >= QUEUE_LIMIT {
            stats.overflow += 1;
            return;
        }
        let mut at = hold_until(now + fault.delay, self.epoch, fault.hold_period);
        // Never before the packet ahead of it: the line keeps order.
        if let Some(&(last, _)) = queue.back() {
            at = at.max(last);
        }
        queue.push_back((at, packet));
    }

    /// The earliest release time of a queued packet, in either direction.
    pub fn next_due(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.front().map(|&(at, _)| at))
            .min()
    }

    /// The next packet of `dir` due at `now`, if any; queued packets of a cut direction are
    /// dropped instead.
    pub fn pop_due(&mut self, dir: usize, now: Instant) -> Option<Vec<u8>> {
        loop {
            let &(at, _) = self.queues[dir].front()?;
            if at > now {
                return None;
            }
            let (_, packet) = self.queues[dir].pop_front()?;
            if self.faults[dir].cut {
                self.stats[dir].cut += 1;
                continue;
            }
            self.stats[dir].delivered += 1;
            return Some(packet);
        }
    }
}

/// `t`, or the next multiple of `period` after `epoch` at or after it when `period` is set.
fn hold_until(t: Instant, epoch: Instant, period: Duration) -> Instant {
    if period.is_zero() {
        return t;
    }
    let since = t.saturating_duration_since(epoch).as_nanos();
    let p = period.as_nanos();
    let periods = since.div_ceil(p);
    epoch + Duration::from_nanos(u64::try_from(periods * p).unwrap_or(u64::MAX))
}

/// The shared handle on a line: a test changes its faults while the relay thread runs.
#[derive(Clone, Debug)]
pub struct Line(Arc<Mutex<LineCore>>);

impl Line {
    pub fn new(seed: u64) -> Line {
        Line(Arc::new(Mutex::new(LineCore::new(seed, Instant::now()))))
    }

    /// The state, for the relay (which holds it only for one packet at a time).
    pub fn core(&self) -> MutexGuard<'_, LineCore> {
        // A panicking test thread must not stop the relay: the state stays consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every packet of `way` takes `delay` longer (in order: see the module docs).
    pub fn set_delay(&self, way: Way, delay: Duration) {
        self.core().update(way, |f| f.delay = delay);
    }

    /// Drops `percent` % of the packets of `way` (seeded draws).
    pub fn set_loss(&self, way: Way, percent: u32) {
        assert!(percent <= 100, "loss {percent} %: at most 100");
        self.core().update(way, |f| f.loss_percent = percent);
    }

    /// Releases the packets of `way` only every `period` (in bursts); `Duration::ZERO` stops.
    pub fn hold_for_period(&self, way: Way, period: Duration) {
        self.core().update(way, |f| f.hold_period = period);
    }

    /// Drops every packet of `way`, queued ones too, silently (no carrier change).
    pub fn cut(&self, way: Way) {
        self.core().update(way, |f| f.cut = true);
    }

    /// A perfect line again, both ways (what is queued is still released in order).
    pub fn restore(&self) {
        self.core().update(Way::Both, |f| *f = Fault::default());
    }

    /// The counts of one direction (0: a → b, 1: b → a).
    pub fn stats(&self, way: Way) -> WayStats {
        let core = self.core();
        way.indices()
            .iter()
            .map(|&i| core.stats(i))
            .fold(WayStats::default(), |a, s| WayStats {
                offered: a.offered + s.offered,
                delivered: a.delivered + s.delivered,
                lost: a.lost + s.lost,
                cut: a.cut + s.cut,
                overflow: a.overflow + s.overflow,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(core: &mut LineCore, dir: usize, now: Instant) -> Vec<u8> {
        std::iter::from_fn(|| core.pop_due(dir, now))
            .map(|p| p[0])
            .collect()
    }

    #[test]
    fn a_perfect_line_releases_at_once_in_order() {
        let t0 = Instant::now();
        let mut line = LineCore::new(1, t0);
        for n in 0..5 {
            line.offer(0, vec![n], t0);
        }
        assert_eq!(drain(&mut line, 0, t0), [0, 1, 2, 3, 4]);
        assert_eq!(drain(&mut line, 1, t0), [] as [u8; 0]);
        assert_eq!(line.stats(0).delivered, 5);
    }

    #[test]
    fn delay_releases_on_time_and_keeps_order_when_it_shrinks() {
        let t0 = Instant::now();
        let mut line = LineCore::new(1, t0);
        line.update(Way::AToB, |f| f.delay = 300 * MS);
        line.offer(0, vec![1], t0);
        line.offer(1, vec![9], t0);
        line.update(Way::AToB, |f| f.delay = MS);
        line.offer(0, vec![2], t0 + 10 * MS);
        // b → a has no delay; a → b holds both until the first is due.
        assert_eq!(drain(&mut line, 1, t0), [9]);
        assert_eq!(line.next_due(), Some(t0 + 300 * MS));
        assert_eq!(drain(&mut line, 0, t0 + 299 * MS), [] as [u8; 0]);
        assert_eq!(drain(&mut line, 0, t0 + 300 * MS), [1, 2]);
    }

    #[test]
    fn held_packets_leave_together_at_the_period() {
        let t0 = Instant::now();
        let mut line = LineCore::new(1, t0);
        line.update(Way::BToA, |f| f.hold_period = 200 * MS);
        line.offer(1, vec![1], t0 + 5 * MS);
        line.offer(1, vec![2], t0 + 150 * MS);
        line.offer(1, vec![3], t0 + 201 * MS);
        assert_eq!(drain(&mut line, 1, t0 + 199 * MS), [] as [u8; 0]);
        assert_eq!(drain(&mut line, 1, t0 + 200 * MS), [1, 2]);
        assert_eq!(line.next_due(), Some(t0 + 400 * MS));
        assert_eq!(drain(&mut line, 1, t0 + 400 * MS), [3]);
    }

    #[test]
    fn loss_is_seeded_and_near_its_rate() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut line = LineCore::new(seed, t0);
            line.update(Way::Both, |f| f.loss_percent = 5);
            (0..10_000u32).for_each(|n| line.offer(0, n.to_be_bytes().to_vec(), t0));
            let kept: Vec<Vec<u8>> = std::iter::from_fn(|| line.pop_due(0, t0)).collect();
            (line.stats(0).lost, kept)
        };
        let (lost, kept) = run(7);
        assert!((350..=650).contains(&lost), "{lost} of 10000 lost at 5 %");
        assert_eq!(kept.len() as u64 + lost, 10_000);
        assert_eq!(run(7), (lost, kept), "same seed, same losses");
        assert_ne!(run(8).1, run(7).1, "another seed, other losses");
    }

    #[test]
    fn a_cut_drops_queued_and_new_packets_until_restored() {
        let t0 = Instant::now();
        let line = Line(Arc::new(Mutex::new(LineCore::new(1, t0))));
        line.set_delay(Way::Both, 10 * MS);
        line.core().offer(0, vec![1], t0);
        line.cut(Way::AToB);
        line.core().offer(0, vec![2], t0);
        line.core().offer(1, vec![3], t0);
        assert_eq!(drain(&mut line.core(), 0, t0 + 10 * MS), [] as [u8; 0]);
        assert_eq!(drain(&mut line.core(), 1, t0 + 10 * MS), [3]);
        assert_eq!(line.stats(Way::AToB).cut, 2);
        line.restore();
        line.core().offer(0, vec![4], t0 + 20 * MS);
        assert_eq!(drain(&mut line.core(), 0, t0 + 20 * MS), [4]);
        assert_eq!(line.stats(Way::Both).delivered, 2);
    }

    #[test]
    fn a_full_queue_drops() {
        let t0 = Instant::now();
        let mut line = LineCore::new(1, t0);
        line.update(Way::AToB, |f| f.delay = MS);
        for _ in 0..QUEUE_LIMIT + 3 {
            line.offer(0, vec![0], t0);
        }
        assert_eq!(line.stats(0).overflow, 3);
    }
}

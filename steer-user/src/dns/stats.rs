//! Counters and latency histograms of the DNS side, shared (lock-free) by the forwarder, the
//! snooper and the controller's learner, and read into the status document.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use super::rebind::Refusal;
use crate::status::Histogram;

/// What the counters count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Queries received over UDP / TCP.
    QueriesUdp,
    QueriesTcp,
    /// Answers relayed from an upstream.
    Answered,
    /// Answers steer made itself (use-application-dns.net, filtered AAAA).
    LocalAnswers,
    /// SERVFAIL sent because no upstream answered.
    Servfail,
    /// Upstream tries that timed out, or were refused (ICMP unreachable, TCP reset).
    UpstreamTimeouts,
    UpstreamRefused,
    /// Queries that could not be read (dropped or answered FORMERR).
    MalformedQueries,
    /// Upstream answers that could not be read (the client gets SERVFAIL).
    MalformedAnswers,
    /// Addresses learned for the first time / whose entry was extended or changed.
    Learned,
    Refreshed,
    /// Kernel writes that failed (the answer still went out).
    InsertFailed,
    /// Entries removed because they expired / because a reload removed their domain.
    Expired,
    Removed,
    /// Answers seen by snoop mode, and those learned from.
    SnoopAnswers,
    SnoopLearned,
    /// TCP connections closed at once: their client already held its share of the slots.
    TcpRefused,
    /// Queries (UDP) and connections (TCP) from sources that are no clients, dropped
    /// unanswered.
    DroppedClients,
}

impl Count {
    const ALL: [Count; 18] = [
        Count::QueriesUdp,
        Count::QueriesTcp,
        Count::Answered,
        Count::LocalAnswers,
        Count::Servfail,
        Count::UpstreamTimeouts,
        Count::UpstreamRefused,
        Count::MalformedQueries,
        Count::MalformedAnswers,
        Count::Learned,
        Count::Refreshed,
        Count::InsertFailed,
        Count::Expired,
        Count::Removed,
        Count::SnoopAnswers,
        Count::SnoopLearned,
        Count::TcpRefused,
        Count::DroppedClients,
    ];

    pub const fn key(self) -> &'static str {
        match self {
            Count::QueriesUdp => "queries_udp",
            Count::QueriesTcp => "queries_tcp",
            Count::Answered => "answered",
            Count::LocalAnswers => "local_answers",
            Count::Servfail => "servfail",
            Count::UpstreamTimeouts => "upstream_timeouts",
            Count::UpstreamRefused => "upstream_refused",
            Count::MalformedQueries => "malformed_queries",
            Count::MalformedAnswers => "malformed_answers",
            Count::Learned => "learned",
            Count::Refreshed => "refreshed",
            Count::InsertFailed => "insert_failed",
            Count::Expired => "expired",
            Count::Removed => "removed",
            Count::SnoopAnswers => "snoop_answers",
            Count::SnoopLearned => "snoop_learned",
            Count::TcpRefused => "tcp_refused",
            Count::DroppedClients => "dropped_clients",
        }
    }
}

/// Which latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// Writing an answer's addresses into the kernel.
    Insert,
    /// From the query sent upstream to its answer.
    Upstream,
    /// Snoop mode: from the queued answer to its verdict (parsed, learned, released).
    Snoop,
}

/// Upper bounds of the latency buckets, in microseconds.
const BOUNDS_US: [u64; 18] = [
    2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000,
    1_000_000, 5_000_000,
];

#[derive(Debug, Default)]
struct Hist {
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Hist {
    fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_US.partition_point(|b| *b < us);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        Histogram {
            bounds_us: BOUNDS_US.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

/// Every DNS counter.
#[derive(Debug, Default)]
pub struct Stats {
    counts: [AtomicU64; Count::ALL.len()],
    refused: [AtomicU64; Refusal::ALL.len()],
    insert: Hist,
    upstream: Hist,
    snoop: Hist,
}

impl Stats {
    pub fn add(&self, what: Count, n: u64) {
        self.counts[what as usize].fetch_add(n, Relaxed);
    }

    pub fn inc(&self, what: Count) {
        self.add(what, 1);
    }

    pub fn get(&self, what: Count) -> u64 {
        self.counts[what as usize].load(Relaxed)
    }

    pub fn refused(&self, why: Refusal) {
        self.refused[why.index()].fetch_add(1, Relaxed);
    }

    pub fn record(&self, which: Latency, d: Duration) {
        match which {
            Latency::Insert => &self.insert,
            Latency::Upstream => &self.upstream,
            Latency::Snoop => &self.snoop,
        }
        .record(d);
    }

    /// Counters, refusals and histograms by name, for the status document.
    pub fn snapshot(
        &self,
    ) -> (
        BTreeMap<String, u64>,
        BTreeMap<String, u64>,
        BTreeMap<String, Histogram>,
    ) {
        let counters = Count::ALL
            .iter()
            .map(|c| (c.key().to_owned(), self.get(*c)))
            .collect();
        let refused = Refusal::ALL
            .iter()
            .map(|r| (r.key().to_owned(), self.refused[r.index()].load(Relaxed)))
            .collect();
        let latency = [
            ("insert", &self.insert),
            ("upstream", &self.upstream),
            ("snoop", &self.snoop),
        ]
        .into_iter()
        .map(|(k, h)| (k.to_owned(), h.snapshot()))
        .collect();
        (counters, refused, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bucket_and_give_quantiles() {
        let s = Stats::default();
        for us in [1, 3, 3, 40, 900, 7_000_000] {
            s.record(Latency::Insert, Duration::from_micros(us));
        }
        let (_, _, lat) = s.snapshot();
        let h = &lat["insert"];
        assert_eq!(h.count, 6);
        assert_eq!(h.quantile_us(0.5), Some(5));
        assert_eq!(h.quantile_us(0.8), Some(1_000));
        assert_eq!(h.quantile_us(1.0), None, "above the last bound");
        s.inc(Count::Learned);
        s.refused(Refusal::Capacity);
        let (c, r, _) = s.snapshot();
        assert_eq!((c["learned"], r["capacity"]), (1, 1));
    }
}

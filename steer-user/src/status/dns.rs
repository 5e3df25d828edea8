//! The DNS part of the status document: what the forwarder and the snooper did, what the
//! learned-host maps hold, and how long answers and kernel writes took.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `steer status`' `dns` section (absent without a `[dns]` section).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// Where the forwarder listens (empty: no forwarder).
    pub listen: Vec<String>,
    pub upstreams: Vec<String>,
    /// The NFQUEUE number answers are snooped on, when snoop mode is on.
    pub snoop_queue: Option<u16>,
    /// Learned hosts in the kernel, IPv4 and IPv6, and the capacities.
    pub entries_v4: usize,
    pub entries_v6: usize,
    pub capacity_v4: usize,
    pub capacity_v6: usize,
    /// Counters by name (`queries_udp`, `learned`, `expired`, ...).
    pub counters: BTreeMap<String, u64>,
    /// Addresses not learned, by reason (`private`, `capacity`, ...).
    pub refused: BTreeMap<String, u64>,
    /// Latencies by name (`insert`, `upstream`, `snoop`).
    pub latency: BTreeMap<String, Histogram>,
}

/// A latency histogram in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds of the buckets (the last bucket, above them all, is implicit).
    pub bounds_us: Vec<u64>,
    /// Samples per bucket (one more than the bounds).
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    /// An empty histogram with these bucket bounds (ascending, microseconds).
    pub fn with_bounds(bounds_us: &[u64]) -> Histogram {
        Histogram {
            bounds_us: bounds_us.to_vec(),
            counts: vec![0; bounds_us.len() + 1],
            count: 0,
            sum_us: 0,
        }
    }

    /// Adds one sample: into the first bucket whose bound it does not exceed, else the last.
    pub fn record(&mut self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = self.bounds_us.partition_point(|b| *b < us);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), `None` without samples or
    /// when it falls above the last bound.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return self.bounds_us.get(i).copied();
            }
        }
        None
    }
}

//! `ping` from the LAN client, its replies timestamped: what a user sees of a failover.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
};

use super::Lab;

/// `ping -D` from the client every `interval_ms` (root may go below 200 ms) for `secs`,
/// its output in a file of `dir`; killed on drop.
#[derive(Debug)]
pub struct ClientPing {
    child: Child,
    file: PathBuf,
}

impl ClientPing {
    pub fn start(lab: &Lab, dir: &Path, target: IpAddr, interval_ms: u32, secs: u32) -> ClientPing {
        let file = dir.join(format!("ping-{}.txt", crate::unique_tag()));
        let out = std::fs::File::create(&file).expect("ping output file");
        let interval = format!("{:.3}", f64::from(interval_ms) / 1e3);
        let child = lab
            .client
            .command("ping")
            .args(["-D", "-n", "-i", &interval, "-W", "1"])
            .args(["-w", &secs.to_string(), &target.to_string()])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("ping is installed");
        ClientPing { child, file }
    }

    /// The epoch times (seconds) of the replies so far.
    pub fn replies(&self) -> Vec<f64> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
            .collect()
    }

    /// The replies so far: (epoch seconds, round trip in ms).
    pub fn round_trips(&self) -> Vec<(f64, f64)> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let at = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
                let rtt = l.split("time=").nth(1)?.split(' ').next()?.parse().ok()?;
                Some((at, rtt))
            })
            .collect()
    }

    /// The longest the client went without a reply, in ms, among the replies after `from`
    /// (epoch seconds); `None` with fewer than two.
    pub fn longest_gap_ms(&self, from: f64) -> Option<f64> {
        let after: Vec<f64> = self.replies().into_iter().filter(|t| *t > from).collect();
        after
            .windows(2)
            .map(|w| (w[1] - w[0]) * 1e3)
            .reduce(f64::max)
    }
}

impl Drop for ClientPing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, in seconds since the epoch (the clock `ping -D` prints).
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

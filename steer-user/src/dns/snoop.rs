//! Snoop mode: DNS answers routed to the LAN (clients asking resolvers other than the
//! router's forwarder, in plain DNS) are learned from on their way through, and held until
//! they are.
//!
//! A chain of steer's nftables table queues every forwarded packet with source port 53
//! (UDP and TCP) leaving by a LAN interface to NFQUEUE `dns.snoop_queue`, with `bypass`: while
//! no daemon listens on the queue (stopped, crashed, restarting) the kernel lets the answers
//! through unseen — fail-open, never a DNS outage. The daemon reads each answer, learns what it
//! teaches (the same rules as the forwarder) and only then accepts it, so the client's first
//! connection after the answer finds its addresses in the kernel. A full queue also fails open
//! (`NFQA_CFG_F_FAIL_OPEN`). A DNS message over TCP is learned from when one segment holds it
//! whole (the usual case); otherwise it passes unlearned.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Learn,
    nfqueue::{Queue, packets},
    stats::{Count, Latency},
};

/// How often the reader checks whether it should stop.
const POLL: Duration = Duration::from_millis(100);
const DNS_PORT: u16 = 53;

/// The chain snoop mode adds to steer's nftables table (`inet steer`). Only answers that are
/// the reply of a connection (a query a LAN host sent out) are read: a packet from port 53
/// that nobody asked for would otherwise plant addresses in the sets, before the firewall's
/// filter hook drops it.
pub fn nft_chain(lan: &[String], queue: u16) -> String {
    if lan.is_empty() {
        return String::new();
    }
    let lan: Vec<String> = lan.iter().map(|l| format!("\"{l}\"")).collect();
    let lan = lan.join(", ");
    format!(
        "\tchain dns_snoop {{\n\
         \t\ttype filter hook forward priority mangle; policy accept;\n\
         \t\toifname {{ {lan} }} udp sport {DNS_PORT} ct direction reply queue num {queue} bypass\n\
         \t\toifname {{ {lan} }} tcp sport {DNS_PORT} ct direction reply queue num {queue} bypass\n\
         \t}}\n"
    )
}

/// The iptables chain (mangle table, IPv4 and IPv6) snoop mode falls back to on kernels
/// without nftables' `queue` expression (`CONFIG_NFT_QUEUE`) but with the xtables NFQUEUE
/// target.
pub const FALLBACK_CHAIN: &str = "STEER_DNS_SNOOP";

fn xtables(bin: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(bin)
        .arg("-w")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{bin}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{bin} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Installs (or replaces) the fallback: the same rules as [`nft_chain`] in the chain
/// [`FALLBACK_CHAIN`] of the mangle table, jumped to from FORWARD, for IPv4 and IPv6.
pub fn install_fallback(lan: &[String], queue: u16) -> Result<(), String> {
    let queue = queue.to_string();
    for bin in ["iptables", "ip6tables"] {
        let _ = xtables(bin, &["-t", "mangle", "-N", FALLBACK_CHAIN]);
        xtables(bin, &["-t", "mangle", "-F", FALLBACK_CHAIN])?;
        for lan in lan {
            for proto in ["udp", "tcp"] {
                xtables(
                    bin,
                    &[
                        "-t",
                        "mangle",
                        "-A",
                        FALLBACK_CHAIN,
                        "-o",
                        lan,
                        "-p",
                        proto,
                        "--sport",
                        "53",
                        "-m",
                        "conntrack",
                        "--ctdir",
                        "REPLY",
                        "-j",
                        "NFQUEUE",
                        "--queue-num",
                        &queue,
                        "--queue-bypass",
                    ],
                )?;
            }
        }
        let jump = ["-t", "mangle", "-C", "FORWARD", "-j", FALLBACK_CHAIN];
        if xtables(bin, &jump).is_err() {
            xtables(
                bin,
                &["-t", "mangle", "-I", "FORWARD", "-j", FALLBACK_CHAIN],
            )?;
        }
    }
    Ok(())
}

/// [`remove_fallback`] when the chain exists (one cheap check otherwise).
pub fn remove_fallback_if_installed() {
    if xtables("iptables", &["-t", "mangle", "-n", "-L", FALLBACK_CHAIN]).is_ok()
        || xtables("ip6tables", &["-t", "mangle", "-n", "-L", FALLBACK_CHAIN]).is_ok()
    {
        remove_fallback();
    }
}

/// Removes the fallback chain, if it is there (`steer stop`, snoop mode switched off).
pub fn remove_fallback() {
    for bin in ["iptables", "ip6tables"] {
        while xtables(
            bin,
            &["-t", "mangle", "-D", "FORWARD", "-j", FALLBACK_CHAIN],
        )
        .is_ok()
        {}
        let _ = xtables(bin, &["-t", "mangle", "-F", FALLBACK_CHAIN]);
        let _ = xtables(bin, &["-t", "mangle", "-X", FALLBACK_CHAIN]);
    }
}

/// The reader of the snoop queue; dropping it stops it (answers then pass unseen).
#[derive(Debug)]
pub struct Snooper {
    pub queue: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The snoop queue, bound but not read yet (see [`Snooper::bind`]).
#[derive(Debug)]
pub struct BoundQueue {
    pub queue: u16,
    q: Queue,
}

impl Snooper {
    /// Binds queue `queue` and starts reading it on a thread of its own.
    pub fn start(queue: u16, learner: Arc<dyn Learn>) -> io::Result<Snooper> {
        Self::bind(queue)?.start(learner)
    }

    /// Binds queue `queue` without reading it yet: the daemon binds before it changes
    /// anything, so a queue another program holds refuses it with the system untouched.
    pub fn bind(queue: u16) -> io::Result<BoundQueue> {
        let q = Queue::bind(queue, POLL).map_err(|e| {
            io::Error::new(e.kind(), format!("dns snoop: binding NFQUEUE {queue}: {e}"))
        })?;
        Ok(BoundQueue { queue, q })
    }
}

impl BoundQueue {
    /// Starts reading the queue on a thread of its own, learning through `learner`.
    pub fn start(self, learner: Arc<dyn Learn>) -> io::Result<Snooper> {
        let BoundQueue { queue, q } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("steer-snoop".into())
            .spawn(move || read(&q, &*learner, &flag))?;
        Ok(Snooper {
            queue,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Snooper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(q: &Queue, learner: &dyn Learn, stop: &AtomicBool) {
    let mut buf = vec![0u8; 128 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match q.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // The kernel dropped messages for us (they were accepted, fail-open).
                log::debug!("dns snoop: receive buffer overrun");
                continue;
            }
            Err(e) => {
                log::error!("dns snoop: reading the queue failed: {e}; answers pass unseen");
                return;
            }
        };
        let received = Instant::now();
        for p in packets(&buf[..n]) {
            if let Some(msg) = dns_payload(p.payload) {
                let stats = learner.stats();
                stats.inc(Count::SnoopAnswers);
                match super::learn_answer(learner, msg) {
                    Ok(o) if o.written > 0 => stats.inc(Count::SnoopLearned),
                    Ok(_) => {}
                    Err(_) => stats.inc(Count::MalformedAnswers),
                }
            }
            if let Err(e) = q.accept(p.id) {
                log::debug!("dns snoop: verdict for packet {}: {e}", p.id);
            }
            learner.stats().record(Latency::Snoop, received.elapsed());
        }
    }
}

/// The DNS message a queued IP packet carries from port 53: a UDP payload, or a TCP segment
/// holding one whole length-prefixed message.
pub fn dns_payload(ip: &[u8]) -> Option<&[u8]> {
    let version = ip.first()? >> 4;
    let (proto, l4) = match version {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            if frag & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            (*ip.get(9)?, ip.get(ihl..)?)
        }
        6 => (*ip.get(6)?, ip.get(40..)?),
        _ => return None,
    };
    match proto {
        17 => {
            let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
            (sport == DNS_PORT).then(|| l4.get(8..)).flatten()
        }
        6 => {
            let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
            let offset = usize::from(l4.get(12)? >> 4) * 4;
            let data = l4.get(offset..)?;
            let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
            (sport == DNS_PORT && data.len() == len + 2).then(|| &data[2..])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp(sport: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 8, 8, 8, 8, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&[0x9c, 0x40, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn the_dns_message_is_found_in_udp_and_whole_tcp_segments() {
        assert_eq!(dns_payload(&ipv4_udp(53, b"hello")), Some(&b"hello"[..]));
        assert_eq!(dns_payload(&ipv4_udp(54, b"hello")), None);
        let mut tcp = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        tcp.extend_from_slice(&[0; 32]);
        tcp.extend_from_slice(&53u16.to_be_bytes());
        tcp.extend_from_slice(&[
            0x9c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0,
        ]);
        let mut whole = tcp.clone();
        whole.extend_from_slice(&[0, 3, b'a', b'b', b'c']);
        assert_eq!(dns_payload(&whole), Some(&b"abc"[..]));
        let mut part = tcp;
        part.extend_from_slice(&[0, 9, b'a', b'b', b'c']);
        assert_eq!(dns_payload(&part), None);
        assert_eq!(dns_payload(&[]), None);
        assert_eq!(dns_payload(&[0x45]), None);
    }

    #[test]
    fn the_chain_queues_answers_towards_the_lan_with_bypass() {
        let c = nft_chain(&["br-lan".into()], 5353);
        assert!(
            c.contains(
                "oifname { \"br-lan\" } udp sport 53 ct direction reply queue num 5353 bypass"
            ),
            "{c}"
        );
        assert!(c.contains("tcp sport 53 ct direction reply queue num 5353 bypass"));
        assert!(nft_chain(&[], 1).is_empty());
    }
}

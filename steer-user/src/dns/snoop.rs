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
//!
//! The queries a LAN host sends out (destination port 53) are copied to NFLOG group
//! `dns.snoop_queue`, bound on the queue's socket, and not held: each is noted as
//! [`Outstanding`] (client address and port, server, DNS ID, question). An answer teaches only
//! when it replies to one of them exactly, and consumes it: a packet forged onto an open
//! connection (another ID, a question never asked, a second answer) teaches nothing. The
//! kernel sends the query's copy (at once: a threshold of one packet) before its answer can
//! exist, to the same socket, so the reader always sees the query first.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
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
    wire,
};

/// How often the reader checks whether it should stop.
const POLL: Duration = Duration::from_millis(100);
const DNS_PORT: u16 = 53;

/// Queries noted and not answered yet, at most: beyond, the oldest is forgotten (its answer
/// then passes unlearned). A LAN's clients have far fewer in flight.
const MAX_OUTSTANDING: usize = 8192;
/// How long a query waits for its answer: a stub resolver has given up by then (glibc: 5 s,
/// tried twice), and a later answer passes unlearned.
const OUTSTANDING_FOR: Duration = Duration::from_secs(10);

/// The chain snoop mode adds to steer's nftables table (`inet steer`). Only answers that are
/// the reply of a connection (a query a LAN host sent out) are read, and the queries that open
/// them: a packet from port 53 that nobody asked for would otherwise plant addresses in the
/// sets, before the firewall's filter hook drops it, and the query tells which answer was
/// asked for on a connection (see [`Outstanding`]).
pub fn nft_chain(lan: &[String], queue: u16) -> String {
    if lan.is_empty() {
        return String::new();
    }
    let lan: Vec<String> = lan.iter().map(|l| format!("\"{l}\"")).collect();
    let lan = lan.join(", ");
    format!(
        "\tchain dns_snoop {{\n\
         \t\ttype filter hook forward priority mangle; policy accept;\n\
         \t\tiifname {{ {lan} }} udp dport {DNS_PORT} ct direction original log group {queue}\n\
         \t\tiifname {{ {lan} }} tcp dport {DNS_PORT} ct direction original log group {queue}\n\
         \t\toifname {{ {lan} }} udp sport {DNS_PORT} ct direction reply queue num {queue} bypass\n\
         \t\toifname {{ {lan} }} tcp sport {DNS_PORT} ct direction reply queue num {queue} bypass\n\
         \t}}\n"
    )
}

/// The iptables chain (mangle table, IPv4 and IPv6) snoop mode falls back to on kernels
/// without nftables' `queue` expression (`CONFIG_NFT_QUEUE`) but with the xtables NFQUEUE
/// target.
pub const FALLBACK_CHAIN: &str = "STEER_DNS_SNOOP";

/// The comment of the rule that marks, in [`FALLBACK_CHAIN`], that steer created the mangle
/// table for it (on the nftables backend of iptables): the mark lives as long as the chain, so
/// a restarted daemon or `steer stop` without one still knows the table is steer's to remove.
const CREATED_MARK: &str = "steer created this table";

fn xtables(bin: &str, args: &[&str]) -> Result<(), String> {
    xtables_output(bin, args).map(drop)
}

fn xtables_output(bin: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(bin)
        .arg("-w")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{bin}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
///
/// On the nftables backend of iptables, a mangle table that was not there before is made by
/// this: the chain then carries [`CREATED_MARK`], so that [`remove_fallback`] takes the table
/// (and its hooked base chains) out again when nothing else is in it.
pub fn install_fallback(lan: &[String], queue: u16) -> Result<(), String> {
    let queue = queue.to_string();
    for bin in ["iptables", "ip6tables"] {
        // Before anything is made: the table steer makes is steer's to remove. A chain of an
        // earlier install keeps its mark.
        let created = match nft_table(bin) {
            Some(table) => !table_exists(table) || marked_created(bin),
            None => false,
        };
        let _ = xtables(bin, &["-t", "mangle", "-N", FALLBACK_CHAIN]);
        xtables(bin, &["-t", "mangle", "-F", FALLBACK_CHAIN])?;
        if created {
            xtables(
                bin,
                &[
                    "-t",
                    "mangle",
                    "-A",
                    FALLBACK_CHAIN,
                    "-m",
                    "comment",
                    "--comment",
                    CREATED_MARK,
                ],
            )?;
        }
        // Queries in from the LAN are copied (NFLOG), answers out to it held (NFQUEUE).
        let copy = ["-j", "NFLOG", "--nflog-group", &queue];
        let hold = ["-j", "NFQUEUE", "--queue-num", &queue, "--queue-bypass"];
        let ways: [(&str, &str, &str, &[&str]); 2] = [
            ("-i", "--dport", "ORIGINAL", &copy),
            ("-o", "--sport", "REPLY", &hold),
        ];
        for lan in lan {
            for (interface, port, direction, target) in ways {
                for proto in ["udp", "tcp"] {
                    let mut rule = vec![
                        "-t",
                        "mangle",
                        "-A",
                        FALLBACK_CHAIN,
                        interface,
                        lan,
                        "-p",
                        proto,
                        port,
                        "53",
                        "-m",
                        "conntrack",
                        "--ctdir",
                        direction,
                    ];
                    rule.extend_from_slice(target);
                    xtables(bin, &rule)?;
                }
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

/// Removes the fallback chain, if it is there (`steer stop`, snoop mode switched off), and the
/// mangle table when steer created it and nothing else is in it now: its hooked base chains
/// would otherwise stay, each packet passing through them for nothing. A table that was there
/// before, or holds another's rules or chains, stays.
pub fn remove_fallback() {
    for bin in ["iptables", "ip6tables"] {
        let created = marked_created(bin);
        while xtables(
            bin,
            &["-t", "mangle", "-D", "FORWARD", "-j", FALLBACK_CHAIN],
        )
        .is_ok()
        {}
        let _ = xtables(bin, &["-t", "mangle", "-F", FALLBACK_CHAIN]);
        let _ = xtables(bin, &["-t", "mangle", "-X", FALLBACK_CHAIN]);
        if let (true, Some(table)) = (created, nft_table(bin)) {
            remove_table_if_empty(bin, table);
        }
    }
}

/// The nftables table `bin` keeps its mangle table in, when it is the nftables variant
/// (`iptables-nft`); none for the legacy one, whose tables are the kernel's own.
fn nft_table(bin: &str) -> Option<&'static str> {
    let version = xtables_version(bin)?;
    version.contains("nf_tables").then_some(match bin {
        "ip6tables" => "ip6 mangle",
        _ => "ip mangle",
    })
}

fn xtables_version(bin: &str) -> Option<String> {
    let out = std::process::Command::new(bin)
        .arg("-V")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn table_exists(table: &str) -> bool {
    nft(&format!("list table {table}")).is_ok()
}

fn nft(args: &str) -> Result<(), String> {
    let out = std::process::Command::new("nft")
        .args(args.split(' '))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `nft`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {args}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether [`FALLBACK_CHAIN`] carries [`CREATED_MARK`].
fn marked_created(bin: &str) -> bool {
    xtables_output(bin, &["-t", "mangle", "-S", FALLBACK_CHAIN])
        .is_ok_and(|rules| rules.contains(CREATED_MARK))
}

/// Deletes `table` when `bin -S` shows nothing in it but the base chains' ACCEPT policies.
fn remove_table_if_empty(bin: &str, table: &str) {
    let Ok(rules) = xtables_output(bin, &["-t", "mangle", "-S"]) else {
        return;
    };
    if !only_accept_policies(&rules) {
        log::info!(
            "dns snoop: the {table} table steer created for its iptables fallback now holds \
             other rules; leaving it"
        );
        return;
    }
    match nft(&format!("delete table {table}")) {
        Ok(()) => log::info!(
            "dns snoop: removed the {table} table steer created for its iptables fallback"
        ),
        Err(e) => log::warn!(
            "dns snoop: cannot remove the {table} table steer created for its iptables \
             fallback: {e}; it is empty, `nft delete table {table}` removes it"
        ),
    }
}

/// Whether `iptables -S` output is nothing but ACCEPT policies of base chains.
fn only_accept_policies(rules: &str) -> bool {
    rules
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .all(|l| l.starts_with("-P ") && l.ends_with(" ACCEPT"))
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
            io::Error::new(
                e.kind(),
                format!("dns snoop (dns.snoop_queue = {queue}): {e}"),
            )
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
    let mut outstanding = Outstanding::default();
    while !stop.load(Ordering::Relaxed) {
        let n = match q.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // The kernel dropped messages for us: queued answers were accepted (fail-open),
                // copies of queries lost (their answers pass unlearned).
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
            let dns = dns_packet(p.payload);
            let Some(id) = p.id else {
                // A logged copy: a query on its way out (it needs no verdict).
                if let Some(q) = dns.filter(|d| d.dst.port() == DNS_PORT && !is_response(d.msg)) {
                    outstanding.ask(&q, received);
                }
                continue;
            };
            if let Some(dns) = dns.filter(|d| d.src.port() == DNS_PORT) {
                let stats = learner.stats();
                stats.inc(Count::SnoopAnswers);
                if outstanding.answer(&dns, received) {
                    match super::learn_answer(learner, dns.msg) {
                        Ok(o) if o.written > 0 => stats.inc(Count::SnoopLearned),
                        Ok(_) => {}
                        Err(_) => stats.inc(Count::MalformedAnswers),
                    }
                } else {
                    log::debug!(
                        "dns snoop: an answer from {} to {} replies to no query seen (another \
                         ID or question, a second answer, or asked while no daemon ran); not \
                         learned from",
                        dns.src,
                        dns.dst
                    );
                }
            }
            if let Err(e) = q.accept(id) {
                log::debug!("dns snoop: verdict for packet {id}: {e}");
            }
            learner.stats().record(Latency::Snoop, received.elapsed());
        }
    }
}

fn is_response(msg: &[u8]) -> bool {
    wire::Header::parse(msg).is_ok_and(|h| h.is_response())
}

/// A DNS message a queued IP packet carries, with its addresses and ports.
#[derive(Debug, PartialEq, Eq)]
pub struct DnsPacket<'p> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub msg: &'p [u8],
}

/// What ties an answer to its query: the client (address and port), the server, the DNS ID
/// and the question (name, type, class).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Asked {
    client: SocketAddr,
    server: IpAddr,
    id: u16,
    name: String,
    qtype: u16,
    qclass: u16,
}

impl Asked {
    fn of(client: SocketAddr, server: IpAddr, msg: &[u8]) -> Option<Asked> {
        let q = wire::question(msg).ok()?;
        Some(Asked {
            client,
            server,
            id: wire::id(msg)?,
            name: q.name,
            qtype: q.qtype,
            qclass: q.qclass,
        })
    }
}

/// The queries seen and not answered yet, bounded in number ([`MAX_OUTSTANDING`]) and time
/// ([`OUTSTANDING_FOR`]).
#[derive(Debug, Default)]
pub struct Outstanding {
    /// Each query and when it was last sent (a client's retry of the same query renews it).
    asked: HashMap<Asked, Instant>,
    /// The same, oldest first; an entry whose time is not the map's is a renewed one's old
    /// place, skipped.
    order: VecDeque<(Instant, Asked)>,
}

impl Outstanding {
    /// Notes `query`, sent at `now`.
    pub fn ask(&mut self, query: &DnsPacket<'_>, now: Instant) {
        let Some(key) = Asked::of(query.src, query.dst.ip(), query.msg) else {
            return;
        };
        self.expire(now);
        while self.asked.len() >= MAX_OUTSTANDING {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            if self.asked.get(&old) == Some(&at) {
                self.asked.remove(&old);
            }
        }
        self.asked.insert(key.clone(), now);
        self.order.push_back((now, key));
    }

    /// Whether `answer`, read at `now`, replies to a noted query; that query is then answered
    /// (a second answer to it replies to nothing).
    pub fn answer(&mut self, answer: &DnsPacket<'_>, now: Instant) -> bool {
        self.expire(now);
        Asked::of(answer.dst, answer.src.ip(), answer.msg)
            .is_some_and(|key| self.asked.remove(&key).is_some())
    }

    /// Queries noted and not answered.
    pub fn len(&self) -> usize {
        self.asked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.asked.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < OUTSTANDING_FOR {
                break;
            }
            let (at, old) = self.order.pop_front().expect("a front");
            if self.asked.get(&old) == Some(&at) {
                self.asked.remove(&old);
            }
        }
        // Answered queries leave their place behind: drop those places when they pile up.
        if self.order.len() > 2 * MAX_OUTSTANDING {
            let asked = &self.asked;
            self.order.retain(|(at, k)| asked.get(k) == Some(at));
        }
    }
}

/// The DNS message a queued IP packet carries to or from port 53: a UDP payload, or a TCP
/// segment holding one whole length-prefixed message.
pub fn dns_packet(ip: &[u8]) -> Option<DnsPacket<'_>> {
    let version = ip.first()? >> 4;
    let (proto, src, dst, l4): (u8, IpAddr, IpAddr, &[u8]) = match version {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            if frag & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                *ip.get(9)?,
                Ipv4Addr::from(src).into(),
                Ipv4Addr::from(dst).into(),
                ip.get(ihl..)?,
            )
        }
        6 => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                *ip.get(6)?,
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    let dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
    if sport != DNS_PORT && dport != DNS_PORT {
        return None;
    }
    let msg = match proto {
        17 => l4.get(8..)?,
        6 => {
            let offset = usize::from(l4.get(12)? >> 4) * 4;
            let data = l4.get(offset..)?;
            let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
            if data.len() != len + 2 {
                return None;
            }
            &data[2..]
        }
        _ => return None,
    };
    Some(DnsPacket {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        msg,
    })
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
        let p = ipv4_udp(53, b"hello");
        let d = dns_packet(&p).unwrap();
        assert_eq!(d.msg, b"hello");
        assert_eq!(d.src, "8.8.8.8:53".parse().unwrap());
        assert_eq!(d.dst, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(dns_packet(&ipv4_udp(54, b"hello")), None);
        let mut tcp = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        tcp.extend_from_slice(&[0; 32]);
        tcp.extend_from_slice(&53u16.to_be_bytes());
        tcp.extend_from_slice(&[
            0x9c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0,
        ]);
        let mut whole = tcp.clone();
        whole.extend_from_slice(&[0, 3, b'a', b'b', b'c']);
        assert_eq!(dns_packet(&whole).unwrap().msg, b"abc");
        assert_eq!(
            dns_packet(&whole).unwrap().dst,
            "[::]:40000".parse().unwrap()
        );
        let mut part = tcp;
        part.extend_from_slice(&[0, 9, b'a', b'b', b'c']);
        assert_eq!(dns_packet(&part), None);
        assert_eq!(dns_packet(&[]), None);
        assert_eq!(dns_packet(&[0x45]), None);
        // A query: to port 53.
        let mut q = ipv4_udp(40000, b"query");
        q[22..24].copy_from_slice(&53u16.to_be_bytes());
        let d = dns_packet(&q).unwrap();
        assert_eq!(
            (d.src.port(), d.dst.port(), d.msg),
            (40000, 53, &b"query"[..])
        );
    }

    fn packet<'m>(src: &str, dst: &str, msg: &'m [u8]) -> DnsPacket<'m> {
        DnsPacket {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            msg,
        }
    }

    fn answer_to(query: &[u8]) -> Vec<u8> {
        let mut a = wire::reply(query, 0);
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 198, 51, 100, 161]);
        a
    }

    #[test]
    fn an_answer_teaches_only_when_it_replies_to_a_query_seen_and_only_once() {
        let (client, server) = ("192.168.60.2:5555", "198.51.100.53:53");
        let t0 = Instant::now();
        let mut o = Outstanding::default();
        let query = wire::query(77, "plain2.example", wire::rtype::A);
        o.ask(&packet(client, server, &query), t0);
        assert_eq!(o.len(), 1);
        let at = t0 + Duration::from_millis(5);
        // A question never asked, on the same connection and ID.
        let evil = answer_to(&wire::query(77, "evil.snoop.example", wire::rtype::A));
        assert!(!o.answer(&packet(server, client, &evil), at));
        // Another ID.
        let other_id = answer_to(&wire::query(78, "plain2.example", wire::rtype::A));
        assert!(!o.answer(&packet(server, client, &other_id), at));
        // Another type, another client port, another server.
        let aaaa = answer_to(&wire::query(77, "plain2.example", wire::rtype::AAAA));
        assert!(!o.answer(&packet(server, client, &aaaa), at));
        let real = answer_to(&query);
        assert!(!o.answer(&packet(server, "192.168.60.2:5556", &real), at));
        assert!(!o.answer(&packet("198.51.100.54:53", client, &real), at));
        // The real answer (its name in another case: 0x20 randomization), once.
        let mut cased = real.clone();
        cased[13] = b'P';
        assert!(o.answer(&packet(server, client, &cased), at));
        assert!(
            !o.answer(&packet(server, client, &real), at),
            "a second answer"
        );
        assert!(o.is_empty());
    }

    #[test]
    fn queries_wait_for_their_answer_a_bounded_time_and_number() {
        let t0 = Instant::now();
        let mut o = Outstanding::default();
        let query = wire::query(1, "a.example", wire::rtype::A);
        o.ask(&packet("10.0.0.2:1000", "9.9.9.9:53", &query), t0);
        let late = t0 + OUTSTANDING_FOR;
        assert!(!o.answer(
            &packet("9.9.9.9:53", "10.0.0.2:1000", &answer_to(&query)),
            late
        ));
        // A retry renews the query.
        o.ask(&packet("10.0.0.2:1000", "9.9.9.9:53", &query), t0);
        o.ask(&packet("10.0.0.2:1000", "9.9.9.9:53", &query), late);
        assert!(o.answer(
            &packet("9.9.9.9:53", "10.0.0.2:1000", &answer_to(&query)),
            late + Duration::from_secs(1)
        ));
        for port in 0..MAX_OUTSTANDING as u16 + 10 {
            o.ask(
                &packet(&format!("10.0.0.2:{port}"), "9.9.9.9:53", &query),
                t0,
            );
        }
        assert_eq!(o.len(), MAX_OUTSTANDING);
        assert!(!o.answer(&packet("9.9.9.9:53", "10.0.0.2:0", &answer_to(&query)), t0));
        assert!(o.answer(&packet("9.9.9.9:53", "10.0.0.2:10", &answer_to(&query)), t0));
        assert!(o.order.len() <= 2 * MAX_OUTSTANDING + 1);
    }

    #[test]
    fn a_mangle_table_with_anything_but_accept_policies_is_not_empty() {
        let empty = "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P FORWARD ACCEPT\n";
        assert!(only_accept_policies(empty));
        assert!(only_accept_policies(""));
        assert!(!only_accept_policies(&format!("{empty}-N OTHER\n")));
        assert!(!only_accept_policies(&format!(
            "{empty}-A FORWARD -j MARK --set-mark 1\n"
        )));
        assert!(!only_accept_policies("-P FORWARD DROP\n"));
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
        // The queries too, copied (not held): an answer teaches only when it replies to one.
        for proto in ["udp", "tcp"] {
            assert!(
                c.contains(&format!(
                    "iifname {{ \"br-lan\" }} {proto} dport 53 ct direction original log group \
                     5353\n"
                )),
                "{c}"
            );
        }
        assert!(nft_chain(&[], 1).is_empty());
    }
}

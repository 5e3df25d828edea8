//! UDP traffic through the lab: a client in `client` sends, a receiver in `internet` bound to a
//! server address records what arrives and through which WAN.

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Lab, Wan, sock};

/// Payload: magic, a per-sender nonce (so nothing foreign or stale is counted), the sequence.
const MAGIC: [u8; 8] = *b"steerlab";
const PAYLOAD: usize = 24;
/// How long a receiver keeps reading after its sender finished, for datagrams in flight.
const DRAIN: Duration = Duration::from_millis(100);
/// How long [`udp_via`] waits after the last send for stragglers.
const UDP_VIA_GRACE: Duration = Duration::from_millis(300);
/// Receiver poll period (also the granularity of stop checks).
const POLL: Duration = Duration::from_millis(5);
/// Bound on a receiver thread binding its socket.
const READY: Duration = Duration::from_secs(3);
/// How long a receiver retries a port still held by the previous receiver's socket.
const REBIND: Duration = Duration::from_secs(2);

/// One datagram that reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// When the receiver got it.
    pub at: Instant,
    /// The sender's sequence number (0, 1, 2, ... in sending order).
    pub seq: u64,
    /// Source address and port as the internet saw it (after the router's NAT).
    pub from: SocketAddr,
    /// The WAN whose NAT address is the source ([`Lab::nat_addr_v4`]/[`Lab::nat_addr_v6`]);
    /// `None` if the source is neither.
    pub via: Option<Wan>,
    /// The ISP link it physically arrived on in the internet namespace (`isp1` or `isp2`): a
    /// cross-check of `via`. They agree: when a flow's route moves to the other WAN, masquerade
    /// drops the one packet that changed interface and kills its conntrack entry, so the next
    /// packet is NATed to the new WAN's address (no stale binding ever leaves).
    pub link: Option<Wan>,
}

fn nonce() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    t ^ (u64::from(std::process::id()) << 32) ^ NEXT.fetch_add(1, Ordering::Relaxed)
}

fn payload(nonce: u64, seq: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..8].copy_from_slice(&MAGIC);
    p[8..16].copy_from_slice(&nonce.to_be_bytes());
    p[16..].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The sequence number of one of our datagrams (padding after the payload is allowed).
fn parse(nonce: u64, p: &[u8]) -> Option<u64> {
    (p.len() >= PAYLOAD && p[..8] == MAGIC && p[8..16] == nonce.to_be_bytes())
        .then(|| u64::from_be_bytes(p[16..PAYLOAD].try_into().expect("8 bytes")))
}

/// A server socket in the internet namespace (create it on a thread that entered it).
struct Receiver {
    sock: UdpSocket,
    /// ifindex of `isp1`, `isp2`.
    links: [Option<u32>; 2],
    nonce: u64,
}

impl Receiver {
    fn bind(server: SocketAddr, nonce: u64) -> Result<Receiver, String> {
        let sock = bind_reused_port(server).map_err(|e| format!("bind {server}: {e}"))?;
        sock::enable_pktinfo(&sock, server.is_ipv6())
            .map_err(|e| format!("pktinfo on {server}: {e}"))?;
        sock.set_read_timeout(Some(POLL))
            .map_err(|e| format!("read timeout on {server}: {e}"))?;
        Ok(Receiver {
            sock,
            links: [sock::ifindex("isp1"), sock::ifindex("isp2")],
            nonce,
        })
    }

    /// The next datagram of our sender, or `None` after a poll period without one.
    fn next(&self) -> Option<Arrival> {
        // Large enough for a padded datagram whole (one that was sent in fragments).
        let mut buf = [0u8; 4096];
        match sock::recv(&self.sock, &mut buf) {
            Ok(d) => {
                let at = Instant::now();
                let seq = parse(self.nonce, &buf[..d.len])?;
                let link = d.ifindex.and_then(|i| {
                    Wan::ALL
                        .into_iter()
                        .find(|w| self.links[w.index()] == Some(i))
                });
                Some(Arrival {
                    at,
                    seq,
                    from: d.from,
                    via: Lab::wan_of_nat_addr(d.from.ip()),
                    link,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => panic!("receive on {:?}: {e}", self.sock.local_addr()),
        }
    }
}

/// Binds `server`, retrying for [`REBIND`] while the port is in use: a test that polls with
/// one receiver after another rebinds the port the moment the last one closed, but a process
/// forked meanwhile by another test thread holds a copy of that socket until its exec.
fn bind_reused_port(server: SocketAddr) -> io::Result<UdpSocket> {
    let deadline = Instant::now() + REBIND;
    loop {
        match UdpSocket::bind(server) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            bound => return bound,
        }
    }
}

/// Spawns `f(receiver)` in the internet namespace and returns once the socket is bound.
fn spawn_receiver<R: Send + 'static>(
    lab: &Lab,
    server: SocketAddr,
    nonce: u64,
    f: impl FnOnce(Receiver) -> R + Send + 'static,
) -> JoinHandle<R> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = lab
        .internet
        .spawn(move || match Receiver::bind(server, nonce) {
            Ok(r) => {
                let _ = ready_tx.send(Ok(()));
                f(r)
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                panic!("{e}");
            }
        });
    match ready_rx.recv_timeout(READY) {
        Ok(Ok(())) => handle,
        Ok(Err(e)) => panic!("receiver in {}: {e}", lab.internet.name),
        Err(e) => panic!(
            "receiver in {} not ready within {READY:?}: {e}",
            lab.internet.name
        ),
    }
}

/// Sends `n` datagrams (0.5 ms apart, one source port) from the client to `server:port` and
/// counts, in the internet namespace, how many arrived through each WAN (by NAT source
/// address): index 0 is WAN 1, index 1 is WAN 2. Returns when all `n` arrived, or 300 ms after
/// the last send. Nothing else may be bound to `server:port` meanwhile.
pub fn udp_via(lab: &Lab, server: IpAddr, port: u16, n: usize) -> [usize; 2] {
    udp_via_sized(lab, server, port, n, PAYLOAD)
}

/// Like [`udp_via`] with datagrams of `size` bytes (padded; at most 4096): above the lab's
/// MTU the client sends each one in fragments, and only a datagram whose every fragment took
/// one way is reassembled at the server and counted.
pub fn udp_via_sized(lab: &Lab, server: IpAddr, port: u16, n: usize, size: usize) -> [usize; 2] {
    let mut counts = [0; 2];
    for a in arrivals(lab, server, port, n, size) {
        if let Some(w) = a.via {
            counts[w.index()] += 1;
        }
    }
    counts
}

/// Like [`udp_via`] but returns every arrival (sequence, source, WAN by NAT address and by
/// link), in arrival order.
pub fn udp_arrivals(lab: &Lab, server: IpAddr, port: u16, n: usize) -> Vec<Arrival> {
    arrivals(lab, server, port, n, PAYLOAD)
}

/// Like [`udp_arrivals`] but the client sends from `source` (one of its addresses, bound with
/// an ephemeral port) instead of the address its route chooses.
pub fn udp_arrivals_from(
    lab: &Lab,
    source: IpAddr,
    server: IpAddr,
    port: u16,
    n: usize,
) -> Vec<Arrival> {
    arrivals_from(lab, Some(source), server, port, n, PAYLOAD)
}

fn arrivals(lab: &Lab, server: IpAddr, port: u16, n: usize, size: usize) -> Vec<Arrival> {
    arrivals_from(lab, None, server, port, n, size)
}

fn arrivals_from(
    lab: &Lab,
    source: Option<IpAddr>,
    server: IpAddr,
    port: u16,
    n: usize,
    size: usize,
) -> Vec<Arrival> {
    assert!((PAYLOAD..=4096).contains(&size), "datagram size {size}");
    let server = SocketAddr::new(server, port);
    let nonce = nonce();
    let sent = Arc::new(Mutex::new(None::<Instant>));
    let sent_rx = Arc::clone(&sent);
    // Hard bound whatever happens to the sender.
    let hard = Instant::now() + Duration::from_secs(5) + Duration::from_millis(n as u64);
    let receiver = spawn_receiver(lab, server, nonce, move |r| {
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < hard {
            if let Some(a) = r.next() {
                got.push(a);
            } else if let Some(done) = *sent_rx.lock().expect("lock")
                && done.elapsed() >= UDP_VIA_GRACE
            {
                break;
            }
        }
        got
    });
    lab.client.enter(|| {
        let sock = match source {
            None => sock::unbound_udp(server.ip()),
            Some(ip) => UdpSocket::bind(SocketAddr::new(ip, 0))
                .unwrap_or_else(|e| panic!("bind a UDP socket to {ip} in the client: {e}")),
        };
        for seq in 0..n as u64 {
            // Errors (no route yet, ...) count as losses.
            let mut datagram = payload(nonce, seq).to_vec();
            datagram.resize(size, 0);
            let _ = sock.send_to(&datagram, server);
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    *sent.lock().expect("lock") = Some(Instant::now());
    receiver
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Sets the flag when dropped: a thread's "done" also when it panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[derive(Debug, Default)]
struct Shared {
    arrivals: Mutex<Vec<Arrival>>,
    /// Asks both threads to finish.
    stop: AtomicBool,
    sent: AtomicU64,
    sender_done: AtomicBool,
    receiver_done: AtomicBool,
}

/// A continuous sequence-numbered UDP stream from the client to a server, for failover timing.
///
/// A thread in `client` sends datagram `seq` = 0, 1, 2, ... every `interval` from one socket
/// (one source port, so one conntrack flow); if it falls behind it sends the next at once
/// without bursting to catch up. A thread in `internet` bound to the server records each
/// [`Arrival`]. The sender stops after `max_duration` (or [`Stream::stop`]/drop); the
/// receiver then reads for another 100 ms for datagrams in flight and stops too (hard bound:
/// `max_duration` + 1 s). Dropping the stream stops and joins both threads.
#[derive(Debug)]
pub struct Stream {
    shared: Arc<Shared>,
    sender: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
    started: Instant,
    server: SocketAddr,
}

impl Stream {
    /// Starts streaming from the client to `server:port` (which must be free in `internet`).
    /// Returns once the receiver is bound and the sender has started.
    pub fn start(
        lab: &Lab,
        server: IpAddr,
        port: u16,
        interval: Duration,
        max_duration: Duration,
    ) -> Stream {
        let server = SocketAddr::new(server, port);
        let nonce = nonce();
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let hard = started + max_duration + Duration::from_secs(1);

        let rx = Arc::clone(&shared);
        let receiver = spawn_receiver(lab, server, nonce, move |r| {
            let _done = SetOnDrop(&rx.receiver_done);
            let mut drain_from = None;
            loop {
                if let Some(a) = r.next() {
                    rx.arrivals.lock().expect("lock").push(a);
                }
                let now = Instant::now();
                if now >= hard {
                    break;
                }
                if rx.sender_done.load(Ordering::Acquire)
                    && now.duration_since(*drain_from.get_or_insert(now)) >= DRAIN
                {
                    break;
                }
            }
        });

        let tx = Arc::clone(&shared);
        let sender = lab.client.spawn(move || {
            let _done = SetOnDrop(&tx.sender_done);
            let sock = sock::unbound_udp(server.ip());
            let end = started + max_duration;
            let mut next = Instant::now();
            let mut seq = 0u64;
            while !tx.stop.load(Ordering::Acquire) && Instant::now() < end {
                let _ = sock.send_to(&payload(nonce, seq), server);
                tx.sent.store(seq + 1, Ordering::Release);
                seq += 1;
                next += interval;
                let now = Instant::now();
                if next > now {
                    // Sleep in slices so that stop() is prompt even with long intervals.
                    let mut left = next - now;
                    while left > Duration::ZERO && !tx.stop.load(Ordering::Acquire) {
                        let slice = left.min(Duration::from_millis(10));
                        std::thread::sleep(slice);
                        left = next.saturating_duration_since(Instant::now());
                    }
                } else {
                    next = now;
                }
            }
        });

        Stream {
            shared,
            sender: Some(sender),
            receiver: Some(receiver),
            started,
            server,
        }
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().expect("lock").clone()
    }

    /// The first arrival through `w` (by NAT source address) at or after `since`.
    pub fn first_via_after(&self, w: Wan, since: Instant) -> Option<Arrival> {
        self.shared
            .arrivals
            .lock()
            .expect("lock")
            .iter()
            .find(|a| a.via == Some(w) && a.at >= since)
            .copied()
    }

    /// Waits for the first arrival through `w` (by NAT source address) at or after `since`;
    /// panics if none arrives within `within`. Its `at` is when the receiver got it, so how
    /// often this polls does not change the answer.
    pub fn wait_first_via(&self, w: Wan, since: Instant, within: Duration) -> Arrival {
        let deadline = Instant::now() + within;
        loop {
            if let Some(a) = self.first_via_after(w, since) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no datagram to {} via {w:?} within {within:?} ({} sent, {} received)",
                self.server,
                self.sent(),
                self.shared.arrivals.lock().expect("lock").len()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The last arrival through `w` (by NAT source address) before `until`.
    pub fn last_via_before(&self, w: Wan, until: Instant) -> Option<Arrival> {
        self.shared
            .arrivals
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|a| a.via == Some(w) && a.at < until)
            .copied()
    }

    /// How many datagrams the client has sent so far (sequence numbers `0..sent()`).
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Acquire)
    }

    /// When the stream started.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// Whether both threads are done (the bound passed or the stream was stopped).
    pub fn is_finished(&self) -> bool {
        self.shared.sender_done.load(Ordering::Acquire)
            && self.shared.receiver_done.load(Ordering::Acquire)
    }

    /// Stops sending, waits for datagrams in flight (100 ms) and returns everything received.
    /// Panics if a stream thread panicked.
    pub fn stop(mut self) -> Vec<Arrival> {
        self.halt(true);
        self.received()
    }

    fn halt(&mut self, propagate: bool) {
        self.shared.stop.store(true, Ordering::Release);
        for h in [self.sender.take(), self.receiver.take()]
            .into_iter()
            .flatten()
        {
            if let Err(p) = h.join()
                && propagate
            {
                std::panic::resume_unwind(p);
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // No panic from drop (it may run while unwinding): thread panics were already printed.
        self.halt(false);
    }
}

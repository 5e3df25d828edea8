//! The DNS forwarder: listens on UDP and TCP at the configured addresses, relays every query
//! to the upstreams (in order, each given `timeout_ms`), and relays each answer back unchanged
//! but for the ID, after the learner has put every address it teaches into the kernel.
//!
//! - Only clients are answered: sources the router routes out of a LAN interface, the router
//!   itself and `dns.clients` ([`Clients`], kept by the controller). A query from anyone else
//!   is dropped unanswered (no reflection, no learning for the WAN side), counted and logged.
//! - UDP queries go out on one connected socket per upstream with an ID of steer's own (the
//!   client's is put back in the answer) and otherwise as the client sent them, its EDNS size
//!   with them; an answer is taken only from that upstream, for that ID and that question. An
//!   upstream that refuses (ICMP unreachable) fails its queries at once; one that does not
//!   answer in time hands them to the next; when none is left the client gets SERVFAIL. A
//!   truncated answer (TC) goes back as it is, and the client asks again over TCP; so does an
//!   answer longer than the client takes (512 bytes, or its EDNS size), cut to its header and
//!   question with TC set: the router never answers a small query with a big answer.
//! - TCP connections are served one query at a time each, over one upstream TCP connection of
//!   their own, with idle and I/O timeouts and a cap on connections.
//! - Answers steer makes itself: NXDOMAIN for `use-application-dns.net` (with
//!   `block_application_dns`), and an empty answer to AAAA questions for the names of sets
//!   that filter AAAA. Answers to other questions (ANY) lose the IPv6 records of those names
//!   in every section. Queries that cannot be read are dropped (not even a header) or answered
//!   FORMERR, and counted; answers that cannot be read give SERVFAIL (nothing is learned from
//!   them), at once also when the reply is no DNS message at all ([`malformed`]), and the log
//!   names the upstream.
//!
//! Everything runs on one thread of its own with a current-thread runtime, so answers never
//! wait for the daemon's event loop (a reload, a routing reconcile).

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    io,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::oneshot,
};

use super::{
    Learn,
    matcher::Matcher,
    mmsg::{self, RecvBatch},
    stats::{Count, Latency},
    wire::{self, CLASS_IN, Question, WireError, rcode, rtype},
};
use crate::prefix::Prefix;

/// Queries waiting for an upstream at once (UDP); beyond it a query gets SERVFAIL.
const MAX_PENDING: usize = 60_000;
/// The same for one client address: one host flooding queries (to a slow upstream) cannot
/// take every slot from the others.
const MAX_PENDING_PER_CLIENT: usize = 512;
/// TCP client connections served at once; more wait in the listen backlog.
const MAX_TCP: usize = 256;
/// TCP connections one client address holds at once; more are closed as they come, so that
/// one host (idle connections, a flood) cannot take every slot from the others.
const MAX_TCP_PER_CLIENT: usize = 16;
/// A TCP client connection that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Reading or writing one TCP message may take this long.
const TCP_IO: Duration = Duration::from_secs(5);
/// How often pending UDP queries are checked for their deadline.
const TICK: Duration = Duration::from_millis(5);
/// The name browsers ask to learn whether the network wants them to keep its DNS.
pub const APPLICATION_DNS_CANARY: &str = "use-application-dns.net";

/// Who the forwarder answers: the sources the controller allows (the subnets the router
/// routes out of a LAN interface, its own addresses, `dns.clients`), and the loopback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clients {
    prefixes: Vec<Prefix>,
}

impl Clients {
    pub fn new(mut prefixes: Vec<Prefix>) -> Clients {
        prefixes.sort();
        prefixes.dedup();
        Clients { prefixes }
    }

    pub fn prefixes(&self) -> &[Prefix] {
        &self.prefixes
    }

    /// Whether a query from `client` is answered. The loopback always is (the router's own
    /// software); the kernel takes no packet from it, nor from the router's own addresses,
    /// from outside.
    pub fn admits(&self, client: IpAddr) -> bool {
        client.is_loopback() || self.prefixes.iter().any(|p| p.contains(client))
    }
}

/// What the forwarder is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    pub timeout: Duration,
    pub block_application_dns: bool,
}

/// A running forwarder; dropping it stops it (its sockets are closed when this returns).
#[derive(Debug)]
pub struct Forwarder {
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A forwarder's sockets, bound but not served yet (see [`Forwarder::bind`]).
#[derive(Debug)]
pub struct Bound {
    pub settings: Settings,
    udp: Vec<Socket>,
    tcp: Vec<Socket>,
    upstream: Vec<std::net::UdpSocket>,
}

impl Forwarder {
    /// Binds every listen address (UDP and TCP; also addresses the router does not hold yet,
    /// such as a VIP) and starts serving on a thread of its own.
    pub fn start(settings: Settings, learner: Arc<dyn Learn>) -> io::Result<Forwarder> {
        Self::bind(settings)?.start(learner)
    }

    /// Binds every listen address and connects the upstream sockets without serving yet: the
    /// daemon binds before it changes anything, so a listen address that is taken refuses it
    /// with the system untouched.
    pub fn bind(settings: Settings) -> io::Result<Bound> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for addr in &settings.listen {
            udp.push(bind(*addr, Type::DGRAM).map_err(|e| named(e, "bind UDP", *addr))?);
            tcp.push(bind(*addr, Type::STREAM).map_err(|e| named(e, "bind TCP", *addr))?);
        }
        let mut upstream = Vec::new();
        for addr in &settings.upstreams {
            let any: SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = std::net::UdpSocket::bind(any)?;
            s.connect(addr)
                .map_err(|e| named(e, "connect to upstream", *addr))?;
            s.set_nonblocking(true)?;
            upstream.push(s);
        }
        Ok(Bound {
            settings,
            udp,
            tcp,
            upstream,
        })
    }
}

impl Bound {
    /// Starts serving on a thread of its own, learning through `learner`.
    pub fn start(self, learner: Arc<dyn Learn>) -> io::Result<Forwarder> {
        let Bound {
            settings,
            udp,
            tcp,
            upstream,
        } = self;
        let (stop, stopped) = oneshot::channel();
        let run = settings.clone();
        let thread = std::thread::Builder::new()
            .name("steer-dns".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        log::error!("dns forwarder: cannot start its runtime: {e}");
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    if let Err(e) = serve(run, udp, tcp, upstream, learner, stopped).await {
                        log::error!("dns forwarder stopped: {e}");
                    }
                });
            })?;
        Ok(Forwarder {
            settings,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn named(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("dns forwarder: {what} {addr}: {e}"))
}

pub(super) fn bind(addr: SocketAddr, kind: Type) -> io::Result<Socket> {
    let protocol = if kind == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let s = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_freebind_v6(true)?;
    } else {
        s.set_freebind_v4(true)?;
    }
    if kind == Type::STREAM {
        s.set_reuse_address(true)?;
    } else {
        // Room for a burst of queries while one answer is being learned.
        let _ = s.set_recv_buffer_size(4 << 20);
    }
    s.bind(&addr.into())?;
    if kind == Type::STREAM {
        s.listen(1024)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

async fn serve(
    settings: Settings,
    udp: Vec<Socket>,
    tcp: Vec<Socket>,
    upstream: Vec<std::net::UdpSocket>,
    learner: Arc<dyn Learn>,
    stopped: oneshot::Receiver<()>,
) -> io::Result<()> {
    let upstreams = upstream
        .into_iter()
        .map(|s| UdpSocket::from_std(s).map(Rc::new))
        .collect::<io::Result<Vec<_>>>()?;
    let state = Rc::new(RefCell::new(Udp {
        outbox: vec![Vec::new(); upstreams.len()],
        replies: Vec::new(),
        upstreams: upstreams.clone(),
        pending: HashMap::new(),
        per_client: HashMap::new(),
        order: VecDeque::new(),
        rng: seed(),
        serial: 0,
    }));
    let shared = Rc::new(Shared::new(
        learner,
        settings.timeout,
        settings.block_application_dns,
        settings.upstreams.clone(),
    ));
    for s in udp {
        let sock = Rc::new(UdpSocket::from_std(std::net::UdpSocket::from(s))?);
        tokio::task::spawn_local(udp_listener(sock, Rc::clone(&state), Rc::clone(&shared)));
    }
    for (i, s) in upstreams.into_iter().enumerate() {
        tokio::task::spawn_local(upstream_reader(i, s, Rc::clone(&state), Rc::clone(&shared)));
    }
    tokio::task::spawn_local(deadlines(Rc::clone(&state), Rc::clone(&shared)));
    let connections = Rc::new(TcpClients::default());
    for s in tcp {
        let listener = TcpListener::from_std(std::net::TcpListener::from(s))?;
        tokio::task::spawn_local(tcp_listener(
            listener,
            Rc::clone(&connections),
            Rc::clone(&shared),
        ));
    }
    let _ = stopped.await;
    Ok(())
}

/// What every task needs.
struct Shared {
    learner: Arc<dyn Learn>,
    timeout: Duration,
    block_application_dns: bool,
    upstream_addrs: Vec<SocketAddr>,
    /// What each upstream did, for the log.
    upstream_log: std::sync::Mutex<HashMap<usize, UpstreamLog>>,
    /// When a query from a source that is no client was last logged.
    dropped_logged: std::sync::Mutex<Option<Instant>>,
}

/// How often a failing upstream is named in the log while it keeps failing.
const UPSTREAM_LOG_AGAIN: Duration = Duration::from_secs(60);
/// How soon a new failure of an upstream that answered since its last one is logged again: at
/// once, but for one that flaps.
const UPSTREAM_LOG_MIN: Duration = Duration::from_secs(10);
/// How often a query from a source that is no client is logged.
const DROPPED_LOG_AGAIN: Duration = Duration::from_secs(60);

/// What the log was told about one upstream.
#[derive(Debug, Default)]
struct UpstreamLog {
    /// When it last answered.
    answered: Option<Instant>,
    /// When its failure was last logged.
    logged: Option<Instant>,
    /// It answered since its failure was logged: the next failure is a new outage.
    recovered: bool,
    /// Malformed replies since its last good answer: its timeouts are then said to be that.
    malformed: u64,
    /// When a malformed reply of its was last logged.
    malformed_logged: Option<Instant>,
}

impl UpstreamLog {
    /// The upstream answered at `now`; true when that ends a failure the log named.
    fn answered(&mut self, now: Instant) -> bool {
        self.answered = Some(now);
        self.malformed = 0;
        let back = self.logged.is_some() && !self.recovered;
        self.recovered = true;
        back
    }

    /// A try sent at `sent` failed (`what`) at `now`; whether the log says so now. A refusal
    /// (nothing listens) is the upstream failing. A timeout is, unless the upstream answered
    /// other queries since this one went: one slow name (its own servers dead) is not the
    /// upstream failing. The first failure, and the first after answers, are logged at once;
    /// then once a minute while it lasts.
    fn failed(&mut self, what: Count, sent: Instant, now: Instant) -> bool {
        if what != Count::UpstreamRefused && self.answered.is_some_and(|at| at >= sent) {
            return false;
        }
        let due = match self.logged {
            None => true,
            Some(at) if self.recovered => now.duration_since(at) >= UPSTREAM_LOG_MIN,
            Some(at) => now.duration_since(at) >= UPSTREAM_LOG_AGAIN,
        };
        if due {
            self.logged = Some(now);
            self.recovered = false;
        }
        due
    }

    /// It sent a malformed reply at `now`; whether the log says so now (the first, then once
    /// a minute while they go on).
    fn malformed(&mut self, now: Instant) -> bool {
        self.malformed += 1;
        let due = self
            .malformed_logged
            .is_none_or(|at| now.duration_since(at) >= UPSTREAM_LOG_AGAIN);
        if due {
            self.malformed_logged = Some(now);
        }
        due
    }
}

/// Why `reply` from an upstream is no DNS answer at all, if it is not: too short for a header,
/// not a response, or a question that cannot be read. A readable answer to another question
/// (a late one, or a forgery) is not malformed: it is ignored.
fn malformed(reply: &[u8]) -> Option<String> {
    let Ok(h) = wire::Header::parse(reply) else {
        return Some("shorter than a DNS header".to_owned());
    };
    if !h.is_response() {
        return Some("not a response".to_owned());
    }
    if h.qdcount >= 1
        && let Err(e) = wire::question(reply)
    {
        return Some(format!("its question cannot be read: {e}"));
    }
    None
}

impl Shared {
    fn new(
        learner: Arc<dyn Learn>,
        timeout: Duration,
        block_application_dns: bool,
        upstream_addrs: Vec<SocketAddr>,
    ) -> Shared {
        Shared {
            learner,
            timeout,
            block_application_dns,
            upstream_addrs,
            upstream_log: Default::default(),
            dropped_logged: Default::default(),
        }
    }

    fn upstream_addr(&self, index: usize) -> String {
        self.upstream_addrs
            .get(index)
            .map_or_else(|| "?".to_owned(), ToString::to_string)
    }

    /// Upstream `index`'s log state, changed by `f`.
    fn upstream_log<T>(&self, index: usize, f: impl FnOnce(&mut UpstreamLog) -> T) -> T {
        let mut log = self.upstream_log.lock().unwrap_or_else(|e| e.into_inner());
        f(log.entry(index).or_default())
    }

    /// Upstream `index` answered a query.
    fn upstream_answered(&self, index: usize) {
        let back = self.upstream_log(index, |l| l.answered(Instant::now()));
        if back {
            log::info!(
                "dns forwarder: upstream {} answers again",
                self.upstream_addr(index)
            );
        }
    }

    fn count(&self, what: Count) {
        self.learner.stats().inc(what);
    }

    /// Upstream `index` sent a reply that is no DNS answer (`why`, `len` bytes): counted, and
    /// named in the log (the first, then once a minute) with what becomes of its query.
    fn upstream_malformed(&self, index: usize, len: usize, why: &str, fate: MalformedFate) {
        self.count(Count::MalformedAnswers);
        let due = self.upstream_log(index, |l| l.malformed(Instant::now()));
        if !due {
            return;
        }
        let fate = match fate {
            MalformedFate::Servfail => "its query gets SERVFAIL",
            MalformedFate::NoQuery => {
                "it carries the ID of no query waiting for it, so it is dropped"
            }
            MalformedFate::Ignored => {
                "dropped; the query with its ID waits for a readable answer (or its timeout)"
            }
        };
        log::warn!(
            "dns forwarder: upstream {} answered with a malformed reply ({len} bytes: {why}); \
             {fate} (is a DNS server listening there? counted as malformed answers in `steer \
             status`; logged once a minute)",
            self.upstream_addr(index)
        );
    }

    /// Whether a query from `client` is answered; one from a source that is no client is
    /// counted, and logged once a minute at most.
    fn admits(&self, client: IpAddr) -> bool {
        if self.learner.clients().admits(client) {
            return true;
        }
        self.count(Count::DroppedClients);
        let now = Instant::now();
        let mut logged = self
            .dropped_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if logged.is_none_or(|at| now.duration_since(at) >= DROPPED_LOG_AGAIN) {
            *logged = Some(now);
            log::warn!(
                "dns forwarder: dropped a query from {client}: it is no client (the router \
                 routes its address out of no general.lan interface, and dns.clients does not \
                 list it); if it should be answered (a VPN), add its network to dns.clients \
                 (logged once a minute; counted as dropped_clients in `steer status`)"
            );
        }
        false
    }

    /// Counts a failure of upstream `index` (a try sent at `sent`) and names it in the log
    /// when [`UpstreamLog::failed`] says so: a LAN whose DNS server (dnsmasq moved to another
    /// port) is gone gets SERVFAIL, and the log says why.
    fn upstream_failed(&self, index: usize, what: Count, sent: Instant) {
        self.count(what);
        let (due, malformed) = self.upstream_log(index, |l| {
            (l.failed(what, sent, Instant::now()), l.malformed)
        });
        if !due {
            return;
        }
        let addr = self.upstream_addr(index);
        let how = match what {
            Count::UpstreamRefused => "refuses queries (nothing listens there?)".to_owned(),
            _ if malformed > 0 => format!(
                "does not answer in time: it sent {malformed} malformed replies since its last \
                 good answer (is a DNS server listening there?)"
            ),
            _ => "does not answer in time".to_owned(),
        };
        log::warn!(
            "dns forwarder: upstream {addr} {how}; queries go to the next upstream, or get \
             SERVFAIL when none is left (check that the DNS server behind steer runs)"
        );
    }
}

/// A UDP query waiting for an upstream.
struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The longest answer the client takes ([`wire::udp_limit`]).
    limit: usize,
    listener: Rc<UdpSocket>,
    /// The query with steer's ID.
    query: Vec<u8>,
    question: Question,
    /// Index of the upstream being tried.
    upstream: usize,
    sent: Instant,
    /// Which try this is (a deadline of an earlier try is ignored).
    serial: u64,
}

struct Udp {
    upstreams: Vec<Rc<UdpSocket>>,
    /// Queries to send to each upstream at the end of the batch being handled, by pending ID
    /// (their bytes stay in `pending`: no copy per try).
    outbox: Vec<Vec<u16>>,
    /// Answers to send to clients at the end of the batch: (listener, answer, client).
    replies: Vec<(Rc<UdpSocket>, Vec<u8>, SocketAddr)>,
    pending: HashMap<u16, Pending>,
    /// Pending queries per client address.
    per_client: HashMap<IpAddr, usize>,
    /// (deadline, id, serial) in deadline order (every try has the same timeout).
    order: VecDeque<(Instant, u16, u64)>,
    rng: u64,
    serial: u64,
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40) | 1
}

impl Udp {
    /// Whether `client` may have one more query pending.
    fn admits(&self, client: IpAddr) -> bool {
        self.per_client.get(&client).copied().unwrap_or(0) < MAX_PENDING_PER_CLIENT
    }

    fn insert(&mut self, id: u16, p: Pending) {
        *self.per_client.entry(p.client.ip()).or_default() += 1;
        self.pending.insert(id, p);
    }

    /// Removes pending query `id`.
    fn take(&mut self, id: u16) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&p.client.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&p.client.ip());
            }
        }
        Some(p)
    }

    /// An ID no pending query has, or `None` when too many are pending.
    fn fresh_id(&mut self) -> Option<u16> {
        if self.pending.len() >= MAX_PENDING {
            return None;
        }
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let id = (self.rng >> 24) as u16;
            if !self.pending.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// Queues pending query `id` for its current upstream (sent by [`flush`]) and arms its
    /// deadline.
    fn send(&mut self, id: u16, timeout: Duration) {
        self.serial += 1;
        let serial = self.serial;
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        p.serial = serial;
        p.sent = Instant::now();
        self.outbox[p.upstream].push(id);
        self.order.push_back((p.sent + timeout, id, serial));
    }

    /// Moves every query waiting for upstream `index` on (it refused them).
    fn fail_upstream(&mut self, index: usize, shared: &Shared) {
        let waiting: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.upstream == index)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            shared.upstream_failed(index, Count::UpstreamRefused, Instant::now());
            next_upstream(self, id, shared);
        }
    }
}

/// Sends what the batch just handled produced: queries to the upstreams (one call each; an
/// upstream that refuses moves its queries on, possibly to the next upstream's outbox), then
/// answers to the clients (one call per listener).
fn flush(st: &mut Udp, shared: &Shared) {
    for _ in 0..=st.upstreams.len() {
        let mut refused = Vec::new();
        for (i, out) in st.outbox.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            // A query answered (SERVFAIL) or moved on since it was queued is not sent here.
            let pending = &st.pending;
            let datagrams: Vec<(&[u8], Option<&SockAddr>)> = out
                .iter()
                .filter_map(|id| pending.get(id).filter(|p| p.upstream == i))
                .map(|p| (p.query.as_slice(), None))
                .collect();
            if let Err(e) = mmsg::send(st.upstreams[i].as_raw_fd(), &datagrams) {
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    refused.push(i);
                } else {
                    log::debug!("dns forwarder: send to {}: {e}", shared.upstream_addrs[i]);
                }
            }
            out.clear();
        }
        for i in &refused {
            st.fail_upstream(*i, shared);
        }
        if st.outbox.iter().all(Vec::is_empty) {
            break;
        }
    }
    if st.replies.is_empty() {
        return;
    }
    let mut replies = std::mem::take(&mut st.replies);
    send_replies(&replies);
    // The buffer is kept for the next batch.
    replies.clear();
    st.replies = replies;
}

/// Sends answers to clients: one call per listener (usually there is one), each in the order
/// its answers came.
fn send_replies(replies: &[(Rc<UdpSocket>, Vec<u8>, SocketAddr)]) {
    let to: Vec<SockAddr> = replies.iter().map(|(_, _, c)| SockAddr::from(*c)).collect();
    let mut listeners: Vec<&Rc<UdpSocket>> = Vec::with_capacity(1);
    for (l, _, _) in replies {
        if !listeners.iter().any(|x| Rc::ptr_eq(x, l)) {
            listeners.push(l);
        }
    }
    for listener in listeners {
        let datagrams: Vec<(&[u8], Option<&SockAddr>)> = replies
            .iter()
            .zip(&to)
            .filter(|((l, _, _), _)| Rc::ptr_eq(l, listener))
            .map(|((_, a, _), c)| (a.as_slice(), Some(c)))
            .collect();
        if let Err(e) = mmsg::send(listener.as_raw_fd(), &datagrams) {
            log::debug!("dns forwarder: answering clients: {e}");
        }
    }
}

/// Reads batches of datagrams from `sock` as they come, handing each to `each`, then flushes.
async fn batches(
    sock: &UdpSocket,
    size: usize,
    state: &RefCell<Udp>,
    shared: &Shared,
    mut each: impl FnMut(&RecvBatch, usize, &mut Udp),
    mut on_error: impl FnMut(io::Error, &mut Udp),
) {
    let mut batch = RecvBatch::new(size);
    loop {
        // Errors too: a connected socket learns that its upstream's port is closed (ICMP) as
        // an error, without any datagram to read.
        let ready = match sock.ready(Interest::READABLE | Interest::ERROR).await {
            Ok(r) => r,
            Err(e) => {
                log::debug!("dns forwarder: waiting for datagrams: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if ready.is_error() {
            // Reading takes the error from the socket; then the readiness is cleared.
            let got = batch.recv(sock.as_raw_fd());
            let mut st = state.borrow_mut();
            match got {
                Ok(n) => (0..n).for_each(|i| each(&batch, i, &mut st)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => on_error(e, &mut st),
            }
            flush(&mut st, shared);
            let _ = sock.try_io(Interest::ERROR, || {
                Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
            });
        }
        loop {
            let got = sock.try_io(Interest::READABLE, || batch.recv(sock.as_raw_fd()));
            let mut st = state.borrow_mut();
            match got {
                Ok(n) => (0..n).for_each(|i| each(&batch, i, &mut st)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => on_error(e, &mut st),
            }
            flush(&mut st, shared);
        }
    }
}

async fn udp_listener(sock: Rc<UdpSocket>, state: Rc<RefCell<Udp>>, shared: Rc<Shared>) {
    let listener = Rc::clone(&sock);
    batches(
        &sock,
        4096,
        &state,
        &shared,
        |batch, i, st| {
            shared.count(Count::QueriesUdp);
            match (batch.datagram(i), batch.from(i)) {
                (Some(query), Some(from)) => {
                    if shared.admits(from.ip()) {
                        on_udp_query(query, from, &listener, st, &shared);
                    }
                }
                _ => shared.count(Count::MalformedQueries),
            }
        },
        |e, _| log::debug!("dns forwarder: UDP receive: {e}"),
    )
    .await;
}

/// Checks a query's header and question. `Err(Some(answer))`: answer this (FORMERR or an
/// answer of steer's own); `Err(None)`: drop it.
fn screen(query: &[u8], shared: &Shared) -> Result<Question, Option<Vec<u8>>> {
    let Ok(h) = wire::Header::parse(query) else {
        shared.count(Count::MalformedQueries);
        return Err(None);
    };
    if h.is_response() {
        shared.count(Count::MalformedQueries);
        return Err(None);
    }
    let q = match wire::question(query) {
        Ok(q) => q,
        Err(_) => {
            shared.count(Count::MalformedQueries);
            return Err(Some(wire::reply(query, rcode::FORMERR)));
        }
    };
    let matcher = shared.learner.matcher();
    match local_answer(query, &q, &matcher, shared.block_application_dns) {
        Some(a) => {
            shared.count(Count::LocalAnswers);
            Err(Some(a))
        }
        None => Ok(q),
    }
}

/// The answer steer gives itself to `query`, if it gives one.
pub fn local_answer(
    query: &[u8],
    q: &Question,
    matcher: &Matcher,
    block_application_dns: bool,
) -> Option<Vec<u8>> {
    if block_application_dns && q.qclass == CLASS_IN && q.name == APPLICATION_DNS_CANARY {
        return Some(wire::reply(query, rcode::NXDOMAIN));
    }
    if q.qtype == rtype::AAAA && matcher.find(&q.name).is_some_and(|m| m.set.filter_aaaa) {
        return Some(wire::reply(query, rcode::NOERROR));
    }
    None
}

fn on_udp_query(
    query: &[u8],
    from: SocketAddr,
    listener: &Rc<UdpSocket>,
    st: &mut Udp,
    shared: &Shared,
) {
    let question = match screen(query, shared) {
        Ok(q) => q,
        Err(Some(answer)) => {
            st.replies.push((Rc::clone(listener), answer, from));
            return;
        }
        Err(None) => return,
    };
    let Some(id) = st.fresh_id().filter(|_| st.admits(from.ip())) else {
        shared.count(Count::Servfail);
        let answer = wire::reply(query, rcode::SERVFAIL);
        st.replies.push((Rc::clone(listener), answer, from));
        return;
    };
    let mut ours = query.to_vec();
    wire::set_id(&mut ours, id);
    st.insert(
        id,
        Pending {
            client: from,
            client_id: wire::id(query).unwrap_or(0),
            limit: wire::udp_limit(query),
            listener: Rc::clone(listener),
            query: ours,
            question,
            upstream: 0,
            sent: Instant::now(),
            serial: 0,
        },
    );
    st.send(id, shared.timeout);
}

/// Moves query `id` to the next upstream, or answers SERVFAIL when none is left.
fn next_upstream(st: &mut Udp, id: u16, shared: &Shared) {
    let Some(p) = st.pending.get_mut(&id) else {
        return;
    };
    p.upstream += 1;
    if p.upstream >= st.upstreams.len() {
        let p = st.take(id).expect("present");
        let mut answer = wire::reply(&p.query, rcode::SERVFAIL);
        wire::set_id(&mut answer, p.client_id);
        shared.count(Count::Servfail);
        st.replies.push((p.listener, answer, p.client));
        return;
    }
    st.send(id, shared.timeout);
}

async fn upstream_reader(
    index: usize,
    sock: Rc<UdpSocket>,
    state: Rc<RefCell<Udp>>,
    shared: Rc<Shared>,
) {
    batches(
        &sock,
        65_535,
        &state,
        &shared,
        |batch, i, st| {
            if let Some(answer) = batch.datagram(i) {
                on_udp_answer(index, answer, st, &shared);
            }
        },
        |e, st| {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                // The upstream's port is closed: every query waiting for it moves on now.
                st.fail_upstream(index, &shared);
            } else {
                log::debug!(
                    "dns forwarder: receive from {}: {e}",
                    shared.upstream_addrs[index]
                );
            }
        },
    )
    .await;
}

/// What becomes of the query a malformed upstream reply came for (said in the log).
#[derive(Clone, Copy, Debug)]
enum MalformedFate {
    /// Its query gets SERVFAIL: over TCP (the connection carries that query alone), or an
    /// answer whose records cannot be read.
    Servfail,
    /// It carries no waiting query's ID.
    NoQuery,
    /// It carries a waiting query's ID but not its question: the query waits on.
    Ignored,
}

/// Whether `answer` answers `q`, asked in `query`: the upstream echoes the question, its bytes
/// compared as names compare (letter case aside) without reading them again.
fn same_question(answer: &[u8], query: &[u8], q: &Question) -> bool {
    let range = wire::HEADER_LEN..q.end;
    match (answer.get(range.clone()), query.get(range)) {
        (Some(a), Some(b)) => {
            wire::Header::parse(answer).is_ok_and(|h| h.qdcount >= 1) && a.eq_ignore_ascii_case(b)
        }
        _ => false,
    }
}

fn on_udp_answer(index: usize, answer: &[u8], st: &mut Udp, shared: &Shared) {
    let waiting =
        wire::id(answer).filter(|id| st.pending.get(id).is_some_and(|p| p.upstream == index));
    let Some(id) = waiting else {
        // No query's ID (or none at all): nothing to answer, but a reply that is no DNS
        // message says why its queries will time out.
        if let Some(why) = malformed(answer) {
            shared.upstream_malformed(index, answer.len(), &why, MalformedFate::NoQuery);
        }
        return;
    };
    let p = st.pending.get(&id).expect("present");
    if !same_question(answer, &p.query, &p.question) {
        // Not this query's answer: its question cannot be read, or is another's. The query
        // keeps waiting for the real answer (a datagram that only guessed the ID, from a
        // spoofed upstream address, must not fail it); one that cannot be read is counted and
        // said, and the timeout's line then names the malformed replies.
        if let Some(why) = malformed(answer) {
            shared.upstream_malformed(index, answer.len(), &why, MalformedFate::Ignored);
        }
        return;
    }
    let pending = st.take(id).expect("present");
    shared.upstream_answered(index);
    let stats = shared.learner.stats();
    stats.record(Latency::Upstream, pending.sent.elapsed());
    let mut out = relay(index, answer, &pending.query, shared);
    if out.len() > pending.limit {
        // Over UDP a client gets no more than it takes: the rest would be cut by its stack,
        // or make the router an amplifier. It asks again over TCP.
        out = wire::truncated(&out);
    }
    wire::set_id(&mut out, pending.client_id);
    st.replies.push((pending.listener, out, pending.client));
}

/// The answer to relay for `answer` to `query`, once what it teaches is in the kernel: the
/// answer itself, no records when it gives an AAAA question the IPv6 addresses of a set that
/// filters AAAA (what [`local_answer`] gives when the question names the set's domain; here a
/// CNAME chain led into it), without those IPv6 records when it answers another question
/// (ANY; [`hide_v6`]), or SERVFAIL when it cannot be read.
fn relay(index: usize, answer: &[u8], query: &[u8], shared: &Shared) -> Vec<u8> {
    let cut = wire::Header::parse(answer).is_ok_and(|h| h.truncated());
    if cut {
        // The client asks again over TCP; that answer is the one learned from. The records a
        // cut answer may hold are no client's to use, but IPv6 a set filters stays out of
        // them all the same (all of them, when they cannot be read).
        shared.count(Count::Answered);
        return match hide_v6(answer, &shared.learner.matcher()) {
            Ok(None) => answer.to_vec(),
            Ok(Some(a)) => a,
            Err(_) => wire::truncated(answer),
        };
    }
    let learned = super::learn_answer(&*shared.learner, answer)
        .and_then(|o| Ok((o, hide_v6(answer, &shared.learner.matcher())?)));
    match learned {
        Ok((o, _)) if o.filter_aaaa => {
            shared.count(Count::Answered);
            wire::reply(query, rcode::NOERROR)
        }
        Ok((_, hidden)) => {
            shared.count(Count::Answered);
            hidden.unwrap_or_else(|| answer.to_vec())
        }
        Err(e) => {
            shared.upstream_malformed(index, answer.len(), &e.to_string(), MalformedFate::Servfail);
            shared.count(Count::Servfail);
            wire::reply(query, rcode::SERVFAIL)
        }
    }
}

/// `answer` without the IPv6 records that sets filtering AAAA keep from clients, in every
/// section ([`super::answer::hides_v6`]): an ANY question gets the AAAA records of its name
/// along with the A records. `None` when it has none (it goes on byte for byte).
fn hide_v6(answer: &[u8], matcher: &Matcher) -> Result<Option<Vec<u8>>, WireError> {
    if !matcher.sets().iter().any(|s| s.filter_aaaa) {
        return Ok(None);
    }
    let parsed = wire::parse(answer)?;
    let chain = super::answer::chain(answer, &parsed).unwrap_or_default();
    let filtered = super::answer::filters_v6(&chain, matcher);
    wire::without(answer, |r| {
        super::answer::hides_v6(r, &chain, filtered, matcher)
    })
}

/// Moves queries whose upstream did not answer in time to the next one.
async fn deadlines(state: Rc<RefCell<Udp>>, shared: Rc<Shared>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut st = state.borrow_mut();
        while let Some(&(deadline, id, serial)) = st.order.front() {
            if deadline > now {
                break;
            }
            st.order.pop_front();
            if let Some(p) = st.pending.get(&id).filter(|p| p.serial == serial) {
                shared.upstream_failed(p.upstream, Count::UpstreamTimeouts, p.sent);
                next_upstream(&mut st, id, &shared);
            }
        }
        flush(&mut st, &shared);
    }
}

/// The TCP client connections being served, in all and per client address.
#[derive(Debug, Default)]
struct TcpClients {
    total: Cell<usize>,
    per_client: RefCell<HashMap<std::net::IpAddr, usize>>,
}

impl TcpClients {
    /// Takes a slot for a connection from `client`; false when the client holds its share.
    fn admit(&self, client: std::net::IpAddr) -> bool {
        let mut per_client = self.per_client.borrow_mut();
        let held = per_client.entry(client).or_default();
        if *held >= MAX_TCP_PER_CLIENT {
            return false;
        }
        *held += 1;
        self.total.set(self.total.get() + 1);
        true
    }

    fn leave(&self, client: std::net::IpAddr) {
        let mut per_client = self.per_client.borrow_mut();
        if let Some(held) = per_client.get_mut(&client) {
            *held -= 1;
            if *held == 0 {
                per_client.remove(&client);
            }
        }
        self.total.set(self.total.get() - 1);
    }
}

async fn tcp_listener(listener: TcpListener, connections: Rc<TcpClients>, shared: Rc<Shared>) {
    loop {
        if connections.total.get() >= MAX_TCP {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        match listener.accept().await {
            Ok((stream, from)) => {
                let client = from.ip();
                if !shared.admits(client) {
                    // Closed at once, unanswered.
                    continue;
                }
                if !connections.admit(client) {
                    // Closed at once: the client already holds its share of the slots.
                    shared.count(Count::TcpRefused);
                    log::debug!(
                        "dns forwarder: TCP from {client}: {MAX_TCP_PER_CLIENT} connections already, closed"
                    );
                    continue;
                }
                let (c, s) = (Rc::clone(&connections), Rc::clone(&shared));
                tokio::task::spawn_local(async move {
                    tcp_client(stream, &s).await;
                    c.leave(client);
                });
            }
            Err(e) => {
                log::debug!("dns forwarder: TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads one length-prefixed message within `within`; `None` at the end of the stream, on a
/// timeout or an error.
async fn read_message(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    tokio::time::timeout(within, stream.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tokio::time::timeout(TCP_IO, stream.read_exact(&mut msg))
        .await
        .ok()?
        .ok()?;
    Some(msg)
}

async fn write_message(stream: &mut TcpStream, msg: &[u8]) -> bool {
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len().min(65_535) as u16).to_be_bytes());
    out.extend_from_slice(&msg[..msg.len().min(65_535)]);
    tokio::time::timeout(TCP_IO, stream.write_all(&out))
        .await
        .is_ok_and(|r| r.is_ok())
}

async fn tcp_client(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    // One upstream connection per client connection, opened when needed: (upstream, stream).
    let mut upstream: Option<(usize, TcpStream)> = None;
    while let Some(query) = read_message(&mut client, TCP_IDLE).await {
        shared.count(Count::QueriesTcp);
        let question = match screen(&query, shared) {
            Ok(q) => q,
            Err(Some(answer)) => {
                if !write_message(&mut client, &answer).await {
                    return;
                }
                continue;
            }
            Err(None) => return,
        };
        let answer = tcp_upstream(&query, &question, &mut upstream, shared).await;
        if !write_message(&mut client, &answer).await {
            return;
        }
    }
}

/// Asks the upstreams in order over TCP; SERVFAIL when none answers.
async fn tcp_upstream(
    query: &[u8],
    question: &Question,
    conn: &mut Option<(usize, TcpStream)>,
    shared: &Shared,
) -> Vec<u8> {
    let id = wire::id(query).unwrap_or(0);
    let start = conn.as_ref().map_or(0, |(i, _)| *i);
    for index in start..shared.upstream_addrs.len() {
        let addr = shared.upstream_addrs[index];
        if conn.as_ref().is_none_or(|(i, _)| *i != index) {
            let tried = Instant::now();
            *conn = match tokio::time::timeout(shared.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    Some((index, s))
                }
                Ok(Err(_)) => {
                    shared.upstream_failed(index, Count::UpstreamRefused, tried);
                    None
                }
                Err(_) => {
                    shared.upstream_failed(index, Count::UpstreamTimeouts, tried);
                    None
                }
            };
        }
        let Some((_, stream)) = conn.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let answer = if write_message(stream, query).await {
            read_message(stream, shared.timeout).await
        } else {
            None
        };
        match answer {
            Some(a) if wire::id(&a) == Some(id) && same_question(&a, query, question) => {
                shared.upstream_answered(index);
                shared
                    .learner
                    .stats()
                    .record(Latency::Upstream, sent.elapsed());
                return relay(index, &a, query, shared);
            }
            // The connection carries this query alone: a message on it that is no DNS answer
            // is the upstream's reply to it.
            Some(a) if let Some(why) = malformed(&a) => {
                shared.upstream_malformed(index, a.len(), &why, MalformedFate::Servfail);
                *conn = None;
                shared.count(Count::Servfail);
                return wire::reply(query, rcode::SERVFAIL);
            }
            _ => {
                shared.upstream_failed(index, Count::UpstreamTimeouts, sent);
                *conn = None;
            }
        }
    }
    shared.count(Count::Servfail);
    wire::reply(query, rcode::SERVFAIL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::matcher::DomainSet;

    #[test]
    fn steer_answers_the_canary_and_filtered_aaaa_itself() {
        let m = Matcher::new(vec![DomainSet {
            rule: 1,
            name: "v4only".into(),
            domains: vec!["v4.example".into()],
            filter_aaaa: true,
        }]);
        let ask = |name: &str, t: u16, block: bool| {
            let q = wire::query(9, name, t);
            let question = wire::question(&q).unwrap();
            local_answer(&q, &question, &m, block).map(|a| wire::Header::parse(&a).unwrap())
        };
        let canary = ask("Use-Application-DNS.net.", rtype::A, true).unwrap();
        assert_eq!((canary.id, canary.rcode()), (9, rcode::NXDOMAIN));
        assert_eq!(ask("use-application-dns.net", rtype::A, false), None);
        let aaaa = ask("www.v4.example", rtype::AAAA, false).unwrap();
        assert_eq!((aaaa.rcode(), aaaa.ancount), (rcode::NOERROR, 0));
        assert_eq!(ask("www.v4.example", rtype::A, false), None);
        assert_eq!(ask("other.example", rtype::AAAA, false), None);
    }

    #[test]
    fn an_aaaa_answer_whose_chain_leads_into_a_filtering_set_is_filtered() {
        let learner = Arc::new(Failing {
            matcher: Arc::new(Matcher::new(vec![DomainSet {
                rule: 1,
                name: "listed".into(),
                domains: vec!["listed.test".into()],
                filter_aaaa: true,
            }])),
            stats: Default::default(),
        });
        let shared = Shared::new(learner, Duration::from_millis(100), true, Vec::new());
        let v6: std::net::Ipv6Addr = "2001:db8::5".parse().unwrap();
        let chain = |qtype, record: (u16, Vec<u8>)| {
            let q = wire::query(7, "alias2.other", qtype);
            let cname = wire::tests::encode_name("target.listed.test");
            let a = wire::tests::answer(
                &q,
                &[
                    ("alias2.other", rtype::CNAME, 60, cname),
                    ("target.listed.test", record.0, 60, record.1),
                ],
            );
            (q, a)
        };
        let (q, a) = chain(rtype::AAAA, (rtype::AAAA, v6.octets().to_vec()));
        let out = relay(0, &a, &q, &shared);
        assert_eq!(
            out,
            wire::reply(&q, rcode::NOERROR),
            "as for target.listed.test"
        );
        let h = wire::Header::parse(&out).unwrap();
        assert_eq!((h.id, h.rcode(), h.ancount), (7, rcode::NOERROR, 0));
        // The A answer of the same chain passes unchanged.
        let (q, a) = chain(rtype::A, (rtype::A, vec![198, 19, 0, 1]));
        assert_eq!(relay(0, &a, &q, &shared), a);
        // An HTTPS answer whose ipv6hint leads to the IPv6 address is answered empty too (it
        // went through unchanged); one with IPv4 hints alone passes.
        let mut rdata = vec![0, 1, 0, 0, 6, 0, 16]; // priority 1, target ".", ipv6hint
        rdata.extend_from_slice(&v6.octets());
        let (q, a) = chain(rtype::HTTPS, (rtype::HTTPS, rdata));
        assert_eq!(relay(0, &a, &q, &shared), wire::reply(&q, rcode::NOERROR));
        let v4_only = vec![0, 1, 0, 0, 4, 0, 4, 198, 19, 0, 1];
        let (q, a) = chain(rtype::HTTPS, (rtype::HTTPS, v4_only));
        assert_eq!(relay(0, &a, &q, &shared), a);
    }

    /// `dig ANY` for a name of a set that filters AAAA got its AAAA record past the filter:
    /// IPv6 records of the set's names (and of a chain into it) leave every section, the rest
    /// stays; answers without them pass byte for byte.
    #[test]
    fn an_any_answer_loses_the_ipv6_records_of_a_filtering_set() {
        let learner = Arc::new(Failing {
            matcher: Arc::new(Matcher::new(vec![
                DomainSet {
                    rule: 1,
                    name: "v4only".into(),
                    domains: vec!["vid.example".into()],
                    filter_aaaa: true,
                },
                DomainSet {
                    rule: 2,
                    name: "video".into(),
                    domains: vec!["dual.example".into()],
                    filter_aaaa: false,
                },
            ])),
            stats: Default::default(),
        });
        let shared = Shared::new(learner, Duration::from_millis(100), true, Vec::new());
        let v6 = |last: u8| {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[15] = last;
            a.to_vec()
        };
        let q = wire::query(5, "vid.example", rtype::ANY);
        let a = wire::tests::answer(
            &q,
            &[
                ("vid.example", rtype::A, 60, vec![198, 19, 0, 7]),
                ("vid.example", rtype::AAAA, 60, v6(7)),
                ("vid.example", 16, 60, b"\x03txt".to_vec()),
            ],
        );
        let out = relay(0, &a, &q, &shared);
        let m = wire::parse(&out).unwrap();
        let types: Vec<u16> = m.answers.iter().map(|r| r.rtype).collect();
        assert_eq!(types, [rtype::A, 16]);
        assert_eq!(m.header.ancount, 2);
        // A chain from another name into the set, AAAA of the set's name in the additional
        // section of another answer.
        let q = wire::query(6, "alias.other", rtype::ANY);
        let mut a = wire::tests::answer(
            &q,
            &[
                (
                    "alias.other",
                    rtype::CNAME,
                    60,
                    wire::tests::encode_name("www.vid.example"),
                ),
                ("www.vid.example", rtype::AAAA, 60, v6(8)),
            ],
        );
        a[10..12].copy_from_slice(&1u16.to_be_bytes());
        a.extend_from_slice(&wire::tests::encode_name("mx.vid.example"));
        a.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        a.extend_from_slice(&v6(9));
        let out = relay(0, &a, &q, &shared);
        let h = wire::Header::parse(&out).unwrap();
        assert_eq!((h.ancount, h.arcount), (1, 0), "only the CNAME is left");
        // Another set's AAAA, and an A question's answer, pass as they are.
        let q = wire::query(7, "dual.example", rtype::ANY);
        let a = wire::tests::answer(&q, &[("dual.example", rtype::AAAA, 60, v6(10))]);
        assert_eq!(relay(0, &a, &q, &shared), a);
        // A cut answer loses them too.
        let q = wire::query(8, "vid.example", rtype::ANY);
        let mut a = wire::tests::answer(&q, &[("vid.example", rtype::AAAA, 60, v6(7))]);
        a[2] |= 0x02;
        let out = relay(0, &a, &q, &shared);
        assert_eq!(wire::Header::parse(&out).unwrap().ancount, 0);
    }

    /// A dead upstream was not named for up to a minute when it had answered before: a
    /// refusal, and a timeout with no answer since the query went, are logged at once; then
    /// once a minute while they last, and at once again after answers.
    #[test]
    fn an_upstream_failure_is_logged_at_once_and_then_rate_limited() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut log = UpstreamLog::default();
        assert!(!log.answered(s(0)), "nothing was logged");
        assert!(
            log.failed(Count::UpstreamRefused, s(1), s(1)),
            "refused at once"
        );
        assert!(!log.failed(Count::UpstreamRefused, s(2), s(2)));
        assert!(!log.failed(Count::UpstreamTimeouts, s(30), s(32)));
        assert!(
            log.failed(Count::UpstreamRefused, s(61), s(61)),
            "a minute on"
        );
        assert!(log.answered(s(70)), "it answers again");
        assert!(
            log.failed(Count::UpstreamRefused, s(75), s(75)),
            "a new outage"
        );
        // Timeouts: one slow name (answers since it was sent) is not logged.
        let mut log = UpstreamLog::default();
        log.answered(s(0));
        assert!(!log.failed(Count::UpstreamTimeouts, s(0), s(2)));
        assert!(log.failed(Count::UpstreamTimeouts, s(1), s(3)));
        assert!(!log.failed(Count::UpstreamTimeouts, s(2), s(4)));
    }

    #[test]
    fn queries_from_sources_that_are_no_clients_are_dropped_and_counted() {
        struct Lan(Failing, Arc<Clients>);
        impl Learn for Lan {
            fn matcher(&self) -> Arc<Matcher> {
                self.0.matcher()
            }
            fn clients(&self) -> Arc<Clients> {
                Arc::clone(&self.1)
            }
            fn learn(&self, what: &crate::dns::answer::Learnable) -> crate::dns::Outcome {
                self.0.learn(what)
            }
            fn stats(&self) -> &crate::dns::stats::Stats {
                self.0.stats()
            }
        }
        let p = |s: &str| crate::prefix::parse_prefix(s, false).unwrap();
        let clients = Clients::new(vec![p("192.168.60.0/24"), p("fd10::/64"), p("100.64.1.2")]);
        let lan = Arc::new(Lan(
            Failing {
                matcher: Arc::default(),
                stats: Default::default(),
            },
            Arc::new(clients),
        ));
        let shared = Shared::new(lan.clone(), Duration::from_millis(100), true, Vec::new());
        for ok in ["192.168.60.7", "fd10::2", "100.64.1.2", "127.0.0.1", "::1"] {
            assert!(shared.admits(ok.parse().unwrap()), "{ok}");
        }
        for no in ["100.64.1.1", "192.168.61.1", "2001:db8::1", "fe80::1"] {
            assert!(!shared.admits(no.parse().unwrap()), "{no}");
        }
        assert_eq!(lan.stats().get(Count::DroppedClients), 4);
    }

    /// One client address flooding queries holds at most its share of the pending slots; the
    /// others keep theirs (one host's flood to a slow upstream gave every client SERVFAIL).
    #[test]
    fn one_client_holds_at_most_its_share_of_pending_queries() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = Rc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let mut st = Udp {
                upstreams: Vec::new(),
                outbox: Vec::new(),
                replies: Vec::new(),
                pending: HashMap::new(),
                per_client: HashMap::new(),
                order: VecDeque::new(),
                rng: seed(),
                serial: 0,
            };
            let pending = |client: &str| Pending {
                client: client.parse().unwrap(),
                client_id: 1,
                limit: wire::UDP_MIN,
                listener: Rc::clone(&listener),
                query: Vec::new(),
                question: wire::question(&wire::query(1, "a.test", rtype::A)).unwrap(),
                upstream: 0,
                sent: Instant::now(),
                serial: 0,
            };
            let flooder: IpAddr = "10.0.0.2".parse().unwrap();
            for _ in 0..MAX_PENDING_PER_CLIENT {
                assert!(st.admits(flooder));
                let id = st.fresh_id().unwrap();
                st.insert(id, pending("10.0.0.2:5000"));
            }
            assert!(!st.admits(flooder));
            assert!(st.admits("10.0.0.3".parse().unwrap()));
            let id = *st.pending.keys().next().unwrap();
            assert!(st.take(id).is_some());
            assert!(st.admits(flooder), "a slot freed is the flooder's again");
        });
    }

    /// A learner whose every kernel write fails.
    struct Failing {
        matcher: Arc<Matcher>,
        stats: crate::dns::stats::Stats,
    }

    impl Learn for Failing {
        fn matcher(&self) -> Arc<Matcher> {
            Arc::clone(&self.matcher)
        }
        fn clients(&self) -> Arc<Clients> {
            Arc::default()
        }
        fn learn(&self, what: &crate::dns::answer::Learnable) -> crate::dns::Outcome {
            self.stats.inc(Count::InsertFailed);
            crate::dns::Outcome {
                failed: what.addrs.len(),
                ..Default::default()
            }
        }
        fn stats(&self) -> &crate::dns::stats::Stats {
            &self.stats
        }
    }

    #[test]
    fn a_failed_insert_still_answers_unchanged_and_is_counted() {
        let failing = Arc::new(Failing {
            matcher: Arc::new(Matcher::new(vec![DomainSet {
                rule: 1,
                name: "video".into(),
                domains: vec!["video.example".into()],
                filter_aaaa: false,
            }])),
            stats: Default::default(),
        });
        let shared = Shared::new(
            failing.clone(),
            Duration::from_millis(100),
            true,
            Vec::new(),
        );
        let q = wire::query(7, "a.video.example", rtype::A);
        let answer = wire::tests::answer(
            &q,
            &[("a.video.example", rtype::A, 60, vec![198, 19, 0, 1])],
        );
        assert_eq!(
            relay(0, &answer, &q, &shared),
            answer,
            "relayed byte for byte"
        );
        assert_eq!(failing.stats.get(Count::InsertFailed), 1);
        assert_eq!(failing.stats.get(Count::Servfail), 0);
        assert_eq!(failing.stats.get(Count::Answered), 1);
    }
    #[test]
    fn a_reply_that_is_no_dns_message_is_malformed_and_one_for_another_question_is_not() {
        let q = wire::query(5, "a.example", rtype::A);
        assert_eq!(
            malformed(&q[..2]).as_deref(),
            Some("shorter than a DNS header")
        );
        assert_eq!(malformed(&q).as_deref(), Some("not a response"));
        let mut garbage = vec![0xff; q.len()];
        garbage[..2].copy_from_slice(&q[..2]);
        assert!(
            malformed(&garbage).is_some_and(|w| w.starts_with("its question cannot be read")),
            "{garbage:?}"
        );
        let other = wire::reply(&wire::query(5, "b.example", rtype::A), rcode::NOERROR);
        assert_eq!(malformed(&other), None, "readable: ignored, not malformed");
        assert_eq!(malformed(&wire::reply(&q, rcode::SERVFAIL)), None);
        let mut log = UpstreamLog::default();
        let now = Instant::now();
        assert!(log.malformed(now), "the first is logged");
        assert!(
            !log.malformed(now + Duration::from_secs(1)),
            "then once a minute"
        );
        assert_eq!(log.malformed, 2);
        log.answered(now);
        assert_eq!(log.malformed, 0, "a good answer starts over");
    }
}

//! Domain sets in the lab: dnsmasq (Debian `dnsmasq-base`) as the resolver behind steer's
//! forwarder, a stub client in the client namespace that connects the moment its answer
//! arrives, and a receiver in the internet namespace that says which ISP carried each first
//! packet.
//!
//! The internet namespace answers for every address of 198.19.0.0/16 and 2001:db8:53::/48
//! (local routes on `lo`): names resolve there, and any of them can be connected to.

use std::{
    collections::HashMap,
    fs::File,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use steer::dns::wire;

use crate::{
    lab::{Lab, Wan},
    netns::Netns,
    scenario::{Options, Scenario},
};

/// Where dnsmasq listens in the router namespace (steer's upstream).
pub const UPSTREAM: &str = "127.0.0.1:5353";
/// Where steer's forwarder listens (the router's LAN address).
pub const FORWARDER: &str = "10.10.0.1:53";

/// The address of test host `i` (198.19.0.0/16).
pub fn host_v4(i: usize) -> IpAddr {
    IpAddr::from([198, 19, (i / 256) as u8, (i % 256) as u8])
}

/// Writes a hosts file `name` in `dir` with `lines` ("address name"), readable by dnsmasq
/// (which reads it after dropping privileges), and returns dnsmasq's `--addn-hosts` argument.
pub fn hosts_file(dir: &Path, name: &str, lines: impl Iterator<Item = String>) -> String {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    let file = dir.join(name);
    std::fs::write(&file, text).expect("hosts file");
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status();
    format!("--addn-hosts={}", file.display())
}

/// A dnsmasq process; killed on drop.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq in `ns` on `listen` with the records in `args` (`--host-record=...`,
    /// `--cname=...`, `--addn-hosts=...`, `--server=...`) and waits (bounded) until it answers.
    pub fn start(
        ns: &Netns,
        dir: &std::path::Path,
        listen: SocketAddr,
        args: &[String],
    ) -> Dnsmasq {
        let log = dir.join(format!("dnsmasq-{}.log", crate::unique_tag()));
        let out = File::create(&log).expect("dnsmasq log");
        let child = ns
            .command("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--pid-file=",
                "--log-facility=-",
                "--log-queries",
                "--local-ttl=60",
                "--cache-size=10000",
                "--dns-forward-max=1000",
            ])
            .arg(format!("--listen-address={}", listen.ip()))
            .arg(format!("--port={}", listen.port()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("dnsmasq (Debian dnsmasq-base) is installed: cargo xtask setup installs it");
        let mut d = Dnsmasq {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if ask(ns, listen, "probe.invalid", wire::rtype::A).is_some() {
                return d;
            }
            let exited = d
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            assert!(
                !exited && Instant::now() < deadline,
                "dnsmasq did not come up on {listen}:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One query from `ns` to `server` over UDP; the answer, or `None` after 2 s.
pub fn ask(ns: &Netns, server: SocketAddr, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let query = wire::query(0x4242, name, qtype);
    ns.enter(|| exchange(server, &query, Duration::from_secs(2)))
}

/// Sends `query` over UDP from the calling thread's namespace; the answer with its ID, or
/// `None` after `within`.
pub fn exchange(server: SocketAddr, query: &[u8], within: Duration) -> Option<Vec<u8>> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let sock = UdpSocket::bind(any).ok()?;
    sock.connect(server).ok()?;
    sock.set_read_timeout(Some(within)).ok()?;
    sock.send(query).ok()?;
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let n = sock.recv(&mut buf).ok()?;
        if wire::id(&buf[..n]) == wire::id(query) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// The addresses of the answer records of `answer`.
pub fn addresses(answer: &[u8]) -> Vec<IpAddr> {
    wire::parse(answer)
        .map(|m| m.answers.iter().filter_map(|r| r.address()).collect())
        .unwrap_or_default()
}

/// `dig` in `ns`; its output (`+short` and friends are the caller's).
pub fn dig(ns: &Netns, args: &str) -> String {
    let out = ns.try_run(&format!("dig +time=2 +tries=1 {args}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lab with steer (a `[dns]` forwarder on the LAN address, dnsmasq behind it on
/// [`UPSTREAM`]) and the internet answering for the test hosts.
pub struct DnsScenario {
    pub dnsmasq: Dnsmasq,
    pub s: Scenario,
}

impl std::fmt::Debug for DnsScenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsScenario").finish_non_exhaustive()
    }
}

/// The sets of the DNS tests: `video` (first, to WAN 2) with video.example and fresh.example,
/// `v4only` (to WAN 2, AAAA filtered), `second` (later, to WAN 1) with other.example.
pub const SETS: &str = r#"
[[set]]
name = "video"
policy = "wan2-first"
domains = ["video.example", "Fresh.Example."]

[[set]]
name = "v4only"
policy = "wan2-first"
domains = ["v4only.example"]
filter_aaaa = true

[[set]]
name = "second"
policy = "wan1-first"
domains = ["other.example"]
"#;

impl DnsScenario {
    /// Starts steer with `SETS` and a `[dns]` section of the forwarder plus `dns_keys`, then
    /// dnsmasq in the router namespace with the records `records` gives (handed the test's
    /// directory, for host files).
    pub fn start(
        tag: &str,
        dns_keys: &str,
        records: impl FnOnce(&std::path::Path) -> Vec<String>,
    ) -> DnsScenario {
        let dns = format!(
            "{SETS}\n[dns]\nlisten = [\"{FORWARDER}\", \"[fd10::1]:53\"]\nupstreams = [\"{UPSTREAM}\"]\n{dns_keys}\n"
        );
        Self::start_with(tag, &dns, |lab, dir| {
            Dnsmasq::start(
                &lab.router,
                dir,
                UPSTREAM.parse().expect("addr"),
                &records(dir),
            )
        })
    }

    /// The same with any configuration tail (sets and `[dns]`) and any dnsmasq.
    pub fn start_with(
        tag: &str,
        tail: &str,
        dnsmasq: impl FnOnce(&Lab, &std::path::Path) -> Dnsmasq,
    ) -> DnsScenario {
        let s = Scenario::start(
            tag,
            &Options {
                extra_sets: tail.to_owned(),
                ..Options::default()
            },
        );
        s.lab.internet.run(
            "ip route add local 198.19.0.0/16 dev lo && ip -6 route add local 2001:db8:53::/48 dev lo",
        );
        let dnsmasq = dnsmasq(&s.lab, &s.work.dir);
        DnsScenario { dnsmasq, s }
    }

    /// The learned hosts, as `steer dump dns --json` lists them, by address.
    pub fn learned(&self) -> HashMap<String, serde_json::Value> {
        let out = self.s.steer(&["dump", "dns", "--json"]);
        let doc: serde_json::Value = serde_json::from_str(&out).expect("dump --json");
        doc["dns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["address"].as_str().unwrap_or("").to_owned(), e.clone()))
            .collect()
    }

    /// The DNS counters of `steer status`.
    pub fn counter(&self, name: &str) -> u64 {
        self.s.status()["dns"]["counters"][name]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn refused(&self, reason: &str) -> u64 {
        self.s.status()["dns"]["refused"][reason]
            .as_u64()
            .unwrap_or(0)
    }
}

/// A UDP receiver in the internet namespace on every test host, port `port`: records, per
/// payload tag, which WAN carried the first datagram (by the router's NAT address).
#[derive(Debug)]
pub struct FirstPackets {
    seen: Arc<Mutex<HashMap<u64, Option<Wan>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FirstPackets {
    pub fn start(lab: &Lab, port: u16) -> FirstPackets {
        let seen: Arc<Mutex<HashMap<u64, Option<Wan>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            lab.internet.spawn(move || {
                let sock = UdpSocket::bind(("0.0.0.0", port)).expect("bind the receiver");
                sock.set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("timeout");
                let _ = tx.send(());
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf)
                        && n == 8
                    {
                        let tag = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                        seen.lock()
                            .expect("lock")
                            .entry(tag)
                            .or_insert(Lab::wan_of_nat_addr(from.ip()));
                    }
                }
            })
        };
        rx.recv_timeout(Duration::from_secs(3))
            .expect("receiver ready");
        FirstPackets {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `n` tags arrived (bounded), then returns the WAN of each tag's first packet.
    pub fn wait(&self, n: usize, within: Duration) -> HashMap<u64, Option<Wan>> {
        let deadline = Instant::now() + within;
        while self.seen.lock().expect("lock").len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for FirstPackets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client in the calling thread's namespace: asks `server` for `name` (type A) and, the
/// moment the answer arrives, sends one datagram tagged `tag` to each address in it, port
/// `port`. Returns the addresses (empty when no answer came).
pub fn resolve_and_connect(server: SocketAddr, name: &str, tag: u64, port: u16) -> Vec<IpAddr> {
    let query = wire::query((tag as u16) | 1, name, wire::rtype::A);
    let Some(answer) = exchange(server, &query, Duration::from_secs(2)) else {
        return Vec::new();
    };
    let addrs = addresses(&answer);
    if let Ok(sock) = UdpSocket::bind("0.0.0.0:0") {
        for a in &addrs {
            let _ = sock.send_to(&tag.to_be_bytes(), (*a, port));
        }
    }
    addrs
}

//! Traffic and state through the HA lab: a UDP stream from the client to the server whose every
//! datagram is timestamped on both ends, and a sampler of both routers' wan1 link state.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{HaLab, SERVER, Side};

/// A stream of one datagram per `period` from the client to the server.
#[derive(Debug)]
pub struct Flow {
    sent: Arc<Mutex<Vec<Instant>>>,
    arrived: Arc<Mutex<Vec<(u64, Instant)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Flow {
    pub fn start(lab: &HaLab, port: u16, period: Duration) -> Flow {
        let server = SocketAddr::from((SERVER, port));
        let rx = lab
            .isp
            .enter(move || UdpSocket::bind(server).expect("bind the server"));
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let tx = lab
            .client
            .enter(|| UdpSocket::bind("0.0.0.0:0").expect("bind the client"));
        let nonce: u64 = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
        let (sent, arrived) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (arrived, stop) = (arrived.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = rx.recv(&mut buf)
                        && n == 16
                        && buf[..8] == nonce.to_be_bytes()
                    {
                        let seq = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes"));
                        arrived.lock().expect("arrived").push((seq, Instant::now()));
                    }
                }
            })
        };
        let sender = {
            let (sent, stop) = (sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut seq: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut p = [0u8; 16];
                    p[..8].copy_from_slice(&nonce.to_be_bytes());
                    p[8..].copy_from_slice(&seq.to_be_bytes());
                    let at = Instant::now();
                    let _ = tx.send_to(&p, server);
                    sent.lock().expect("sent").push(at);
                    seq += 1;
                    let next = start + period * seq as u32;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        Flow {
            sent,
            arrived,
            stop,
            threads: vec![receiver, sender],
        }
    }

    /// When the first datagram sent after `t` arrived.
    pub fn first_sent_after(&self, t: Instant) -> Option<Instant> {
        let sent = self.sent.lock().expect("sent").clone();
        let first_seq = sent.iter().position(|s| *s > t)? as u64;
        self.arrived
            .lock()
            .expect("arrived")
            .iter()
            .filter(|(seq, _)| *seq >= first_seq)
            .map(|(_, at)| *at)
            .min()
    }

    /// Waits until a datagram sent after `t` arrives; returns when it did.
    pub fn wait_sent_after(&self, t: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.first_sent_after(t) {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn arrived(&self) -> usize {
        self.arrived.lock().expect("arrived").len()
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// When a sample was taken, and whether A's and B's wan1 were up.
pub type Sample = (Instant, [bool; 2]);

/// Samples whether each router's wan1 is up, every `period`, until dropped.
#[derive(Debug)]
pub struct WanSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// IFF_UP of `name`, through a socket of the namespace it was opened in.
fn is_up(sock: &UdpSocket, name: &str) -> bool {
    // SAFETY: a zeroed ifreq is valid; the name fits (IFNAMSIZ - 1).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, c) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = c as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS set the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    flags & libc::IFF_UP as i16 != 0
}

impl WanSampler {
    pub fn start(lab: &HaLab, period: Duration) -> WanSampler {
        let socks = [Side::A, Side::B].map(|s| {
            lab.router(s)
                .enter(|| UdpSocket::bind("127.0.0.1:0").expect("a socket in the router"))
        });
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let up = [is_up(&socks[0], "wan1"), is_up(&socks[1], "wan1")];
                    samples.lock().expect("samples").push((Instant::now(), up));
                    std::thread::sleep(period);
                }
            })
        };
        WanSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Each run of consecutive samples with both WANs up: (first sample, its length from the
    /// sample before it to the sample after it, an upper bound of the real overlap).
    pub fn overlaps(&self) -> Vec<(Instant, Duration)> {
        let s = self.samples();
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i].1 == [true, true] {
                let start = i;
                while i < s.len() && s[i].1 == [true, true] {
                    i += 1;
                }
                let before = s[start.saturating_sub(1)].0;
                let after = s.get(i).map_or(s[i - 1].0, |x| x.0);
                out.push((s[start].0, after - before));
            }
            i += 1;
        }
        out
    }
}

impl Drop for WanSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

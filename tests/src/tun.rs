//! A point-to-point link of two tun devices in two namespaces, relayed by a thread of the test:
//! an L3 device (no Ethernet header, like ppp or wireguard) with real traffic over it, on a
//! kernel without ipip, gre or wireguard modules. The devices live as long as the value
//! (closing a tun descriptor removes its device). The relay passes every packet through a
//! [`Line`], whose faults (delay, loss, bursts, a cut) a test changes while traffic runs.

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{lab::line::Line, netns::Netns};

/// `_IOW('T', 202, int)` from linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// The longest the relay sleeps: how soon it sees `stop`.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Two tun devices and the thread that carries packets between them.
#[derive(Debug)]
pub struct TunLink {
    line: Line,
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<()>>,
}

impl TunLink {
    /// Creates tun `a_if` in `a` and `b_if` in `b` (down, no addresses) and relays between them
    /// over a perfect line.
    pub fn new(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> TunLink {
        TunLink::with_seed(a, a_if, b, b_if, 1)
    }

    /// As [`TunLink::new`], the line's loss drawn from `seed`.
    pub fn with_seed(a: &Netns, a_if: &str, b: &Netns, b_if: &str, seed: u64) -> TunLink {
        let fa = a.enter(|| open_tun(a_if));
        let fb = b.enter(|| open_tun(b_if));
        let stop = Arc::new(AtomicBool::new(false));
        let line = Line::new(seed);
        let relay = {
            let (flag, line) = (stop.clone(), line.clone());
            std::thread::spawn(move || relay(fa, fb, &line, &flag))
        };
        TunLink {
            line,
            stop,
            relay: Some(relay),
        }
    }

    /// The line between the devices: direction a → b is from `a_if` to `b_if`.
    pub fn line(&self) -> &Line {
        &self.line
    }
}

impl Drop for TunLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.relay.take() {
            let _ = t.join();
        }
    }
}

fn open_tun(name: &str) -> OwnedFd {
    let file = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("open /dev/net/tun");
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads the ifreq we pass and writes the device name back into it.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    // Non-blocking, so the relay's poll timeout is its only wait.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    OwnedFd::from(file)
}

/// Carries packets both ways through `line` until `stop`: reads what arrived, then writes
/// what is due, sleeping in poll until the next packet is due or one arrives.
fn relay(a: OwnedFd, b: OwnedFd, line: &Line, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    let ends = [(&a, &b), (&b, &a)];
    while !stop.load(Ordering::Relaxed) {
        let wait = line
            .core()
            .next_due()
            .map_or(IDLE_WAIT, |at| at.saturating_duration_since(Instant::now()))
            .min(IDLE_WAIT);
        let mut fds = [a.as_raw_fd(), b.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // Round up: waking before a packet is due would spin until it is.
        let timeout = wait.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of two pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        for (dir, (from, _)) in ends.iter().enumerate() {
            loop {
                // SAFETY: reading into our own buffer from a descriptor we own (non-blocking).
                let got =
                    unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                let Ok(len) = usize::try_from(got) else { break };
                if len == 0 {
                    break;
                }
                line.core().offer(dir, buf[..len].to_vec(), Instant::now());
            }
        }
        for (dir, (_, to)) in ends.iter().enumerate() {
            let now = Instant::now();
            while let Some(packet) = line.core().pop_due(dir, now) {
                // SAFETY: writing a whole packet we own; a full queue drops the packet, as a
                // line would.
                unsafe { libc::write(to.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
            }
        }
    }
    // Closing the descriptors removes the (non-persistent) devices.
    drop((a, b));
}

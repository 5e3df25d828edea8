//! A point-to-point link of two tun devices in two namespaces, relayed by a thread of the test:
//! an L3 device (no Ethernet header, like ppp or wireguard) with real traffic over it, on a
//! kernel without ipip, gre or wireguard modules. The devices live as long as the value
//! (closing a tun descriptor removes its device).

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use crate::netns::Netns;

/// `_IOW('T', 202, int)` from linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Two tun devices and the thread that carries packets between them.
#[derive(Debug)]
pub struct TunLink {
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<()>>,
}

impl TunLink {
    /// Creates tun `a_if` in `a` and `b_if` in `b` (down, no addresses) and relays between them.
    pub fn new(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> TunLink {
        let fa = a.enter(|| open_tun(a_if));
        let fb = b.enter(|| open_tun(b_if));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let relay = std::thread::spawn(move || relay(fa, fb, &flag));
        TunLink {
            stop,
            relay: Some(relay),
        }
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

/// Copies packets both ways until `stop`; polls with a timeout so the loop ends promptly.
fn relay(a: OwnedFd, b: OwnedFd, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [a.as_raw_fd(), b.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is a valid array of two pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 50) };
        if n <= 0 {
            continue;
        }
        for (from, to) in [(&a, &b), (&b, &a)] {
            // SAFETY: reading into our own buffer from a descriptor we own.
            let got = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if got > 0 {
                // SAFETY: writing `got` bytes of our buffer; a full queue drops the packet,
                // as a line would.
                unsafe { libc::write(to.as_raw_fd(), buf.as_ptr().cast(), got as usize) };
            }
        }
    }
    // Closing the descriptors removes the (non-persistent) devices.
    drop((a, b));
}

//! The service manager's readiness protocol (`sd_notify(3)`): one datagram of `KEY=VALUE` lines
//! to the socket `$NOTIFY_SOCKET` names. A path, or an abstract address written with a leading
//! `@`. No library: the protocol is one `sendto`.
//!
//! Without `$NOTIFY_SOCKET` (a terminal, procd, a test) every call does nothing. A failed send
//! is logged once and otherwise ignored: steering must never stop because the service manager
//! went away.
//!
//! `$NOTIFY_SOCKET` stays in the environment: the programs steer runs (`nft`) do not speak the
//! protocol, and systemd only takes messages from the main process (`NotifyAccess=main`).

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::atomic::{AtomicBool, Ordering},
};

/// Where readiness messages go.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// A send failed (logged once).
    failed: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is not a socket path or an @abstract name")]
    BadAddress(String),
    #[error("cannot open a datagram socket for NOTIFY_SOCKET: {0}")]
    Socket(std::io::Error),
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; `Ok(None)` when it is not set.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Notifier::to(&v.to_string_lossy()).map(Some),
        }
    }

    /// A notifier for `address` (`/path` or `@abstract`).
    pub fn to(address: &str) -> Result<Notifier, NotifyError> {
        let addr = parse_address(address)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        Ok(Notifier {
            socket,
            addr,
            failed: AtomicBool::new(false),
        })
    }

    /// Sends `lines` (`READY=1`, `STATUS=...`) as one message.
    pub fn send(&self, lines: &[&str]) {
        let message = lines.join("\n");
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr)
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            log::warn!("cannot tell the service manager `{message}`: {e}");
        }
    }
}

fn parse_address(address: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::BadAddress(address.to_owned());
    if let Some(name) = address.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad());
    }
    if !address.starts_with('/') {
        return Err(bad());
    }
    SocketAddr::from_pathname(address).map_err(|_| bad())
}

/// `MONOTONIC_USEC=` of now, which `RELOADING=1` carries so the service manager can tell this
/// reload from an earlier one.
pub fn monotonic_usec() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    format!("MONOTONIC_USEC={usec}")
}

/// Sends through an optional notifier (no service manager: nothing to do).
pub fn send(notifier: Option<&Notifier>, lines: &[&str]) {
    if let Some(n) = notifier {
        n.send(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_and_an_abstract_name_both_receive() {
        let dir = std::env::temp_dir().join(format!("steer-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        Notifier::to(path.to_str().unwrap())
            .unwrap()
            .send(&["READY=1", "STATUS=up"]);
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
        let _ = std::fs::remove_dir_all(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("steer-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        Notifier::to(&format!("@{name}"))
            .unwrap()
            .send(&["STOPPING=1"]);
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_relative_path_is_refused() {
        assert!(matches!(
            Notifier::to("run/notify"),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(Notifier::to("").is_err());
    }

    #[test]
    fn monotonic_usec_grows() {
        let parse = |s: String| {
            s.strip_prefix("MONOTONIC_USEC=")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let a = parse(monotonic_usec());
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(parse(monotonic_usec()) > a);
    }
}

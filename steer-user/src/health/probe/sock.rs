//! Probe sockets bound to a WAN, and why a probe failed.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hasher},
    io,
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use socket2::{Domain, Protocol, Socket, Type};

use super::ProbeSpec;

/// What a failed probe exchanged with the network, as the probe traffic counters count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchanged {
    /// Nothing left the router (no socket, no device, no route, a send refused locally).
    Nothing,
    /// The request left; what came back (a refusal, an ICMP error) is not counted.
    Request,
    /// A whole exchange, whose answer was wrong (an HTTP status, not HTTP).
    All,
}

/// Why a probe failed before its timeout. Its text becomes [`super::ProbeOutcome::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("socket: {0}")]
    Socket(OsError),
    #[error("bind to {interface}: {err}")]
    Bind { interface: String, err: OsError },
    #[error("mark {mark:#x}: {err}")]
    Mark { mark: u32, err: OsError },
    #[error("{what} {addr}: {err}")]
    Io {
        what: &'static str,
        addr: String,
        err: OsError,
    },
    #[error("connection refused")]
    Refused,
    /// A tcp probe refused, which `tcp_refused = "fail"` (the default) counts as failed.
    #[error("connection refused (tcp_refused = \"fail\")")]
    RefusedCountsAsFailed,
    #[error("ICMP destination unreachable (code {code}) from {from}")]
    Unreachable { code: u8, from: IpAddr },
    #[error("HTTP status {code} (wanted {wanted})")]
    HttpStatus {
        code: u16,
        wanted: crate::config::StatusCodes,
    },
    #[error("not an HTTP response: {0:?}")]
    NotHttp(String),
    #[error("connection closed before an HTTP status line")]
    HttpClosed,
    #[error("invalid DNS query name {0:?}")]
    QueryName(String),
}

/// An OS error shown as its text alone ("No such device", without "(os error 19)").
#[derive(Debug)]
pub struct OsError(pub io::Error);

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        match self.0.raw_os_error() {
            Some(code) => {
                let suffix = format!(" (os error {code})");
                f.write_str(text.strip_suffix(&suffix).unwrap_or(&text))
            }
            None => f.write_str(&text),
        }
    }
}

impl ProbeError {
    /// What went over the wire before this failure, for the probe traffic counters.
    pub fn exchanged(&self) -> Exchanged {
        match self {
            ProbeError::Socket(_)
            | ProbeError::Bind { .. }
            | ProbeError::Mark { .. }
            | ProbeError::QueryName(_) => Exchanged::Nothing,
            ProbeError::Io { what, err, .. } => {
                let local = matches!(
                    err.0.raw_os_error(),
                    Some(
                        libc::ENETUNREACH
                            | libc::ENODEV
                            | libc::EADDRNOTAVAIL
                            | libc::EPERM
                            | libc::ENOBUFS
                    )
                );
                if *what == "send to" || local {
                    Exchanged::Nothing
                } else {
                    Exchanged::Request
                }
            }
            ProbeError::Refused
            | ProbeError::RefusedCountsAsFailed
            | ProbeError::Unreachable { .. } => Exchanged::Request,
            ProbeError::HttpStatus { .. } | ProbeError::NotHttp(_) | ProbeError::HttpClosed => {
                Exchanged::All
            }
        }
    }

    /// An I/O error of `what` ("send to", "connect to", ...) towards `addr`.
    pub(super) fn io(what: &'static str, addr: impl fmt::Display, err: io::Error) -> ProbeError {
        if err.kind() == io::ErrorKind::ConnectionRefused {
            return ProbeError::Refused;
        }
        ProbeError::Io {
            what,
            addr: addr.to_string(),
            err: OsError(err),
        }
    }
}

/// A non-blocking socket for `addr`'s family, bound to the spec's interface and marked with its
/// mark, so that both policy routing and the device binding send it out of that WAN.
pub(super) fn wan_socket(
    spec: &ProbeSpec,
    addr: IpAddr,
    ty: Type,
    protocol: Protocol,
) -> Result<Socket, ProbeError> {
    let domain = match addr {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    let socket =
        Socket::new(domain, ty, Some(protocol)).map_err(|e| ProbeError::Socket(OsError(e)))?;
    socket
        .bind_device(Some(spec.interface.as_bytes()))
        .map_err(|e| ProbeError::Bind {
            interface: spec.interface.clone(),
            err: OsError(e),
        })?;
    socket.set_mark(spec.mark).map_err(|e| ProbeError::Mark {
        mark: spec.mark,
        err: OsError(e),
    })?;
    socket
        .set_nonblocking(true)
        .map_err(|e| ProbeError::Socket(OsError(e)))?;
    Ok(socket)
}

/// A random 64-bit number (std's per-process random hash keys, mixed with a counter).
pub(super) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

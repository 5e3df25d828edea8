//! Control socket: the daemon side (server) and the CLI side (client).
//!
//! The daemon (`steer run`) serves a Unix stream socket, by default [`DEFAULT_SOCKET`]; the CLI
//! (`steer status`, `steer reload`, `steer stop`, `steer wan NAME up|down|auto`) connects to it.
//! One request per connection: the client writes one JSON object and a newline, the server
//! answers one JSON object and a newline and closes (see [`proto`]).
//!
//! The server is the router's control plane, so it is built to survive hostile local users:
//! the socket is created with a restrictive umask and mode, every peer's uid is checked with
//! `SO_PEERCRED`, requests are size- and time-limited (and refused when they name a key
//! twice), each connection runs on its own task and the number of connections is capped.
//! Answers that grow with the data are encoded off the event loop, within a budget
//! ([`answer`]).

pub mod answer;
pub mod client;
pub mod metrics;
pub mod proto;
pub mod server;

use std::{io, path::PathBuf, time::Duration};

pub use answer::Answer;
pub use client::call;
pub use proto::{Request, Response, WanMode};
pub use server::{Call, PeerCred, Replier, Server, ServerOptions, serve};

/// Where `steer run` serves and the CLI connects unless told otherwise (`[control] socket`).
pub use crate::config::DEFAULT_SOCKET;

/// Everything that can go wrong creating the control socket or talking to it. Every message
/// names the socket (or its directory) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The client found no socket file.
    #[error("steer is not running (no socket at {}); start it with `steer run -c FILE`", path.display())]
    NotRunning { path: PathBuf },

    /// The socket file exists but nobody listens on it (a daemon that died).
    #[error(
        "steer is not running (nobody is listening on {}, a stale socket); start it with `steer run -c FILE`",
        path.display()
    )]
    NotListening { path: PathBuf },

    /// The client may not connect (the socket is mode 0600, owned by root).
    #[error("permission denied on {}: run as root", path.display())]
    PermissionDenied { path: PathBuf },

    /// The daemon did not answer in time. The client hangs up, and a daemon that gets to the
    /// request later drops it (`Call::client_gone`): it is not carried out behind the user's
    /// back. `pid` is the daemon's, from the socket (`SO_PEERCRED`).
    #[error(
        "the steer daemon on {}{} did not answer within {}, so the request was not carried out \
         and will not be (the daemon drops a request whose client has gone, unless it had \
         started on it already); the daemon may be stopped or hung: {}, see its log, and \
         restart its service if it stays so (steering goes on meanwhile)",
        path.display(),
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() },
        seconds(*timeout),
        match pid {
            Some(pid) => format!("`ps -o stat= -p {pid}` shows T when it is stopped (`kill -CONT {pid}` resumes it)"),
            None => "`ps` shows its state (T: stopped)".to_owned(),
        }
    )]
    Timeout {
        path: PathBuf,
        timeout: Duration,
        pid: Option<i32>,
    },

    /// The daemon closed the connection without an answer: it stopped (or died) meanwhile.
    #[error(
        "the steer daemon on {} closed the connection without answering: it stopped or died \
         meanwhile; check its log",
        path.display()
    )]
    Closed { path: PathBuf },

    /// The answer was not one valid JSON response line.
    #[error(
        "invalid answer from the steer daemon on {}: {detail}; check that the steer CLI and the daemon are the same version",
        path.display()
    )]
    BadResponse { path: PathBuf, detail: String },

    /// The request could not be encoded (a bug in steer).
    #[error("cannot encode the request for {}: {detail}; this is a bug in steer, please report it", path.display())]
    BadRequest { path: PathBuf, detail: String },

    /// Another daemon is live on the socket.
    #[error(
        "another steer daemon is serving {}{}; stop it first (`steer stop`) or choose another socket path",
        path.display(),
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    AlreadyServing { path: PathBuf, pid: Option<i32> },

    /// Something other than a socket sits where the socket should be; it is never deleted.
    #[error(
        "{} exists and is not a socket; steer will not delete it: move it away or choose another socket path",
        path.display()
    )]
    NotASocket { path: PathBuf },

    /// The socket's directory exists but is not a directory.
    #[error(
        "{} is not a directory, so the control socket cannot be created in it; choose another socket path",
        dir.display()
    )]
    NotADirectory { dir: PathBuf },

    /// The socket's directory is another user's, or others may write into it: they could
    /// replace the socket (and read what root's commands send).
    #[error(
        "refusing to create the control socket in {}: {why} (owner uid {owner}, mode {mode:04o}); only the user steer runs as may own and write that directory: run `chown {me} {} && chmod go-w {}` or choose another socket path",
        dir.display(),
        dir.display(),
        dir.display()
    )]
    InsecureDirectory {
        dir: PathBuf,
        why: &'static str,
        owner: u32,
        mode: u32,
        me: u32,
    },

    /// `serve` was called outside a tokio runtime (a bug in steer).
    #[error(
        "cannot serve the control socket {}: not called inside a tokio runtime; this is a bug in steer, please report it",
        path.display()
    )]
    NoRuntime { path: PathBuf },

    /// Any other system error; `op` says what was being done ("bind", "connect to", ...).
    #[error(
        "cannot {op} {}: {source}; check control.socket in the configuration (its directory \
         must exist, be root's and be writable)",
        path.display()
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A duration as a user reads it: seconds, to a tenth, without the float's noise
/// (`14.99999972s` is 15 s).
fn seconds(d: Duration) -> String {
    let tenths = (d.as_secs_f64() * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0} s")
    } else {
        format!("{tenths:.1} s")
    }
}

impl ControlError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_the_path() {
        let path = PathBuf::from("/run/steer/test.sock");
        let dir = PathBuf::from("/run/steer");
        let errors = [
            ControlError::NotRunning { path: path.clone() },
            ControlError::NotListening { path: path.clone() },
            ControlError::PermissionDenied { path: path.clone() },
            ControlError::Timeout {
                path: path.clone(),
                timeout: Duration::from_secs(5),
                pid: None,
            },
            ControlError::BadResponse {
                path: path.clone(),
                detail: "x".into(),
            },
            ControlError::BadRequest {
                path: path.clone(),
                detail: "x".into(),
            },
            ControlError::AlreadyServing {
                path: path.clone(),
                pid: Some(42),
            },
            ControlError::AlreadyServing {
                path: path.clone(),
                pid: None,
            },
            ControlError::NotASocket { path: path.clone() },
            ControlError::NoRuntime { path: path.clone() },
            ControlError::io("bind", path.clone(), io::Error::other("boom")),
        ];
        for e in &errors {
            let text = e.to_string();
            assert!(text.contains("/run/steer/test.sock"), "{text}");
        }
        for e in [
            ControlError::NotADirectory { dir: dir.clone() },
            ControlError::InsecureDirectory {
                dir: dir.clone(),
                why: "everyone may write into the directory",
                owner: 0,
                mode: 0o777,
                me: 0,
            },
        ] {
            assert!(e.to_string().contains("/run/steer"), "{e}");
        }
        assert_eq!(
            errors[0].to_string(),
            "steer is not running (no socket at /run/steer/test.sock); start it with `steer run -c FILE`"
        );
        assert_eq!(
            errors[2].to_string(),
            "permission denied on /run/steer/test.sock: run as root"
        );
        assert!(errors[6].to_string().contains("(pid 42)"));
        assert!(
            errors[3].to_string().contains("within 5 s,"),
            "{}",
            errors[3]
        );
        assert!(!errors[7].to_string().contains("pid"));
        assert!(
            ControlError::InsecureDirectory {
                dir,
                why: "everyone may write into the directory",
                owner: 0,
                mode: 0o777,
                me: 0
            }
            .to_string()
            .contains("mode 0777")
        );
    }

    #[test]
    fn a_timeout_reads_as_seconds_says_the_request_is_dropped_and_names_the_daemon() {
        let e = ControlError::Timeout {
            path: "/run/steer/steer.sock".into(),
            timeout: Duration::from_nanos(14_999_999_720),
            pid: Some(6209),
        };
        let text = e.to_string();
        assert!(
            text.contains("(pid 6209) did not answer within 15 s,"),
            "{text}"
        );
        assert!(
            text.contains("was not carried out and will not be"),
            "{text}"
        );
        assert!(text.contains("kill -CONT 6209"), "{text}");
        assert!(text.contains("restart its service"), "{text}");
        assert!(!text.contains("retry"), "{text}");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
    }
}

//! The CLI side of the control socket: blocking std code, because the CLI has no runtime.

use std::{
    io::{ErrorKind, Read, Write},
    net::Shutdown,
    os::{fd::AsRawFd, unix::net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use super::{ControlError, Request, Response};

/// Longest answer the client accepts (status documents are far smaller).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Sends one request to the daemon at `path` and returns its answer. `timeout` bounds the
/// whole exchange after the connection is made.
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => ControlError::NotRunning { path: path.into() },
        ErrorKind::ConnectionRefused => ControlError::NotListening { path: path.into() },
        ErrorKind::PermissionDenied => ControlError::PermissionDenied { path: path.into() },
        _ => ControlError::io("connect to", path, e),
    })?;
    // The daemon's pid, for a timeout to name the process that does not answer.
    let pid = listener_pid(&stream);
    let timed_out = || ControlError::Timeout {
        path: path.into(),
        timeout,
        pid,
    };

    let mut line = serde_json::to_vec(request).map_err(|e| ControlError::BadRequest {
        path: path.into(),
        detail: e.to_string(),
    })?;
    line.push(b'\n');
    let left = remaining(deadline).ok_or_else(timed_out)?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| ControlError::io("configure the connection to", path, e))?;
    match stream.write_all(&line) {
        Ok(()) => {
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(e) if is_timeout(e.kind()) => return Err(timed_out()),
        // The daemon answered before taking the whole request (refused, or too large):
        // its answer is waiting to be read.
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        Err(e) => return Err(ControlError::io("send the request to", path, e)),
    }

    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = remaining(deadline).ok_or_else(timed_out)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| ControlError::io("configure the connection to", path, e))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(end) = chunk[..n].iter().position(|&b| b == b'\n') {
                    answer.extend_from_slice(&chunk[..end]);
                    break;
                }
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() > MAX_RESPONSE_BYTES {
                    return Err(ControlError::BadResponse {
                        path: path.into(),
                        detail: format!("the answer is longer than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(e.kind()) => return Err(timed_out()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(ControlError::io("read the answer from", path, e)),
        }
    }
    if answer.is_empty() {
        return Err(ControlError::Closed { path: path.into() });
    }
    serde_json::from_slice(&answer).map_err(|e| ControlError::BadResponse {
        path: path.into(),
        detail: format!(
            "{e} in \"{}\"",
            answer[..answer.len().min(200)].escape_ascii()
        ),
    })
}

/// The pid of the process that listens on the socket `stream` is connected to: the kernel
/// keeps the listener's credentials for its connections (`SO_PEERCRED`).
fn listener_pid(stream: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own, and sets `len`.
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (done == 0 && cred.pid > 0).then_some(cred.pid)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// A socket timeout shows up as `WouldBlock` (EAGAIN) or `TimedOut`.
fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

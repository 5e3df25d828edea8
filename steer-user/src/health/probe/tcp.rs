//! TCP connect and HTTP GET probes.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use socket2::{Protocol, Type};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use super::{
    ProbeSpec,
    sock::{ProbeError, wan_socket},
};
use crate::config::{StatusCodes, TcpRefused};

/// The most of an HTTP response read while looking for the status line.
const STATUS_LINE_MAX: usize = 1024;

/// Connects through the WAN. `Ok` when the handshake completes; `Err(Refused)` on a RST.
async fn connect_wan(spec: &ProbeSpec, addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    let socket = wan_socket(spec, addr.ip(), Type::STREAM, Protocol::TCP)?;
    // A non-blocking, unconnected stream socket, as TcpSocket requires.
    let socket = TcpSocket::from_std_stream(socket.into());
    socket
        .connect(addr)
        .await
        .map_err(|e| ProbeError::io("connect to", addr, e))
}

/// TCP connect probe: passes when the handshake completes; a refusal (a RST, or an ICMP port
/// unreachable) passes only with `refused` = [`TcpRefused::Pass`], since it may come from the
/// ISP's equipment rather than the target.
pub(super) async fn connect(
    spec: &ProbeSpec,
    addr: SocketAddr,
    refused: TcpRefused,
) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    match (connect_wan(spec, addr).await, refused) {
        (Ok(_stream), _) => Ok(started.elapsed()),
        (Err(ProbeError::Refused), TcpRefused::Pass) => Ok(started.elapsed()),
        (Err(ProbeError::Refused), TcpRefused::Fail) => Err(ProbeError::RefusedCountsAsFailed),
        (Err(e), _) => Err(e),
    }
}

/// What an HTTP probe asks for.
pub(super) struct HttpRequest<'a> {
    /// The `Host` header.
    pub host: &'a str,
    pub path: &'a str,
}

/// HTTP probe: `GET path` with `Host: host`; passes on a status line `HTTP/1.x NNN` with NNN
/// in `wanted`. The RTT runs from the connect to the status line.
pub(super) async fn http(
    spec: &ProbeSpec,
    addr: SocketAddr,
    request: &HttpRequest<'_>,
    wanted: &StatusCodes,
) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    let mut stream = connect_wan(spec, addr).await?;
    let HttpRequest { host, path } = request;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: steer-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ProbeError::io("send to", addr, e))?;
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let line = loop {
        if let Some(end) = response.windows(2).position(|w| w == b"\r\n") {
            break &response[..end];
        }
        if response.len() >= STATUS_LINE_MAX {
            break &response[..];
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeError::io("receive from", addr, e))?;
        if n == 0 {
            return Err(ProbeError::HttpClosed);
        }
        response.extend_from_slice(&chunk[..n]);
    };
    let rtt = started.elapsed();
    match status_code(line) {
        Some(code) if wanted.contains(code) => Ok(rtt),
        Some(code) => Err(ProbeError::HttpStatus {
            code,
            wanted: wanted.clone(),
        }),
        None => {
            let shown = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
            Err(ProbeError::NotHttp(shown))
        }
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    let digits = rest.get(..3)?;
    if !minor.is_ascii_digit() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.get(3).is_some_and(|&c| c != b' ') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_code;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 503"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 301 Moved"), Some(301));
        assert_eq!(status_code(b"HTTP/2 200"), None);
        assert_eq!(status_code(b"HTTP/1.1 20"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH"), None);
    }
}

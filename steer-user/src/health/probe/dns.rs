//! DNS probe: one UDP query, any well-formed response with the same id passes.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use socket2::{Protocol, Type};
use tokio::net::UdpSocket;

use super::{
    ProbeSpec,
    sock::{OsError, ProbeError, random_u64, wan_socket},
};

const TYPE_NS: u16 = 2;
const CLASS_IN: u16 = 1;

/// Sends a type NS query for `name` to `server`:53 through the WAN and waits for the answer.
pub(super) async fn probe(
    spec: &ProbeSpec,
    server: IpAddr,
    name: &str,
) -> Result<Duration, ProbeError> {
    let id = random_u64() as u16;
    let query = encode_query(id, name).ok_or_else(|| ProbeError::QueryName(name.to_owned()))?;
    let addr = SocketAddr::new(server, 53);
    let socket = wan_socket(spec, server, Type::DGRAM, Protocol::UDP)?;
    // Connected: the kernel drops datagrams from anyone else, and an ICMP port unreachable
    // comes back as "connection refused".
    socket
        .connect(&addr.into())
        .map_err(|e| ProbeError::io("connect to", addr, e))?;
    let socket = UdpSocket::from_std(socket.into()).map_err(|e| ProbeError::Socket(OsError(e)))?;
    let started = Instant::now();
    socket
        .send(&query)
        .await
        .map_err(|e| ProbeError::io("send to", addr, e))?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| ProbeError::io("receive from", addr, e))?;
        if is_response_to(&buf[..n], id) {
            return Ok(started.elapsed());
        }
    }
}

/// A query: header (id, RD), one question `name` NS IN. `None` when `name` is not a valid
/// domain name. The root is `""` or `"."`.
fn encode_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(12 + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // QR=0, opcode QUERY, RD=1
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
    }
    q.push(0);
    if q.len() - 12 > 255 {
        return None;
    }
    q.extend_from_slice(&TYPE_NS.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(q)
}

/// A well-formed response to query `id`: a full header, the same id, QR set, opcode QUERY.
/// Any RCODE counts: the server answered.
fn is_response_to(msg: &[u8], id: u16) -> bool {
    msg.len() >= 12 && msg[0..2] == id.to_be_bytes() && msg[2] & 0x80 != 0 && msg[2] & 0x78 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_wire_format() {
        let q = encode_query(0xabcd, "example.com").unwrap();
        assert_eq!(
            q,
            [
                &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
                b"\x07example\x03com\x00",
                &[0, 2, 0, 1],
            ]
            .concat()
        );
        assert_eq!(encode_query(1, "."), encode_query(1, ""));
        assert_eq!(encode_query(1, ".").unwrap().len(), 12 + 1 + 4);
        assert_eq!(
            encode_query(1, "example.com."),
            encode_query(1, "example.com")
        );
        assert!(encode_query(1, "a..b").is_none());
        assert!(encode_query(1, &"x".repeat(64)).is_none());
    }

    #[test]
    fn responses() {
        let mut r = encode_query(7, "example.com").unwrap();
        assert!(!is_response_to(&r, 7), "a query is no response");
        r[2] |= 0x80;
        assert!(is_response_to(&r, 7));
        assert!(!is_response_to(&r, 8));
        r[3] |= 0x03; // NXDOMAIN still counts
        assert!(is_response_to(&r, 7));
        assert!(!is_response_to(&r[..11], 7));
    }
}

//! Health-probe targets and other `address:port` / URL values, parsed strictly.

use std::net::{IpAddr, SocketAddr};

use super::{ProbeTarget, StatusCodes, TcpRefused, TrackMethod};
use crate::prefix::{AddrError, is_unicast, parse_addr};

pub(super) fn target_example(method: TrackMethod) -> String {
    match method {
        TrackMethod::Icmp => {
            "list addresses that answer pings, e.g. targets = [\"1.1.1.1\", \"9.9.9.9\"]"
        }
        TrackMethod::Tcp => {
            "list address:port pairs, e.g. targets = [\"1.1.1.1:443\", \"[2606:4700::1111]:443\"]"
        }
        TrackMethod::Dns => "list DNS server addresses, e.g. targets = [\"1.1.1.1\", \"9.9.9.9\"]",
        TrackMethod::Http => "list URLs with an IP address, e.g. targets = [\"http://1.1.1.1/\"]",
    }
    .into()
}

/// What the `[wan.track]` keys besides `targets` give every target of a method.
#[derive(Debug, Clone, Copy)]
pub(super) struct TargetOptions<'a> {
    /// The name dns probes ask for (`query`).
    pub query: &'a str,
    /// The Host header of http probes (`host`), when written.
    pub host: Option<&'a str>,
    /// What a refused tcp probe counts as (`tcp_refused`).
    pub tcp_refused: TcpRefused,
    /// The status codes that pass an http probe (`http_status`).
    pub http_status: &'a StatusCodes,
}

/// A probe target for `method`. Errors are `(message, hint)`.
pub(super) fn parse_target(
    method: TrackMethod,
    text: &str,
    options: &TargetOptions<'_>,
) -> Result<ProbeTarget, (String, String)> {
    let addr = |text: &str| -> Result<IpAddr, (String, String)> {
        let a = parse_addr(text).map_err(|e| {
            if matches!(
                e,
                AddrError::BadChar { ch: ':', .. } | AddrError::InvalidV6 { .. }
            ) || text.contains("://")
            {
                (e.message(), target_example(method))
            } else {
                (e.message(), e.hint())
            }
        })?;
        probe_addr_ok(a)?;
        Ok(a)
    };
    match method {
        TrackMethod::Icmp => {
            if text.contains("://") || (text.matches(':').count() == 1) {
                return Err((
                    format!("`{text}` is not an address; icmp targets are plain addresses"),
                    "write only the address (e.g. 1.1.1.1), or use method = \"tcp\" or \"http\" for ports and URLs".into(),
                ));
            }
            addr(text).map(ProbeTarget::Icmp)
        }
        TrackMethod::Dns => {
            if text.contains("://") || text.matches(':').count() == 1 || text.starts_with('[') {
                return Err((
                    format!("`{text}` is not an address; dns targets are server addresses"),
                    "write only the server address (e.g. 9.9.9.9); queries go to port 53".into(),
                ));
            }
            addr(text).map(|server| ProbeTarget::Dns {
                server,
                query: options.query.to_owned(),
            })
        }
        TrackMethod::Tcp => {
            let sa = parse_socket_addr(text).map_err(|(m, h)| {
                if h.is_empty() {
                    (m, target_example(method))
                } else {
                    (m, h)
                }
            })?;
            probe_addr_ok(sa.ip())?;
            Ok(ProbeTarget::Tcp {
                addr: sa,
                refused: options.tcp_refused,
            })
        }
        TrackMethod::Http => parse_http(text, options.host, options.http_status),
    }
}

fn probe_addr_ok(a: IpAddr) -> Result<(), (String, String)> {
    if !is_unicast(a) {
        return Err((
            format!("{a} cannot be probed"),
            "use a unicast address that answers, e.g. 1.1.1.1".into(),
        ));
    }
    // The router itself answers it, whatever the line does (or, bound to the WAN, nothing
    // ever does): the WAN would stay up through a dead line, or down forever.
    if a.to_canonical().is_loopback() {
        return Err((
            format!("{a} is a loopback address: the router itself answers it, not the line"),
            "probe an address beyond the WAN's line, e.g. 1.1.1.1 or the ISP's next hop".into(),
        ));
    }
    Ok(())
}

/// How a socket address writes IPv6, for hints.
const SOCKET_V6: &str = "write an IPv6 address and port as [2001:db8::1]:443";
/// How an http target writes IPv6, for hints.
const HTTP_V6: &str = "write IPv6 URLs as http://[2001:db8::1]/path";

/// `IPv4:port` or `[IPv6]:port`, strictly. Errors are `(message, hint)`.
pub(super) fn parse_socket_addr(text: &str) -> Result<SocketAddr, (String, String)> {
    let t = text.trim();
    let (ip, port) = split_addr_port(t, SOCKET_V6).map_err(Bad::into_pair)?;
    let Some(port) = port else {
        return Err((
            format!("`{t}` has no port"),
            format!("add the port, e.g. {t}:443"),
        ));
    };
    Ok(SocketAddr::new(ip, parse_port(port)?))
}

/// Why an `address[:port]` is not acceptable: the address itself (for the caller to word), or
/// how it is written around it.
enum Bad {
    Addr(AddrError),
    Shape(String, String),
}

impl Bad {
    fn into_pair(self) -> (String, String) {
        match self {
            Bad::Addr(e) => (e.message(), e.hint()),
            Bad::Shape(m, h) => (m, h),
        }
    }
}

/// `IPv4[:port]` or `[IPv6][:port]`: the address, and the port text if one is written.
/// `v6_hint` says how the caller's syntax writes an IPv6 address.
fn split_addr_port<'t>(t: &'t str, v6_hint: &str) -> Result<(IpAddr, Option<&'t str>), Bad> {
    let shape = |message: String| Bad::Shape(message, v6_hint.to_owned());
    if let Some(rest) = t.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(shape(format!("`{t}` has `[` without `]`")));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(shape(format!("unexpected `{after}` after `]` in `{t}`"))),
        };
        let ip = parse_addr(inner).map_err(Bad::Addr)?;
        if ip.is_ipv4() {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            return Err(Bad::Shape(
                format!("`{t}` puts an IPv4 address in brackets"),
                format!("write {inner}{port} (only IPv6 addresses go in brackets)"),
            ));
        }
        Ok((ip, port))
    } else if t.matches(':').count() > 1 {
        Err(shape(format!(
            "`{t}` looks like an IPv6 address without brackets"
        )))
    } else {
        let (addr, port) = match t.rsplit_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        Ok((parse_addr(addr).map_err(Bad::Addr)?, port))
    }
}

fn parse_port(s: &str) -> Result<u16, (String, String)> {
    let plain = s.bytes().all(|b| b.is_ascii_digit()) && !(s.len() > 1 && s.starts_with('0'));
    match s.parse::<u16>() {
        Ok(port) if plain && port != 0 => Ok(port),
        _ => Err((
            format!("`{s}` is not a valid port"),
            "ports are 1 to 65535, written in decimal".into(),
        )),
    }
}

/// `http://IP[:port][/path]`; the Host header defaults to the address (and port when not 80).
fn parse_http(
    text: &str,
    host: Option<&str>,
    status: &StatusCodes,
) -> Result<ProbeTarget, (String, String)> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err((
            "https probes are not supported".into(),
            format!(
                "use http://{} (the probe only checks that the WAN reaches the server)",
                &t[8..]
            ),
        ));
    }
    if !lower.starts_with("http://") {
        return Err((
            format!("`{t}` is not an http:// URL"),
            target_example(TrackMethod::Http),
        ));
    }
    let rest = &t[7..];
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err((
            format!("the path `{path}` contains a space, control character or `#`"),
            "percent-encode it (a space is %20) and leave out any #fragment".into(),
        ));
    }
    let (ip, port) = split_addr_port(authority, HTTP_V6).map_err(|e| match e {
        Bad::Addr(AddrError::Name { text }) => (
            format!(
                "`{text}` is a name; http targets must be IP addresses (resolving a name needs DNS, which may be what is down)"
            ),
            format!("write http://<address>{path} and set host = \"{text}\""),
        ),
        other => other.into_pair(),
    })?;
    let port = port.map_or(Ok(80), parse_port)?;
    probe_addr_ok(ip)?;
    let addr = SocketAddr::new(ip, port);
    let mut default_host = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    if port != 80 {
        default_host.push_str(&format!(":{port}"));
    }
    Ok(ProbeTarget::Http {
        addr,
        host: host.map_or(default_host, str::to_owned),
        path,
        status: status.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(text: &str, host: Option<&str>) -> Result<ProbeTarget, (String, String)> {
        parse_http(text, host, &StatusCodes::default())
    }

    fn target(
        method: TrackMethod,
        text: &str,
        query: &str,
    ) -> Result<ProbeTarget, (String, String)> {
        let options = TargetOptions {
            query,
            host: None,
            tcp_refused: TcpRefused::Fail,
            http_status: &StatusCodes::default(),
        };
        parse_target(method, text, &options)
    }

    #[test]
    fn sockets() {
        assert_eq!(
            parse_socket_addr("1.1.1.1:443").unwrap().to_string(),
            "1.1.1.1:443"
        );
        assert_eq!(
            parse_socket_addr("[2606:4700::1111]:53")
                .unwrap()
                .to_string(),
            "[2606:4700::1111]:53"
        );
        assert!(
            parse_socket_addr("1.1.1.1")
                .unwrap_err()
                .1
                .contains("1.1.1.1:443")
        );
        assert!(
            parse_socket_addr("2606:4700::1111:53")
                .unwrap_err()
                .1
                .contains('[')
        );
        assert!(parse_socket_addr("1.1.1.1:0").is_err());
        assert!(parse_socket_addr("1.1.1.1:080").is_err());
        assert!(parse_socket_addr("1.1.1.1:65536").is_err());
        assert!(parse_socket_addr("01.1.1.1:80").is_err());
        assert!(parse_socket_addr("[1.1.1.1]:80").is_err());
    }

    #[test]
    fn http_targets() {
        let t = http("http://1.1.1.1/generate_204", None).unwrap();
        assert_eq!(
            t,
            ProbeTarget::Http {
                addr: "1.1.1.1:80".parse().unwrap(),
                host: "1.1.1.1".into(),
                path: "/generate_204".into(),
                status: StatusCodes::default(),
            }
        );
        let t = http("http://[2001:db8::1]:8080", Some("example.com")).unwrap();
        assert_eq!(
            t,
            ProbeTarget::Http {
                addr: "[2001:db8::1]:8080".parse().unwrap(),
                host: "example.com".into(),
                path: "/".into(),
                status: StatusCodes::default(),
            }
        );
        let t = http("http://[2001:db8::1]/x", None).unwrap();
        assert!(matches!(t, ProbeTarget::Http { ref host, .. } if host == "[2001:db8::1]"));
        let t = http("http://192.0.2.1:8080/x?y=1", None).unwrap();
        assert!(
            matches!(t, ProbeTarget::Http { ref host, ref path, .. } if host == "192.0.2.1:8080" && path == "/x?y=1")
        );
        assert!(
            http("https://1.1.1.1/", None)
                .unwrap_err()
                .0
                .contains("https")
        );
        assert!(
            http("http://example.com/", None)
                .unwrap_err()
                .1
                .contains("host = \"example.com\"")
        );
        assert!(
            http("http://2001:db8::1/", None)
                .unwrap_err()
                .1
                .contains("http://[2001:db8::1]/path")
        );
        let (m, h) = http("http://[192.0.2.1]/x", None).unwrap_err();
        assert!(m.contains("IPv4 address in brackets"), "{m}");
        assert!(h.starts_with("write 192.0.2.1 "), "{h}");
        assert!(
            http("http://[2001:db8::1]8080/", None)
                .unwrap_err()
                .0
                .contains("unexpected `8080` after `]`")
        );
        assert_eq!(
            http("http://192.0.2.1:0/", None).unwrap_err(),
            parse_socket_addr("192.0.2.1:0").unwrap_err(),
            "one port rule and one wording for both"
        );
        assert!(http("1.1.1.1", None).is_err());
        assert!(http("http://1.1.1.1/a b", None).is_err());
    }

    #[test]
    fn targets_are_shown_as_written() {
        for (method, text) in [
            (TrackMethod::Icmp, "2606:4700::1111"),
            (TrackMethod::Dns, "9.9.9.9"),
            (TrackMethod::Tcp, "[2001:db8::1]:443"),
            (TrackMethod::Http, "http://192.0.2.1/generate_204"),
            (TrackMethod::Http, "http://[2001:db8::1]:8080/x?y=1"),
        ] {
            assert_eq!(target(method, text, ".").unwrap().to_string(), text);
        }
        let shown = target(TrackMethod::Http, "http://[2001:db8::1]:80", ".").unwrap();
        assert_eq!(shown.to_string(), "http://[2001:db8::1]/");
    }

    #[test]
    fn targets_per_method() {
        assert_eq!(
            target(TrackMethod::Icmp, "9.9.9.9", ".").unwrap(),
            ProbeTarget::Icmp("9.9.9.9".parse().unwrap())
        );
        assert!(target(TrackMethod::Icmp, "9.9.9.9:53", ".").is_err());
        assert!(target(TrackMethod::Icmp, "0.0.0.0", ".").is_err());
        assert!(target(TrackMethod::Icmp, "224.0.0.1", ".").is_err());
        for (method, looped) in [
            (TrackMethod::Icmp, "127.0.0.1"),
            (TrackMethod::Icmp, "127.8.9.10"),
            (TrackMethod::Icmp, "::1"),
            (TrackMethod::Dns, "127.0.0.53"),
            (TrackMethod::Tcp, "127.0.0.1:80"),
            (TrackMethod::Tcp, "[::1]:80"),
            (TrackMethod::Http, "http://127.0.0.1/"),
        ] {
            let (message, hint) = target(method, looped, ".").unwrap_err();
            assert!(
                message.contains("is a loopback address"),
                "{looped}: {message}"
            );
            assert!(hint.contains("beyond the WAN's line"), "{looped}: {hint}");
        }
        assert!(target(TrackMethod::Icmp, "2606:4700::1111", ".").is_ok());
        assert_eq!(
            target(TrackMethod::Dns, "9.9.9.9", "example.com").unwrap(),
            ProbeTarget::Dns {
                server: "9.9.9.9".parse().unwrap(),
                query: "example.com".into()
            }
        );
        assert!(target(TrackMethod::Dns, "9.9.9.9:53", ".").is_err());
        assert!(target(TrackMethod::Tcp, "9.9.9.9", ".").is_err());
    }
}

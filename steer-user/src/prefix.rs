//! IP prefixes as steer stores them: a network address with no host bits and a length.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::shown::shown;

/// An IPv4 or IPv6 network. Host bits are always zero (the constructor refuses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    V4 { addr: Ipv4Addr, len: u8 },
    V6 { addr: Ipv6Addr, len: u8 },
}

/// Why a prefix is not a valid network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length /{len} is longer than {max} bits")]
    TooLong { len: u32, max: u8 },
    #[error("host bits are set; the network is {network}")]
    HostBits { network: Prefix },
}

// `len` is the prefix length in bits, not a number of elements.
#[allow(clippy::len_without_is_empty)]
impl Prefix {
    /// A network from an address and a length; refuses lengths past the family's width and
    /// addresses with host bits set (the error names the network that was probably meant).
    pub fn new(addr: IpAddr, len: u32) -> Result<Self, PrefixError> {
        let prefix = Self::truncating(addr, len)?;
        if prefix.addr() != addr {
            return Err(PrefixError::HostBits { network: prefix });
        }
        Ok(prefix)
    }

    /// The network containing `addr` with length `len` (host bits cleared).
    pub fn truncating(addr: IpAddr, len: u32) -> Result<Self, PrefixError> {
        match addr {
            IpAddr::V4(a) => {
                let len = check_len(len, 32)?;
                let bits = u32::from(a) & mask32(len);
                Ok(Prefix::V4 {
                    addr: Ipv4Addr::from(bits),
                    len,
                })
            }
            IpAddr::V6(a) => {
                let len = check_len(len, 128)?;
                let bits = u128::from(a) & mask128(len);
                Ok(Prefix::V6 {
                    addr: Ipv6Addr::from(bits),
                    len,
                })
            }
        }
    }

    /// A single host: /32 or /128.
    pub fn host(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(addr) => Prefix::V4 { addr, len: 32 },
            IpAddr::V6(addr) => Prefix::V6 { addr, len: 128 },
        }
    }

    pub fn addr(&self) -> IpAddr {
        match *self {
            Prefix::V4 { addr, .. } => IpAddr::V4(addr),
            Prefix::V6 { addr, .. } => IpAddr::V6(addr),
        }
    }

    pub fn len(&self) -> u8 {
        match *self {
            Prefix::V4 { len, .. } | Prefix::V6 { len, .. } => len,
        }
    }

    pub fn is_v4(&self) -> bool {
        matches!(self, Prefix::V4 { .. })
    }

    /// Whether `ip` lies inside this network (never across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Prefix::V4 { addr, len }, IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(len) == u32::from(addr)
            }
            (Prefix::V6 { addr, len }, IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(len) == u128::from(addr)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len())
    }
}

fn check_len(len: u32, max: u8) -> Result<u8, PrefixError> {
    u8::try_from(len)
        .ok()
        .filter(|l| *l <= max)
        .ok_or(PrefixError::TooLong { len, max })
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

// ---------------------------------------------------------------------------------------------
// Strict text parsing
// ---------------------------------------------------------------------------------------------

/// Why a piece of text is not an acceptable address or network. Every variant says what is wrong
/// ([`AddrError::message`]) and what to write instead ([`AddrError::hint`]); `Display` prints both.
///
/// `text` is always the entry as written, with surrounding whitespace trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// Nothing but whitespace.
    Empty,
    /// Whitespace inside the entry (two entries on one line, or a space before `/`).
    Whitespace { text: String },
    /// An IPv6 zone id (`fe80::1%eth0`).
    ZoneId { text: String, without: String },
    /// An IPv6 address in brackets (`[2001:db8::1]`).
    Bracketed { text: String, inner: String },
    /// An IPv4 octet with a leading zero (`010.1.1.1`): octal to some tools, decimal to others.
    LeadingZero {
        text: String,
        decimal: String,
        octal: Option<String>,
    },
    /// Fewer than four IPv4 octets (`10.1`, `10/8`, `10.0.0/24`).
    Shorthand {
        text: String,
        padded: Option<String>,
        inet_aton: Option<String>,
    },
    /// More than four IPv4 octets.
    TooManyOctets { text: String },
    /// Hexadecimal IPv4 notation (`0x0a.0.0.1`).
    Hex { text: String },
    /// An IPv4 address written as one integer (`167772161`).
    Integer {
        text: String,
        dotted: Option<String>,
    },
    /// An IPv4 octet above 255.
    OctetRange { text: String, octet: String },
    /// Two dots in a row, or a leading or trailing dot.
    EmptyOctet { text: String },
    /// Looks like a host name, not an address.
    Name { text: String },
    /// A character that has no place in an address.
    BadChar { text: String, ch: char },
    /// Not a valid IPv6 address.
    InvalidV6 { text: String },
    /// A `/` with nothing after it.
    LenMissing { text: String },
    /// A prefix length that is not a plain decimal number (`/+24`, `/-1`, `/24x`, `/255.0.0.0`).
    LenSyntax { text: String, len: String },
    /// A prefix length with a leading zero (`/024`).
    LenLeadingZero { text: String, suggestion: String },
    /// A prefix length past the family's width.
    LenRange { text: String, len: String, max: u8 },
    /// Bits set after the prefix length.
    HostBits { text: String, network: Prefix },
    /// `/0` where it was not allowed.
    DefaultRoute { text: String },
    /// An IPv4-mapped IPv6 address or prefix (inside `::ffff:0:0/96`).
    Mapped { text: String, v4: Prefix },
    /// A network where a single address was expected.
    NotHost { text: String },
}

impl AddrError {
    /// What is wrong, naming the entry (escaped and cut, see [`Shown`](crate::shown::Shown)).
    pub fn message(&self) -> String {
        self.shown().plain_message()
    }

    /// What to write instead (the parts of the entry it names escaped and cut).
    pub fn hint(&self) -> String {
        self.shown().plain_hint()
    }

    /// The error with every piece of the entry it holds as a message shows it: the entry may
    /// be a 10 MB line with control characters in it, from a list file or a socket request.
    fn shown(&self) -> AddrError {
        let s = |t: &String| shown(t);
        let o = |t: &Option<String>| t.as_deref().map(shown);
        match self {
            AddrError::Empty => AddrError::Empty,
            AddrError::Whitespace { text } => AddrError::Whitespace { text: s(text) },
            AddrError::ZoneId { text, without } => AddrError::ZoneId {
                text: s(text),
                without: s(without),
            },
            AddrError::Bracketed { text, inner } => AddrError::Bracketed {
                text: s(text),
                inner: s(inner),
            },
            AddrError::LeadingZero {
                text,
                decimal,
                octal,
            } => AddrError::LeadingZero {
                text: s(text),
                decimal: s(decimal),
                octal: o(octal),
            },
            AddrError::Shorthand {
                text,
                padded,
                inet_aton,
            } => AddrError::Shorthand {
                text: s(text),
                padded: o(padded),
                inet_aton: o(inet_aton),
            },
            AddrError::TooManyOctets { text } => AddrError::TooManyOctets { text: s(text) },
            AddrError::Hex { text } => AddrError::Hex { text: s(text) },
            AddrError::Integer { text, dotted } => AddrError::Integer {
                text: s(text),
                dotted: o(dotted),
            },
            AddrError::OctetRange { text, octet } => AddrError::OctetRange {
                text: s(text),
                octet: s(octet),
            },
            AddrError::EmptyOctet { text } => AddrError::EmptyOctet { text: s(text) },
            AddrError::Name { text } => AddrError::Name { text: s(text) },
            AddrError::BadChar { text, ch } => AddrError::BadChar {
                text: s(text),
                ch: *ch,
            },
            AddrError::InvalidV6 { text } => AddrError::InvalidV6 { text: s(text) },
            AddrError::LenMissing { text } => AddrError::LenMissing { text: s(text) },
            AddrError::LenSyntax { text, len } => AddrError::LenSyntax {
                text: s(text),
                len: s(len),
            },
            AddrError::LenLeadingZero { text, suggestion } => AddrError::LenLeadingZero {
                text: s(text),
                suggestion: s(suggestion),
            },
            AddrError::LenRange { text, len, max } => AddrError::LenRange {
                text: s(text),
                len: s(len),
                max: *max,
            },
            AddrError::HostBits { text, network } => AddrError::HostBits {
                text: s(text),
                network: *network,
            },
            AddrError::DefaultRoute { text } => AddrError::DefaultRoute { text: s(text) },
            AddrError::Mapped { text, v4 } => AddrError::Mapped {
                text: s(text),
                v4: *v4,
            },
            AddrError::NotHost { text } => AddrError::NotHost { text: s(text) },
        }
    }

    /// [`Self::message`] of an error whose pieces are already as shown.
    fn plain_message(&self) -> String {
        match self {
            AddrError::Empty => "empty entry".into(),
            AddrError::Whitespace { text } => format!("`{text}` contains whitespace"),
            AddrError::ZoneId { text, .. } => {
                format!("`{text}` has a zone id (%...), which a prefix cannot carry")
            }
            AddrError::Bracketed { text, .. } => {
                format!("`{text}` is in brackets; brackets belong only in URLs and host:port")
            }
            AddrError::LeadingZero { text, .. } => format!(
                "`{text}` has an IPv4 octet with a leading zero, which some tools read as octal"
            ),
            AddrError::Shorthand { text, .. } => {
                format!("`{text}` is a shortened IPv4 form; tools disagree on what it means")
            }
            AddrError::TooManyOctets { text } => {
                format!("`{text}` has more than four IPv4 octets")
            }
            AddrError::Hex { text } => format!("`{text}` uses hexadecimal IPv4 notation"),
            AddrError::Integer { text, .. } => {
                format!("`{text}` is an IPv4 address written as a single integer")
            }
            AddrError::OctetRange { text, octet } => {
                format!("`{text}` has octet {octet}, but IPv4 octets are 0 to 255")
            }
            AddrError::EmptyOctet { text } => format!("`{text}` has an empty IPv4 octet"),
            AddrError::Name { text } => format!("`{text}` is a name, not an IP address"),
            AddrError::BadChar { text, ch } => {
                format!("`{text}` is not an IP address (unexpected {ch:?})")
            }
            AddrError::InvalidV6 { text } => format!("`{text}` is not a valid IPv6 address"),
            AddrError::LenMissing { text } => format!("`{text}` has a `/` but no prefix length"),
            AddrError::LenSyntax { text, len } => {
                format!("`{text}` has prefix length `{len}`, which is not a plain number")
            }
            AddrError::LenLeadingZero { text, .. } => {
                format!("`{text}` has a prefix length with a leading zero")
            }
            AddrError::LenRange { text, len, max } => {
                format!("`{text}` has prefix length /{len}, but the longest is /{max}")
            }
            AddrError::HostBits { text, network } => {
                format!("`{text}` has host bits set; the network is {network}")
            }
            AddrError::DefaultRoute { text } => format!(
                "`{text}` matches every {} address (a default route)",
                if text.contains(':') { "IPv6" } else { "IPv4" }
            ),
            AddrError::Mapped { text, .. } => format!(
                "`{text}` is an IPv4-mapped IPv6 address; packets never carry these, so it would never match"
            ),
            AddrError::NotHost { text } => {
                format!("`{text}` is a network, but a single address is needed here")
            }
        }
    }

    /// [`Self::hint`] of an error whose pieces are already as shown.
    fn plain_hint(&self) -> String {
        match self {
            AddrError::Empty => {
                "write an address such as 192.0.2.1 or a network such as 192.0.2.0/24, or remove the entry".into()
            }
            AddrError::Whitespace { .. } => {
                "write one address or network per entry, with no spaces inside (e.g. 192.0.2.0/24)".into()
            }
            AddrError::ZoneId { without, .. } => format!("write `{without}` without the zone id"),
            AddrError::Bracketed { inner, .. } => format!("write `{inner}` without brackets"),
            AddrError::LeadingZero { decimal, octal, .. } => match octal {
                Some(octal) => format!(
                    "write `{decimal}` if decimal was meant, or `{octal}` if octal was meant"
                ),
                None => format!("write `{decimal}` (no leading zeros)"),
            },
            AddrError::Shorthand {
                padded, inet_aton, ..
            } => match (padded, inet_aton) {
                (Some(p), Some(a)) => format!(
                    "write all four octets: `{p}` for the network, or `{a}` if you meant what inet_aton reads"
                ),
                (Some(p), None) => format!("write all four octets: `{p}`"),
                _ => "write all four octets, e.g. 10.0.0.0/8".into(),
            },
            AddrError::TooManyOctets { .. } => {
                "an IPv4 address has exactly four octets, e.g. 192.0.2.1".into()
            }
            AddrError::Hex { .. } | AddrError::EmptyOctet { .. } | AddrError::OctetRange { .. } => {
                "write four decimal octets from 0 to 255, e.g. 10.0.0.1".into()
            }
            AddrError::Integer { dotted, .. } => match dotted {
                Some(d) => format!("write it dotted: `{d}`"),
                None => "write four decimal octets, e.g. 10.0.0.1".into(),
            },
            AddrError::Name { .. } => {
                "only addresses and networks go here; put domain names in the set's `domains`".into()
            }
            AddrError::BadChar { .. } => {
                "write an address such as 192.0.2.1 or 2001:db8::1, or a network such as 192.0.2.0/24".into()
            }
            AddrError::InvalidV6 { .. } => {
                "IPv6 is up to eight groups of 1-4 hex digits separated by `:`, with at most one `::`, e.g. 2001:db8::1 or 2001:db8::/32".into()
            }
            AddrError::LenMissing { .. } | AddrError::LenSyntax { .. } => {
                "write the prefix length as a decimal number of bits, e.g. /24 (IPv4: 0-32, IPv6: 0-128)".into()
            }
            AddrError::LenLeadingZero { suggestion, .. } => format!("write `{suggestion}`"),
            AddrError::LenRange { max, .. } => format!(
                "use a length from 0 to {max} ({} has {max} bits)",
                if *max == 32 { "IPv4" } else { "IPv6" }
            ),
            AddrError::HostBits { text, network } => {
                let host = text.split('/').next().unwrap_or(text);
                format!("write `{network}` for the whole network, or `{host}` for just that address")
            }
            AddrError::DefaultRoute { .. } => "if this set really should take all traffic, set `allow_default_route = true` in the set; for traffic that no set matches, use [default] instead".into(),
            AddrError::Mapped { v4, .. } => {
                if v4.len() == 32 {
                    format!("write the IPv4 address `{}`", v4.addr())
                } else {
                    format!("write the IPv4 network `{v4}`")
                }
            }
            AddrError::NotHost { text } => {
                format!("write only the address, without `/{}`", text.split('/').nth(1).unwrap_or(""))
            }
        }
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.message(), self.hint())
    }
}

impl std::error::Error for AddrError {}

/// Parses one address (a host: /32 or /128) or CIDR network, strictly.
///
/// Surrounding whitespace is trimmed. Refused, each with its own [`AddrError`]: IPv4 octets with
/// leading zeros, shortened, hexadecimal or single-integer IPv4 forms, prefix lengths that are
/// not plain decimal or are too long, host bits after the length, IPv6 zone ids and brackets,
/// IPv4-mapped IPv6 (inside `::ffff:0:0/96`; packets on the wire never carry those), and `/0`
/// unless `allow_default_route`. Allocates nothing unless it fails.
pub fn parse_prefix(text: &str, allow_default_route: bool) -> Result<Prefix, AddrError> {
    let t = text.trim();
    let (addr_text, len_text) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let addr = parse_ip_text(t, addr_text, len_text)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max,
        Some(l) => parse_len(t, l, max)?,
    };
    let prefix = match Prefix::new(addr, u32::from(len)) {
        Ok(p) => p,
        Err(PrefixError::HostBits { network }) => {
            return Err(AddrError::HostBits {
                text: t.to_owned(),
                network,
            });
        }
        Err(PrefixError::TooLong { .. }) => {
            return Err(AddrError::LenRange {
                text: t.to_owned(),
                len: len.to_string(),
                max,
            });
        }
    };
    if let Some(v4) = mapped_v4(prefix) {
        return Err(AddrError::Mapped {
            text: t.to_owned(),
            v4,
        });
    }
    if prefix.len() == 0 && !allow_default_route {
        return Err(AddrError::DefaultRoute { text: t.to_owned() });
    }
    Ok(prefix)
}

/// Parses one IP address (no prefix length), with the same strictness as [`parse_prefix`]:
/// no leading zeros or shortened IPv4 forms, no zone ids, no IPv4-mapped IPv6.
pub fn parse_addr(text: &str) -> Result<IpAddr, AddrError> {
    let t = text.trim();
    if t.contains('/') {
        // Say what is wrong with the address part first, if anything.
        let (a, _) = t.split_once('/').unwrap_or((t, ""));
        parse_ip_text(t, a, Some(""))?;
        return Err(AddrError::NotHost { text: t.to_owned() });
    }
    let addr = parse_ip_text(t, t, None)?;
    if let Some(v4) = mapped_v4(Prefix::host(addr)) {
        return Err(AddrError::Mapped {
            text: t.to_owned(),
            v4,
        });
    }
    Ok(addr)
}

/// Whether `addr` names one host that can be talked to (a gateway, a probe target): not the
/// unspecified address, not multicast, not the IPv4 limited broadcast.
pub fn is_unicast(addr: IpAddr) -> bool {
    !(addr.is_unspecified() || addr.is_multicast() || addr == IpAddr::V4(Ipv4Addr::BROADCAST))
}

/// The IPv4 network an IPv4-mapped IPv6 prefix stands for, if it lies inside `::ffff:0:0/96`.
fn mapped_v4(prefix: Prefix) -> Option<Prefix> {
    match prefix {
        Prefix::V6 { addr, len } if len >= 96 => {
            let bits = u128::from(addr);
            if bits >> 32 == 0xffff {
                Some(Prefix::V4 {
                    addr: Ipv4Addr::from(bits as u32),
                    len: len - 96,
                })
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Strict dotted-quad IPv4: exactly four decimal octets 0..=255 without leading zeros.
fn parse_v4_strict(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while i < s.len() && i - start < 3 && s[i].is_ascii_digit() {
            v = v * 10 + u32::from(s[i] - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && s[start] == b'0') || v > 255 {
            return None;
        }
        *octet = v as u8;
    }
    (i == s.len()).then_some(Ipv4Addr::from(octets))
}

/// The address part of an entry; `whole` is the trimmed entry, for error messages.
fn parse_ip_text(whole: &str, addr: &str, len: Option<&str>) -> Result<IpAddr, AddrError> {
    if let Some(a) = parse_v4_strict(addr.as_bytes()) {
        return Ok(IpAddr::V4(a));
    }
    if addr.contains(':')
        && let Ok(a) = addr.parse::<Ipv6Addr>()
    {
        return Ok(IpAddr::V6(a));
    }
    Err(classify_addr(whole, addr, len))
}

/// Why `addr` (the part before any `/`) is not an address. Only runs on failure.
fn classify_addr(whole: &str, addr: &str, len: Option<&str>) -> AddrError {
    let text = whole.to_owned();
    let with_len = |a: &str| match len {
        Some(l) if !l.is_empty() => format!("{a}/{l}"),
        _ => a.to_owned(),
    };
    if whole.is_empty() {
        return AddrError::Empty;
    }
    if whole.contains(char::is_whitespace) {
        return AddrError::Whitespace { text };
    }
    if let Some((a, _)) = addr.split_once('%') {
        return AddrError::ZoneId {
            text,
            without: with_len(a),
        };
    }
    if addr.starts_with('[') || addr.ends_with(']') {
        let inner = addr.trim_start_matches('[').trim_end_matches(']');
        return AddrError::Bracketed {
            text,
            inner: with_len(inner),
        };
    }
    if addr.contains(':') {
        return AddrError::InvalidV6 { text };
    }
    if addr.is_empty() {
        return AddrError::Empty;
    }
    let parts: Vec<&str> = addr.split('.').collect();
    if parts
        .iter()
        .any(|p| p.starts_with("0x") || p.starts_with("0X"))
    {
        return AddrError::Hex { text };
    }
    if let Some(ch) = addr.chars().find(|c| !c.is_ascii_digit() && *c != '.') {
        let namelike = addr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'));
        if namelike && addr.chars().any(|c| c.is_ascii_alphabetic()) {
            return AddrError::Name { text };
        }
        return AddrError::BadChar { text, ch };
    }
    if parts.len() == 1 && addr.len() <= 3 && addr.parse::<u32>().is_ok_and(|v| v <= 255) {
        // `10/8` or `10`: the shortest shorthand, not an integer address.
    } else if parts.len() == 1 {
        let dotted = addr
            .parse::<u32>()
            .ok()
            .map(|v| with_len(&Ipv4Addr::from(v).to_string()));
        return AddrError::Integer { text, dotted };
    }
    if parts.iter().any(|p| p.is_empty()) {
        return AddrError::EmptyOctet { text };
    }
    if parts.len() > 4 {
        return AddrError::TooManyOctets { text };
    }
    if let Some(octet) = parts
        .iter()
        .find(|p| p.len() > 3 || p.parse::<u32>().is_ok_and(|v| v > 255))
    {
        return AddrError::OctetRange {
            text,
            octet: (*octet).to_owned(),
        };
    }
    let values: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
    if parts.len() < 4 {
        let mut octets = [0u8; 4];
        for (o, v) in octets.iter_mut().zip(&values) {
            *o = *v as u8;
        }
        let padded_addr = Ipv4Addr::from(octets);
        let padded = match len.map(|l| l.parse::<u32>()) {
            Some(Ok(l)) => Prefix::truncating(IpAddr::V4(padded_addr), l)
                .ok()
                .map(|p| p.to_string()),
            Some(Err(_)) => None,
            None => Some(format!("{padded_addr}/{}", 8 * parts.len())),
        };
        // inet_aton: the last part fills the remaining bytes.
        let inet_aton = if len.is_none() {
            let mut v: u32 = 0;
            for (i, part) in values.iter().enumerate() {
                if i + 1 < values.len() {
                    v |= part << (24 - 8 * i);
                } else {
                    v |= part;
                }
            }
            Some(Ipv4Addr::from(v).to_string())
        } else {
            None
        };
        return AddrError::Shorthand {
            text,
            padded,
            inet_aton,
        };
    }
    if parts.iter().any(|p| p.len() > 1 && p.starts_with('0')) {
        let decimal: Vec<String> = values.iter().map(u32::to_string).collect();
        let octal: Option<Vec<String>> = parts
            .iter()
            .map(|p| {
                if p.len() > 1 && p.starts_with('0') {
                    u32::from_str_radix(p, 8)
                        .ok()
                        .filter(|v| *v <= 255)
                        .map(|v| v.to_string())
                } else {
                    Some((*p).to_owned())
                }
            })
            .collect();
        let decimal = with_len(&decimal.join("."));
        let octal = octal
            .map(|o| with_len(&o.join(".")))
            .filter(|o| *o != decimal);
        return AddrError::LeadingZero {
            text,
            decimal,
            octal,
        };
    }
    AddrError::BadChar { text, ch: '?' }
}

/// A prefix length: plain decimal, no sign, no leading zeros, at most `max`.
fn parse_len(whole: &str, len: &str, max: u8) -> Result<u8, AddrError> {
    let b = len.as_bytes();
    if b.is_empty() {
        return Err(AddrError::LenMissing {
            text: whole.to_owned(),
        });
    }
    if !b.iter().all(u8::is_ascii_digit) {
        if whole.contains(char::is_whitespace) {
            return Err(AddrError::Whitespace {
                text: whole.to_owned(),
            });
        }
        return Err(AddrError::LenSyntax {
            text: whole.to_owned(),
            len: len.to_owned(),
        });
    }
    if b.len() > 1 && b[0] == b'0' {
        let trimmed = len.trim_start_matches('0');
        let trimmed = if trimmed.is_empty() { "0" } else { trimmed };
        let addr = whole.split('/').next().unwrap_or(whole);
        return Err(AddrError::LenLeadingZero {
            text: whole.to_owned(),
            suggestion: format!("{addr}/{trimmed}"),
        });
    }
    let value = if b.len() > 3 {
        u32::MAX
    } else {
        b.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'))
    };
    if value > u32::from(max) {
        return Err(AddrError::LenRange {
            text: whole.to_owned(),
            len: len.to_owned(),
            max,
        });
    }
    Ok(value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unicast_hosts() {
        for a in ["192.0.2.1", "10.0.0.255", "2001:db8::1", "fe80::1"] {
            assert!(is_unicast(ip(a)), "{a}");
        }
        for a in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(!is_unicast(ip(a)), "{a}");
        }
    }

    #[test]
    fn host_bits_are_refused_with_the_network_named() {
        let err = Prefix::new(ip("10.1.2.3"), 16).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host bits are set; the network is 10.1.0.0/16"
        );
        assert_eq!(
            Prefix::new(ip("10.1.0.0"), 16).unwrap().to_string(),
            "10.1.0.0/16"
        );
        let err = Prefix::new(ip("2001:db8::1"), 64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host bits are set; the network is 2001:db8::/64"
        );
    }

    #[test]
    fn lengths_are_bounded_per_family() {
        assert!(Prefix::new(ip("10.0.0.0"), 33).is_err());
        assert!(Prefix::new(ip("::"), 129).is_err());
        assert!(Prefix::new(ip("0.0.0.0"), 0).is_ok());
        assert!(Prefix::new(ip("::"), 0).is_ok());
    }

    #[test]
    fn containment() {
        let p = Prefix::new(ip("192.168.0.0"), 16).unwrap();
        assert!(p.contains(ip("192.168.255.1")));
        assert!(!p.contains(ip("192.169.0.1")));
        assert!(!p.contains(ip("::ffff:192.168.0.1")));
        assert!(
            Prefix::new(ip("::"), 0)
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
    }

    #[test]
    fn strict_parsing_accepts_canonical_forms() {
        for (text, want) in [
            ("192.0.2.1", "192.0.2.1/32"),
            (" 10.0.0.0/8 ", "10.0.0.0/8"),
            ("0.0.0.0/32", "0.0.0.0/32"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8/128"),
            ("64:ff9b::192.0.2.1", "64:ff9b::c000:201/128"),
        ] {
            assert_eq!(
                parse_prefix(text, false).unwrap().to_string(),
                want,
                "{text}"
            );
        }
        assert_eq!(parse_prefix("0.0.0.0/0", true).unwrap().len(), 0);
        assert_eq!(parse_addr("192.0.2.1").unwrap(), ip("192.0.2.1"));
    }

    #[test]
    fn strict_parsing_refuses_ambiguous_forms() {
        let err = |t: &str| parse_prefix(t, false).unwrap_err();
        assert!(matches!(err("010.1.1.1"), AddrError::LeadingZero { .. }));
        assert!(matches!(err("10.1"), AddrError::Shorthand { .. }));
        assert!(matches!(err("10/8"), AddrError::Shorthand { .. }));
        assert!(matches!(err("10"), AddrError::Shorthand { .. }));
        assert!(matches!(err("1.2.3.4.5"), AddrError::TooManyOctets { .. }));
        assert!(matches!(err("0x0a.0.0.1"), AddrError::Hex { .. }));
        assert!(matches!(err("167772161"), AddrError::Integer { .. }));
        assert!(matches!(err("1.2.3.256"), AddrError::OctetRange { .. }));
        assert!(matches!(err("1.2..3"), AddrError::EmptyOctet { .. }));
        assert!(matches!(
            err("10.0.0.0/024"),
            AddrError::LenLeadingZero { .. }
        ));
        assert!(matches!(err("10.0.0.0/"), AddrError::LenMissing { .. }));
        assert!(matches!(err("10.0.0.0/x"), AddrError::LenSyntax { .. }));
        assert!(matches!(err("10.0.0.0/33"), AddrError::LenRange { .. }));
        assert!(matches!(err("::/129"), AddrError::LenRange { .. }));
        assert!(matches!(err("10.0.0.1/8"), AddrError::HostBits { .. }));
        assert!(matches!(err("::/0"), AddrError::DefaultRoute { .. }));
        assert!(matches!(err("::ffff:1.2.3.4"), AddrError::Mapped { .. }));
        assert!(matches!(err("fe80::1%eth0"), AddrError::ZoneId { .. }));
        assert!(matches!(err("[::1]"), AddrError::Bracketed { .. }));
        assert!(matches!(err("1::2::3"), AddrError::InvalidV6 { .. }));
        assert!(matches!(err("a.example"), AddrError::Name { .. }));
        assert!(matches!(err("1.2.3.4 5"), AddrError::Whitespace { .. }));
        assert!(matches!(err(""), AddrError::Empty));
        assert!(matches!(
            parse_addr("10.0.0.0/8"),
            Err(AddrError::NotHost { .. })
        ));
        assert!(matches!(
            parse_addr("::ffff:10.0.0.1"),
            Err(AddrError::Mapped { .. })
        ));
    }

    #[test]
    fn messages_say_what_to_write() {
        let e = parse_prefix("10.1.2.3/16", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`10.1.2.3/16` has host bits set; the network is 10.1.0.0/16; write `10.1.0.0/16` for the whole network, or `10.1.2.3` for just that address"
        );
        let e = parse_prefix("::ffff:10.0.0.0/104", false).unwrap_err();
        assert!(e.hint().contains("`10.0.0.0/8`"), "{e}");
        let e = parse_prefix("0.0.0.0/0", false).unwrap_err();
        assert!(e.hint().contains("allow_default_route = true"), "{e}");
        let e = parse_prefix("10.0.0/24", false).unwrap_err();
        assert!(e.hint().contains("`10.0.0.0/24`"), "{e}");
        let e = parse_prefix("167772161", false).unwrap_err();
        assert!(e.hint().contains("`10.0.0.1`"), "{e}");
    }
}

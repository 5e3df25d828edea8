//! IP prefixes as steer stores them: a network address with no host bits and a length.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
}

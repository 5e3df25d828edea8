//! `/etc/config/network`: which Linux device carries each logical interface (`wan` ->
//! `eth1`, a PPPoE `wan` -> `pppoe-wan`), as netifd names them.

use std::collections::BTreeMap;

use super::uci::{self, UciError};

#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Logical interface -> device.
    devices: BTreeMap<String, String>,
}

impl Network {
    pub fn parse(text: &str, file: &str) -> Result<Network, UciError> {
        let sections = uci::parse(text, file)?;
        let mut raw = BTreeMap::new();
        for s in sections.iter().filter(|s| s.kind == "interface") {
            let Some(name) = &s.name else { continue };
            let proto = s.value("proto").unwrap_or("");
            // Point-to-point protocols: netifd names the L3 device after the interface.
            let device = match proto {
                "pppoe" | "pppoa" | "pptp" | "l2tp" => Some(format!("{proto}-{name}")),
                "wireguard" => Some(name.clone()),
                "3g" | "ppp" => Some(format!("3g-{name}")),
                _ => s
                    .value("device")
                    .or_else(|| s.value("ifname"))
                    .map(str::to_owned),
            };
            if let Some(d) = device {
                raw.insert(name.clone(), d);
            }
        }
        // `@wan` is an alias: the device of interface `wan` (wan6 usually says so).
        let mut devices = BTreeMap::new();
        for (name, dev) in &raw {
            let mut d = dev.clone();
            for _ in 0..8 {
                match d.strip_prefix('@').and_then(|a| raw.get(a)) {
                    Some(next) => d = next.clone(),
                    None => break,
                }
            }
            if !d.starts_with('@') {
                devices.insert(name.clone(), d);
            }
        }
        Ok(Network { devices })
    }

    /// The device of logical interface `name`.
    pub fn device(&self, name: &str) -> Option<&str> {
        self.devices.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_of_interfaces() {
        let n = Network::parse(
            "config interface 'lan'\n option device 'br-lan'\n\
             config interface 'wan'\n option device 'eth1'\n option proto 'dhcp'\n\
             config interface 'wan6'\n option device '@wan'\n option proto 'dhcpv6'\n\
             config interface 'dsl'\n option device 'eth2'\n option proto 'pppoe'\n\
             config interface 'old'\n option ifname 'eth3'\n",
            "network",
        )
        .unwrap();
        assert_eq!(n.device("wan"), Some("eth1"));
        assert_eq!(n.device("wan6"), Some("eth1"));
        assert_eq!(n.device("dsl"), Some("pppoe-dsl"));
        assert_eq!(n.device("old"), Some("eth3"));
        assert_eq!(n.device("nope"), None);
    }
}

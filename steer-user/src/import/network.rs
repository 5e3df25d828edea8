//! `/etc/config/network`: which Linux device carries each logical interface (`wan` ->
//! `eth1`, a PPPoE `wan` -> `pppoe-wan`, a bridge `lan` -> `br-lan`), as netifd names them.

use std::collections::{BTreeMap, BTreeSet};

use super::uci::{self, UciError};

/// One `config interface` section, for finding the LAN-side ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// The line of its section.
    pub line: usize,
    /// `option proto` (`static`, `dhcp`, `pppoe`, ...; empty when not set).
    pub proto: String,
    /// Its device (aliases followed), if the file gives one.
    pub device: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Network {
    /// The file name, for notes.
    file: String,
    /// Logical interface -> device.
    devices: BTreeMap<String, String>,
    /// Every device the file names: the interfaces' devices, `config device` names and bridge
    /// ports (an omr-bypass rule may name a device rather than an interface).
    known_devices: BTreeSet<String>,
    /// Every interface, in file order.
    interfaces: Vec<Interface>,
    /// The interfaces OpenMPTCProuter aggregates (`option multipath` other than `off`), in
    /// file order: (name, multipath, line of its section).
    multipath: Vec<(String, String, usize)>,
}

impl Network {
    pub fn parse(text: &str, file: &str) -> Result<Network, UciError> {
        let sections = uci::parse(text, file)?;
        let mut raw = BTreeMap::new();
        let mut known_devices = BTreeSet::new();
        let mut multipath = Vec::new();
        let mut order = Vec::new();
        for s in sections.iter().filter(|s| s.kind == "interface") {
            let Some(name) = &s.name else { continue };
            if let Some(m @ ("master" | "on" | "backup")) = s.value("multipath") {
                multipath.push((name.clone(), m.to_owned(), s.line));
            }
            let proto = s.value("proto").unwrap_or("");
            order.push((name.clone(), s.line, proto.to_owned()));
            // Point-to-point protocols: netifd names the L3 device after the interface.
            let device = match proto {
                "pppoe" | "pppoa" | "pptp" | "l2tp" => Some(format!("{proto}-{name}")),
                "wireguard" => Some(name.clone()),
                "3g" | "ppp" => Some(format!("3g-{name}")),
                // OpenWrt 19.07 and older: `option type 'bridge'` makes netifd create
                // `br-NAME`, with the `ifname` devices as its ports; the interface (its
                // address, its traffic) is the bridge, never a port.
                _ if s.value("type") == Some("bridge") => {
                    known_devices.extend(s.items("ifname"));
                    Some(format!("br-{name}"))
                }
                _ => s
                    .value("device")
                    .or_else(|| s.value("ifname"))
                    .map(str::to_owned),
            };
            if let Some(d) = device {
                raw.insert(name.clone(), d);
            }
        }
        // OpenWrt 21.02 and newer: `config device` (`option name 'br-lan'`, `list ports`),
        // which an interface names with `option device 'br-lan'`.
        for s in sections.iter().filter(|s| s.kind == "device") {
            known_devices.extend(s.value("name").map(str::to_owned));
            known_devices.extend(s.items("ports"));
            known_devices.extend(s.items("ifname"));
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
        known_devices.extend(devices.values().cloned());
        let interfaces = order
            .into_iter()
            .map(|(name, line, proto)| Interface {
                device: devices.get(&name).cloned(),
                name,
                line,
                proto,
            })
            .collect();
        Ok(Network {
            file: file.to_owned(),
            devices,
            known_devices,
            interfaces,
            multipath,
        })
    }

    /// The file this was read from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Every `config interface` of the file, in file order.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Whether `device` is a device the file names (an interface's, a `config device`, a
    /// bridge port).
    pub fn has_device(&self, device: &str) -> bool {
        self.known_devices.contains(device)
    }

    /// Whether interface `name` is one OpenMPTCProuter aggregates (multipath master, on or
    /// backup): an upstream, never a LAN.
    pub fn is_multipath(&self, name: &str) -> bool {
        self.multipath.iter().any(|(n, _, _)| n == name)
    }

    /// OpenMPTCProuter's master interface (`option multipath 'master'`) and the line of its
    /// section.
    pub fn master(&self) -> Option<(&str, usize)> {
        self.multipath
            .iter()
            .find(|(_, m, _)| m == "master")
            .map(|(n, _, l)| (n.as_str(), *l))
    }

    /// The other aggregated interfaces (`multipath` `on` or `backup`), in file order: where
    /// omr-tracker moves the master's default route (table 991337) when the master is down.
    pub fn multipath_others(&self) -> Vec<&str> {
        self.multipath
            .iter()
            .filter(|(_, m, _)| m != "master")
            .map(|(n, _, _)| n.as_str())
            .collect()
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
             option multipath 'on'\n\
             config interface 'wan6'\n option device '@wan'\n option proto 'dhcpv6'\n\
             config interface 'dsl'\n option device 'eth2'\n option proto 'pppoe'\n\
             option multipath 'master'\n\
             config interface 'old'\n option ifname 'eth3'\n",
            "network",
        )
        .unwrap();
        assert_eq!(n.device("wan"), Some("eth1"));
        assert_eq!(n.device("wan6"), Some("eth1"));
        assert_eq!(n.device("dsl"), Some("pppoe-dsl"));
        assert_eq!(n.device("old"), Some("eth3"));
        assert_eq!(n.device("nope"), None);
        assert_eq!(n.master(), Some(("dsl", 10)));
        assert_eq!(n.multipath_others(), ["wan"]);
    }

    #[test]
    fn an_old_style_bridge_is_br_name_not_its_port() {
        // OpenWrt 19.07: the bridge is declared on the interface, its ports in ifname.
        let n = Network::parse(
            "config interface 'lan'\n option type 'bridge'\n option ifname 'eth0.1 wlan0'\n\
             option proto 'static'\n\
             config interface 'guest'\n option type 'bridge'\n option proto 'static'\n\
             config interface 'wan'\n option ifname 'eth0.2'\n option proto 'dhcp'\n",
            "network",
        )
        .unwrap();
        assert_eq!(n.device("lan"), Some("br-lan"));
        assert_eq!(n.device("guest"), Some("br-guest"));
        assert_eq!(n.device("wan"), Some("eth0.2"));
        assert!(n.has_device("eth0.1") && n.has_device("br-lan"));
        assert!(!n.has_device("eth9"));
    }

    #[test]
    fn a_device_section_bridge_is_the_interface_device() {
        // OpenWrt 21.02 and newer: `config device` declares the bridge and its ports.
        let n = Network::parse(
            "config device\n option name 'br-lan'\n option type 'bridge'\n\
             list ports 'lan1'\n list ports 'lan2'\n\
             config interface 'lan'\n option device 'br-lan'\n option proto 'static'\n",
            "network",
        )
        .unwrap();
        assert_eq!(n.device("lan"), Some("br-lan"));
        assert!(n.has_device("lan2"));
        assert_eq!(
            n.interfaces(),
            [Interface {
                name: "lan".into(),
                line: 6,
                proto: "static".into(),
                device: Some("br-lan".into()),
            }]
        );
    }
}

//! `/etc/config/network`: which Linux device carries each logical interface (`wan` ->
//! `eth1`, a PPPoE `wan` -> `pppoe-wan`), as netifd names them.

use std::collections::BTreeMap;

use super::uci::{self, UciError};

#[derive(Debug, Clone, Default)]
pub struct Network {
    /// The file name, for notes.
    file: String,
    /// Logical interface -> device.
    devices: BTreeMap<String, String>,
    /// The interfaces OpenMPTCProuter aggregates (`option multipath` other than `off`), in
    /// file order: (name, multipath, line of its section).
    multipath: Vec<(String, String, usize)>,
}

impl Network {
    pub fn parse(text: &str, file: &str) -> Result<Network, UciError> {
        let sections = uci::parse(text, file)?;
        let mut raw = BTreeMap::new();
        let mut multipath = Vec::new();
        for s in sections.iter().filter(|s| s.kind == "interface") {
            let Some(name) = &s.name else { continue };
            if let Some(m @ ("master" | "on" | "backup")) = s.value("multipath") {
                multipath.push((name.clone(), m.to_owned(), s.line));
            }
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
        Ok(Network {
            file: file.to_owned(),
            devices,
            multipath,
        })
    }

    /// The file this was read from.
    pub fn file(&self) -> &str {
        &self.file
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
}

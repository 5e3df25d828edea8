//! Strict reverse-path filtering (`rp_filter = 1`) on a WAN: the kernel drops a packet that
//! arrives on an interface it would not route the answer back through. The answers to the
//! LAN's traffic steered out of a WAN that is not the main table's default (their destination
//! a LAN host once NAT is undone, routed back by the main table) arrive on "the wrong"
//! interface and are dropped: that traffic gets no answer. (The router's own traffic passes:
//! steer's rules route its WAN addresses by their WAN.) Loose mode (2) keeps the protection
//! against spoofed sources and lets them in. Said at start and at every reload; steer does not
//! change the sysctl itself.

use std::path::Path;

/// The effective mode of `interface` under `conf` (`/proc/sys/net/ipv4/conf`): the larger of
/// `all`'s and the interface's own, as the kernel takes it. `None` when neither can be read (no
/// such interface yet: it is checked again at the next reload).
fn mode(conf: &Path, interface: &str) -> Option<u32> {
    let read = |name: &str| -> Option<u32> {
        std::fs::read_to_string(conf.join(name).join("rp_filter"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let own = read(interface)?;
    Some(own.max(read("all").unwrap_or(0)))
}

/// A warning for each of `interfaces` (the WANs') whose reverse-path filter is strict.
pub fn strict_warnings<'a>(
    conf: &Path,
    interfaces: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    interfaces
        .into_iter()
        .filter(|i| mode(conf, i) == Some(1))
        .map(|i| {
            // sysctl takes `/` for the dots of a name (eth0.2: net.ipv4.conf.eth0/2.rp_filter).
            let key = i.replace('.', "/");
            format!(
                "{i}: strict reverse-path filtering (rp_filter = 1) drops the answers to the \
                 LAN's traffic steered out of this WAN whenever the main table's default route \
                 is another WAN's, so that traffic gets no answer; set \
                 net.ipv4.conf.{key}.rp_filter and net.ipv4.conf.all.rp_filter to 2 (loose), \
                 e.g. in /etc/sysctl.d/"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strict_filter_on_the_interface_or_all_is_named_and_loose_is_not() {
        let dir = std::env::temp_dir().join(format!("steer-rpf-{}", std::process::id()));
        for (name, value) in [("all", "0"), ("wan1", "2"), ("wan2", "1"), ("wan3", "0")] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("rp_filter"), format!("{value}\n")).unwrap();
        }
        let warned = strict_warnings(&dir, ["wan1", "wan2", "wan3", "gone0"]);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("wan2: strict reverse-path filtering"));
        std::fs::create_dir_all(dir.join("eth0.2")).unwrap();
        std::fs::write(dir.join("eth0.2").join("rp_filter"), "1\n").unwrap();
        let warned = strict_warnings(&dir, ["eth0.2"]);
        assert!(
            warned[0].contains("net.ipv4.conf.eth0/2.rp_filter"),
            "{warned:?}"
        );
        // `all` = 1 makes every interface whose own is below it strict; 2 on the interface
        // stays loose (the kernel takes the larger).
        std::fs::write(dir.join("all").join("rp_filter"), "1\n").unwrap();
        let warned = strict_warnings(&dir, ["wan1", "wan2", "wan3"]);
        let named: Vec<&str> = warned.iter().map(|w| &w[..4]).collect();
        assert_eq!(named, ["wan2", "wan3"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

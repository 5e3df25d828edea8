//! Conntrack work a failover or a recovery asks for, done off the event loop: the kernel walks
//! its whole conntrack table to delete by mark or to list, which can take long on a busy
//! router. The controller decides what to flush or move; the daemon runs these on a blocking
//! thread and logs what they say.

use crate::{
    config::Wan,
    conntrack::{self, Connection, ConntrackError},
    model::Family,
};

/// Deleting the conntrack entries of one WAN's mark after it went down.
#[derive(Clone, Debug)]
pub struct Flush {
    pub wan: String,
    pub mark: u32,
    pub mask: u32,
    pub families: Vec<Family>,
}

/// Listing the connections a recovered WAN may want back (`failback = "move"`), and cutting
/// those [`super::Controller::flows_to_move`] picks: blocking conntrack work for a background
/// thread.
#[derive(Clone, Debug)]
pub struct FlowsBack {
    pub recovered: String,
    pub mask: u32,
    /// The marks of the other WANs, and the connection mark of those that went to the main
    /// table ([`crate::conntrack::nft::main_table_mark`]).
    pub marks: Vec<u32>,
    /// The families that recovered: only their connections are looked at (the other family's
    /// recovery moves its own, once).
    pub families: Vec<Family>,
}

impl FlowsBack {
    /// The connections of the recovered families carrying the other WANs' marks.
    pub fn list(&self) -> Result<Vec<Connection>, ConntrackError> {
        let mut all = Vec::new();
        for mark in &self.marks {
            all.extend(conntrack::connections(*mark, self.mask, &self.families)?);
        }
        Ok(all)
    }

    /// Deletes `moving` and says so.
    pub fn cut(&self, moving: &[Connection]) -> String {
        let (cut, _) = conntrack::delete_many(moving);
        format!(
            "{} back: {cut} of {} flows of policies with failback = \"move\" cut, so they start \
             over on their policy's WAN",
            self.recovered,
            moving.len()
        )
    }
}

impl Flush {
    /// The flushes a reload from the WANs `old` (marked under `mask`) to the WANs `new` asks
    /// for, once the new policy is live: the connections of a WAN it removed keep its mark,
    /// which no rule routes any more (they would leave by the main table's default, with
    /// their NAT binding of the gone line), for as long as they send. So do those of a WAN
    /// given another mark: their mark no longer leads to their line. A mark a WAN of `new`
    /// holds on another interface (two WANs' marks swapped, a WAN moved, a line replaced by
    /// another with its mark) leads to another line, where the source the old line's NAT bound
    /// (npt's prefix, masquerade's address) is dropped by that line's ISP or steer's own guard:
    /// flushed too; a mark on the same interface with another `prefix6`, its IPv6 only. Run
    /// after the new policy is live, such a flush also cuts the connections the mark's new WAN
    /// made in the instant since (they start over; before the flip, the old policy would mark
    /// the flows again). A WAN renamed on the same interface with the same mark and prefix
    /// keeps its connections. One flush per family: each is counted (the kernel's delete by
    /// mark of both families says no count), and the log says how many went.
    pub fn of_changed(old: &[Wan], new: &[Wan], mask: u32) -> Vec<Flush> {
        old.iter()
            .flat_map(|w| {
                let holder = new.iter().find(|n| n.mark & mask == w.mark & mask);
                let (families, why): (&[Family], String) = match holder {
                    None if new.iter().any(|n| n.name == w.name) => {
                        (&Family::ALL, "its mark changed".into())
                    }
                    None => (&Family::ALL, "removed by the reload".into()),
                    Some(n) if n.interface != w.interface && n.name == w.name => {
                        (&Family::ALL, format!("moved to {}", n.interface))
                    }
                    Some(n) if n.interface != w.interface => (
                        &Family::ALL,
                        format!("its mark is now {}'s, on {}", n.name, n.interface),
                    ),
                    Some(n) if n.prefix6 != w.prefix6 => {
                        (&[Family::V6], "its prefix6 changed".into())
                    }
                    Some(_) => (&[], String::new()),
                };
                families.iter().map(move |family| Flush {
                    wan: format!("{} ({why})", w.name),
                    mark: w.mark,
                    mask,
                    families: vec![*family],
                })
            })
            .collect()
    }

    /// Deletes the entries (blocking: the kernel deletes while it answers) and says how it went;
    /// `None` when there was nothing to delete (a family that carried nothing, as one still
    /// waiting for its gateway at a start).
    pub fn run(&self) -> Option<String> {
        let started = std::time::Instant::now();
        let (mark, mask) = (self.mark, self.mask);
        let families: Vec<&str> = self.families.iter().map(|f| f.name()).collect();
        let families = families.join(" and ");
        let took = || started.elapsed().as_secs_f64() * 1e3;
        match conntrack::flush_mark(mark, mask, &self.families) {
            Ok(Some(0)) => None,
            Ok(Some(n)) => Some(format!(
                "{}: {n} conntrack entries with mark {mark:#x}/{mask:#x} flushed in {:.1} ms \
                 ({families})",
                self.wan,
                took()
            )),
            Ok(None) => Some(format!(
                "{}: conntrack entries with mark {mark:#x}/{mask:#x} flushed in {:.1} ms \
                 ({families})",
                self.wan,
                took()
            )),
            Err(e) => Some(format!(
                "{}: conntrack flush failed ({families}): {e}",
                self.wan
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::wan;

    fn marked(name: &str, iface: &str, mark: u32) -> Wan {
        Wan {
            mark,
            ..wan(name, iface)
        }
    }

    /// The flushes of a reload from `old` to `new` under 0xff00, as (label, mark, family).
    fn flushes(old: &[Wan], new: &[Wan]) -> Vec<(String, u32, Vec<Family>)> {
        Flush::of_changed(old, new, 0xff00)
            .into_iter()
            .inspect(|f| assert_eq!(f.mask, 0xff00))
            .map(|f| (f.wan, f.mark, f.families))
            .collect()
    }

    fn both(wan: &str, mark: u32) -> [(String, u32, Vec<Family>); 2] {
        Family::ALL.map(|family| (wan.to_owned(), mark, vec![family]))
    }

    #[test]
    fn a_reload_flushes_the_connections_of_a_wan_it_removed_or_moved_and_only_those() {
        let old = [
            marked("wan1", "eth1", 0x100),
            marked("wan2", "eth2", 0x200),
            marked("wan3", "eth3", 0x300),
            marked("lte", "wwan0", 0x400),
        ];
        let new = [
            marked("wan1", "eth1", 0x100),
            // Renamed, same line and mark: its connections stay.
            marked("dsl", "eth2", 0x200),
            // Another mark: the old one leads nowhere.
            marked("lte", "wwan0", 0x500),
        ];
        assert_eq!(
            flushes(&old, &new),
            [
                both("wan3 (removed by the reload)", 0x300),
                both("lte (its mark changed)", 0x400),
            ]
            .concat()
        );
        assert!(flushes(&old, &old).is_empty());
    }

    /// A mark a WAN of the new file holds on another line: the connections bound to the old
    /// line's source would leave by the new one (npt's guard drops them). Two WANs swapping
    /// marks used to flush nothing, as did a line replaced by another with its mark.
    #[test]
    fn a_reload_flushes_a_mark_that_now_leads_to_another_line() {
        let old = [
            marked("wan1", "eth1", 0x100),
            marked("wan3", "eth3", 0x300),
            marked("dsl", "eth4", 0x400),
            marked("lte", "wwan0", 0x500),
        ];
        let new = [
            marked("wan1", "eth1", 0x300),
            marked("wan3", "eth3", 0x100),
            // Another line with the removed dsl's mark.
            marked("fiber", "eth5", 0x400),
            // The same WAN and mark on another interface.
            marked("lte", "wwan1", 0x500),
        ];
        assert_eq!(
            flushes(&old, &new),
            [
                both("wan1 (its mark is now wan3's, on eth3)", 0x100),
                both("wan3 (its mark is now wan1's, on eth1)", 0x300),
                both("dsl (its mark is now fiber's, on eth5)", 0x400),
                both("lte (moved to wwan1)", 0x500),
            ]
            .concat()
        );
    }

    /// Same line and mark with another delegated prefix: its IPv6 connections are bound to
    /// the old one (its IPv4 ones stay); renamed with the same prefix, they all stay.
    #[test]
    fn a_reload_flushes_the_ipv6_connections_of_a_mark_whose_prefix6_changed() {
        let prefix6 = |text: &str| {
            Some(crate::config::Prefix6::Fixed(
                crate::prefix::parse_prefix(text, false).expect("prefix"),
            ))
        };
        let with = |name: &str, mark: u32, p: &str| Wan {
            prefix6: prefix6(p),
            ..marked(name, &format!("eth{}", mark >> 8), mark)
        };
        let old = [
            with("wan1", 0x100, "2001:db8:a1::/48"),
            with("wan2", 0x200, "2001:db8:a2::/48"),
        ];
        let new = [
            with("wan1", 0x100, "2001:db8:b1::/48"),
            with("isp2", 0x200, "2001:db8:a2::/48"),
        ];
        assert_eq!(
            flushes(&old, &new),
            [(
                "wan1 (its prefix6 changed)".to_owned(),
                0x100,
                vec![Family::V6]
            )]
        );
    }
}

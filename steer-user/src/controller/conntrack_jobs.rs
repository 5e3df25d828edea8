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
    /// The marks of the other WANs.
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
    /// holds is not flushed: run after the new policy is live, it would cut that WAN's new
    /// connections too (a line replaced by another with its mark; the old line's connections
    /// then take the new line, where its NAT drops them at their next packet). One flush per
    /// family: each is counted (the kernel's delete by mark of both families says no count),
    /// and the log says how many went.
    pub fn of_removed(old: &[Wan], new: &[Wan], mask: u32) -> Vec<Flush> {
        old.iter()
            .filter(|w| !new.iter().any(|n| n.mark & mask == w.mark & mask))
            .flat_map(|w| {
                let why = if new.iter().any(|n| n.name == w.name) {
                    "its mark changed"
                } else {
                    "removed by the reload"
                };
                Family::ALL.map(|family| Flush {
                    wan: format!("{} ({why})", w.name),
                    mark: w.mark,
                    mask,
                    families: vec![family],
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

    #[test]
    fn a_reload_flushes_the_connections_of_a_wan_it_removed_or_moved_and_only_those() {
        let marked = |name: &str, iface: &str, mark: u32| Wan {
            mark,
            ..wan(name, iface)
        };
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
            // A new line with a removed one's mark: its new connections would be cut too.
            marked("fiber", "eth5", 0x300),
        ];
        let flushes: Vec<(String, u32, u32, Vec<Family>)> = Flush::of_removed(&old, &new, 0xff00)
            .into_iter()
            .map(|f| (f.wan, f.mark, f.mask, f.families))
            .collect();
        let flush =
            |wan: &str, mark: u32, family: Family| (wan.to_owned(), mark, 0xff00, vec![family]);
        assert_eq!(
            flushes,
            [
                flush("lte (its mark changed)", 0x400, Family::V4),
                flush("lte (its mark changed)", 0x400, Family::V6),
            ]
        );
        assert!(Flush::of_removed(&old, &old, 0xff00).is_empty());
    }
}

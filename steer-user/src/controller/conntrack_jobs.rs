//! Conntrack work a failover or a recovery asks for, done off the event loop: the kernel walks
//! its whole conntrack table to delete by mark or to list, which can take long on a busy
//! router. The controller decides what to flush or move; the daemon runs these on a blocking
//! thread and logs what they say.

use crate::{
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

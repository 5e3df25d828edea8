//! Which policy generation holds what, and the pool of slot tables they share.
//!
//! The kernel keeps `GENERATIONS` policy tables and reads the one `ACTIVE` names. Each has a
//! role here:
//!
//! - the *live* one;
//! - the *previous* one, live until the last flip: a packet that read `ACTIVE` just before the
//!   flip may still be reading it, so nothing precomputed goes there; it is the scratch the
//!   next write-then-flip (a later event) rewrites, as it always was;
//! - *standbys*: tables the controller precomputed for WAN failures, each flipped to with one
//!   word written ([`Maps::flip_to_standby`]); a standby is ready only once every write of it
//!   succeeded, and anything written to its generation afterwards makes it not ready;
//! - free ones (never read).
//!
//! Slot tables (`LB`) are a pool of `LB_BLOCKS` blocks that balanced entries name
//! (`PolicyEntry::lb`). A block is written only when no kept generation (live, previous, ready
//! standbys) names it; equal tables share one block, so a standby takes blocks only for the
//! tables its failure changes.

use std::collections::BTreeSet;

use steer_common::{GENERATIONS, LB_BLOCKS, MAX_RULES, action};

use super::{DataplaneError, Maps};
use crate::model::{Family, PolicyTable, Slots};

/// A standby generation made ready by [`Maps::prepare_standby`]; flipping to it checks that
/// nothing was written to it since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standby {
    pub generation: u32,
    serial: u64,
}

/// What userspace knows of the generations and the slot-table pool: read from the kernel
/// when first needed (the live generation only: any other may hold anything) and kept
/// current by every write through [`Maps`].
#[derive(Debug, Default)]
pub(super) struct Book {
    known: bool,
    live: u32,
    previous: Option<u32>,
    /// Per generation, the blocks its balanced entries name.
    names: Vec<BTreeSet<u32>>,
    /// What each block holds, when known.
    content: Vec<Option<Slots>>,
    /// Per generation, the serial of the standby it holds, while it is ready.
    ready: Vec<Option<u64>>,
    serial: u64,
}

impl Book {
    /// Blocks that may not be rewritten while `generation` is written: those the live, the
    /// previous and the ready generations other than `generation` name.
    fn kept_blocks(&self, generation: u32) -> BTreeSet<u32> {
        (0..GENERATIONS)
            .filter(|g| *g != generation && self.kept(*g))
            .flat_map(|g| self.names[g as usize].iter().copied())
            .collect()
    }

    fn kept(&self, generation: u32) -> bool {
        generation == self.live
            || self.previous == Some(generation)
            || self.ready[generation as usize].is_some()
    }

    fn flipped(&mut self, to: u32) {
        if to != self.live {
            self.previous = Some(self.live);
            self.live = to;
        }
        self.ready[to as usize] = None;
    }
}

impl Maps {
    /// Reads what the kernel's live generation names, unless known and still live (a test
    /// fixture may flip by hand).
    fn load_book(&mut self) -> Result<(), DataplaneError> {
        let live = self.active_generation()?;
        if self.book.known && self.book.live == live {
            return Ok(());
        }
        let mut book = Book {
            known: true,
            live,
            names: vec![BTreeSet::new(); GENERATIONS as usize],
            content: vec![None; LB_BLOCKS as usize],
            ready: vec![None; GENERATIONS as usize],
            ..Book::default()
        };
        for family in Family::ALL {
            for entry in self.policies(live, family)? {
                if entry.action == action::BALANCE && book.content[entry.lb as usize].is_none() {
                    let slots: Slots = self
                        .lb_block(entry.lb)?
                        .into_boxed_slice()
                        .try_into()
                        .expect("LB_SLOTS slots");
                    book.content[entry.lb as usize] = Some(slots);
                    book.names[live as usize].insert(entry.lb);
                }
            }
        }
        self.book = book;
        Ok(())
    }

    /// Called after `ACTIVE` was written: `to` is live, the one before it is the previous.
    pub(super) fn note_flip(&mut self, to: u32) {
        if self.book.known {
            self.book.flipped(to);
        }
    }

    /// The generation a write-then-flip writes: the previous one (as with two generations),
    /// or the next after the live one when nothing flipped yet.
    pub(super) fn scratch_generation(&mut self) -> Result<u32, DataplaneError> {
        self.load_book()?;
        let book = &self.book;
        Ok(book.previous.unwrap_or((book.live + 1) % GENERATIONS))
    }

    /// Forgets every standby: their generations and blocks may be rewritten. A reload and a
    /// write-then-flip start with it (the standbys were for the state they replace).
    pub fn drop_standbys(&mut self) {
        self.book.ready.iter_mut().for_each(|r| *r = None);
    }

    /// The generations holding a ready standby.
    pub fn standby_generations(&self) -> Vec<u32> {
        (0..GENERATIONS)
            .filter(|g| {
                self.book
                    .ready
                    .get(*g as usize)
                    .is_some_and(Option::is_some)
            })
            .collect()
    }

    /// Writes `table` into a free generation (neither live, previous nor a ready standby) and
    /// makes it a ready standby. Nothing a kept generation reads is written; on error the
    /// generation is simply not ready.
    pub fn prepare_standby(&mut self, table: &PolicyTable) -> Result<Standby, DataplaneError> {
        self.load_book()?;
        let generation = (0..GENERATIONS)
            .find(|g| !self.book.kept(*g))
            .ok_or(DataplaneError::NoFreeGeneration)?;
        self.write_table(generation, table)?;
        self.book.serial += 1;
        self.book.ready[generation as usize] = Some(self.book.serial);
        Ok(Standby {
            generation,
            serial: self.book.serial,
        })
    }

    /// Makes a ready standby live: one word written. Refused without a write when anything
    /// was written to its generation since it was made ready.
    pub fn flip_to_standby(&mut self, standby: Standby) -> Result<(u32, u32), DataplaneError> {
        let g = standby.generation;
        if !self.book.known || self.book.ready.get(g as usize) != Some(&Some(standby.serial)) {
            return Err(DataplaneError::StandbyNotReady(g));
        }
        let from = self.book.live;
        self.set_active_generation(g)?;
        Ok((from, g))
    }

    /// Writes `table` into `generation` (never the live one), only where it differs from what
    /// that generation holds; slot tables go to blocks no kept generation names (or to a
    /// block holding the same table). The generation stops being a ready standby first.
    pub(super) fn write_table(
        &mut self,
        generation: u32,
        table: &PolicyTable,
    ) -> Result<(), DataplaneError> {
        self.load_book()?;
        debug_assert_ne!(
            generation, self.book.live,
            "the live table is written per rule"
        );
        self.book.ready[generation as usize] = None;
        let mut taken = self.book.kept_blocks(generation);
        let mut named = BTreeSet::new();
        let result = self.write_entries(generation, table, &mut taken, &mut named);
        // On error the generation may name old and new blocks: it is not kept, so that only
        // matters once it is written again (which replaces this).
        self.book.names[generation as usize] = named;
        result?;
        let held = self.rule_infos(generation)?;
        for rule in 0..MAX_RULES {
            let r = rule as usize;
            if held[r] != table.info[r] {
                self.set_rule_info(generation, rule, table.info[r])?;
            }
        }
        Ok(())
    }

    fn write_entries(
        &mut self,
        generation: u32,
        table: &PolicyTable,
        taken: &mut BTreeSet<u32>,
        named: &mut BTreeSet<u32>,
    ) -> Result<(), DataplaneError> {
        for family in Family::ALL {
            let held = self.policies(generation, family)?;
            let want = table.family(family);
            for rule in 0..MAX_RULES {
                let mut entry = want.entries[rule as usize];
                if let Some(slots) = want.slots.get(&rule) {
                    entry.lb = self.place(slots, taken)?;
                    named.insert(entry.lb);
                }
                if held[rule as usize] != entry {
                    self.set_policy(generation, family, rule, entry)?;
                }
            }
        }
        Ok(())
    }

    /// Writes rule `rule` of `table` into `generation`, the live one included: a rule no
    /// prefix points at yet (or any more), so no packet reads it.
    pub(super) fn write_rule(
        &mut self,
        generation: u32,
        rule: u32,
        table: &PolicyTable,
    ) -> Result<(), DataplaneError> {
        self.load_book()?;
        let mut taken = self.book.kept_blocks(u32::MAX);
        for family in Family::ALL {
            let half = table.family(family);
            let mut entry = half.entries[rule as usize];
            if let Some(slots) = half.slots.get(&rule) {
                entry.lb = self.place(slots, &mut taken)?;
                self.book.names[generation as usize].insert(entry.lb);
            }
            self.set_policy(generation, family, rule, entry)?;
        }
        self.set_rule_info(generation, rule, table.info[rule as usize])
    }

    /// A block holding `slots`: one that holds them already, or a block nobody in `taken`
    /// reads, written now. The block joins `taken`.
    fn place(&mut self, slots: &Slots, taken: &mut BTreeSet<u32>) -> Result<u32, DataplaneError> {
        let content = &self.book.content;
        if let Some(block) = (0..LB_BLOCKS).find(|b| content[*b as usize].as_ref() == Some(slots)) {
            taken.insert(block);
            return Ok(block);
        }
        // Blocks never written first, then the others nobody keeps.
        let free = (0..LB_BLOCKS)
            .filter(|b| !taken.contains(b))
            .min_by_key(|b| content[*b as usize].is_some())
            .ok_or(DataplaneError::SlotTablesFull {
                wanted: taken.len() + 1,
                blocks: LB_BLOCKS,
            })?;
        // Forget the old content first: a failed write leaves the block unknown.
        self.book.content[free as usize] = None;
        self.set_lb_block(free, slots)?;
        self.book.content[free as usize] = Some(slots.clone());
        taken.insert(free);
        Ok(free)
    }
}

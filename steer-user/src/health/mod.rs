//! WAN health: the probes sent through each WAN (`probe`) and the up/down state machine fed by
//! probe rounds, link events and manual overrides (`tracker`).

pub mod probe;
pub mod tracker;

pub use tracker::{Override, RoundSummary, Tracker, Transition};

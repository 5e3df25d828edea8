//! WAN health: probes, link events and the up/down state machine.

pub mod probe;

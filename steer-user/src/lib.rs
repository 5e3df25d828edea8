//! steer: eBPF fast-path traffic steering for multi-WAN Linux routers.
//!
//! One module per concern, in layers; a module only uses the ones below it:
//!
//! - bottom: [`prefix`] (networks and strict address parsing), [`model`] (the vocabulary the
//!   others share: directions, the four prefix maps, capacities, rules, prefix sets, the policy
//!   table), [`status`] (the typed status document and report lines), [`shown`] (input values
//!   as messages show them: escaped and bounded);
//! - [`config`]: the configuration file, parsed and fully validated, one file per section;
//! - [`sets`] (sets -> rule ids and prefix-map contents) and [`policy`] (policies + WAN states
//!   -> what each rule stamps);
//! - kernel and system I/O, each owning its own state: [`dataplane`] (programs, maps and their
//!   write order), [`routing`] (rules and per-WAN tables over rtnetlink), [`conntrack`]
//!   (connection marking and flushes), [`wan_sources`] (IPv6 sources on the WANs: NPTv6,
//!   NAT66 and the foreign-source guard, chains of the same table), [`health`] (probes and the up/down state machines),
//!   [`vrrp`] (the HA pair: VRRPv3 speakers, keepalived's fifo, the takeover steps' pieces);
//! - [`dns`]: domain sets, a pure core (messages, matching, rebinding, lifetimes) and the
//!   forwarder and snooper around it, which learn through the controller's learner;
//! - [`controller`]: the one owner of every kernel change, computing the desired state and
//!   reconciling;
//! - [`daemon`] (the event loop: events -> controller calls; [`instance`], one daemon per
//!   network namespace; [`notify`], readiness for the service manager), [`control`] (the socket protocol
//!   and metrics endpoint), [`cli`] (the commands; `main` is a thin wrapper over it).
//!
//! [`kernel`] probes the running kernel for what steer needs (`steer check --kernel`), and
//! [`capabilities`] the process for the capabilities `steer run` and `steer stop` need;
//! [`memory_limit`] reads the memory cgroup limit steer runs under and what it needs.
//! [`packet`] builds synthetic frames (explain, tests, benchmarks); [`objects`] embeds the eBPF
//! objects.
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod controller;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod health;
pub mod heap;
pub mod import;
pub mod instance;
pub mod journal;
pub mod kernel;
pub mod memory_limit;
pub mod model;
pub mod netns;
pub mod notify;
pub mod objects;
pub mod packet;
pub mod policy;
pub mod prefix;
pub mod routing;
pub mod runtime_sets;
pub mod sets;
pub mod shown;
pub mod state_file;
pub mod status;
pub mod tool;
pub mod vrrp;
pub mod wan_sources;

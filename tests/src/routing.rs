//! steer's own policy routing in the lab's router, without the daemon: the desired per-WAN
//! tables and fwmark rules of the lab's two WANs, and a [`Routing`] to reconcile them with.
//! Tests of the routing module use it, and so do tests that need WAN traffic to leave by its
//! WAN the way steer makes it (the probes).

use steer::{
    config::NextHop,
    routing::{self, Desired, Gateway, Routing},
};

use crate::{daemon::Workdir, lab::Lab, scenario::lab_wans};

/// A configuration with the lab's two WANs ([`lab_wans`]) and nothing else.
pub fn lab_config() -> String {
    let track = "targets = [\"192.0.2.1\"]";
    format!(
        "[general]\nlan = [\"lan0\"]\nmark_mask = 0xff00\n\n{}",
        lab_wans(track, track)
    )
}

/// The routing steer wants for the configuration `text`, with the next hops it configures
/// (a family left on `auto` gets no route: there is no system to learn from here).
pub fn desired_from(text: &str) -> Desired {
    let work = Workdir::new("routing");
    let config = work.load_config(text);
    routing::desired(
        &config,
        |wan, family| match config.wan(wan)?.next_hop(family) {
            NextHop::Via(a) => Some(Gateway::Via(a)),
            NextHop::Direct => Some(Gateway::Direct),
            NextHop::Auto => None,
        },
        |wan| config.wan(wan)?.prefix6?.fixed(),
    )
}

/// The routing steer wants for the lab's two WANs ([`lab_config`]).
pub fn lab_desired() -> Desired {
    desired_from(&lab_config())
}

/// Runs `f` with a fresh [`Routing`] on a current-thread runtime in the router namespace.
pub fn with_routing<R: Send>(lab: &Lab, f: impl AsyncFnOnce(&Routing) -> R + Send) -> R {
    lab.router.block_on(|| async {
        let routing = Routing::new().expect("routing");
        f(&routing).await
    })
}

/// Installs steer's tables and rules for the lab's two WANs in the router, as the daemon would;
/// panics naming every item that failed.
pub fn install(lab: &Lab) {
    let desired = lab_desired();
    let report = with_routing(lab, async |rt| rt.reconcile(&desired).await);
    assert!(
        report.failures.is_empty(),
        "lab routing: reconcile failed: {:#?}",
        report.failures
    );
}

//! The daemon's DNS services — the forwarder and the snooper — started with the configuration
//! and restarted when a reload changes what they need (and only then: a reload that touches
//! only the sets keeps every socket).

use std::{sync::Arc, time::Duration};

use socket2::Type;

use super::{
    Learn,
    forwarder::{self, Forwarder, Settings},
    snoop::{BoundQueue, Snooper},
};
use crate::{config::Config, status::ReportLine};

/// The running forwarder and snooper, if configured.
#[derive(Debug, Default)]
pub struct Services {
    forwarder: Option<Forwarder>,
    snooper: Option<Snooper>,
    /// Sockets [`Services::bind`] bound, served by the first [`Services::sync`].
    bound: Option<forwarder::Bound>,
    bound_queue: Option<BoundQueue>,
}

fn snoop_queue(config: &Config) -> Option<u16> {
    config
        .dns
        .as_ref()
        .filter(|d| d.snoop)
        .map(|d| d.snoop_queue)
}

fn settings(config: &Config) -> Option<Settings> {
    let d = config.dns.as_ref().filter(|d| d.forward)?;
    Some(Settings {
        listen: d.listen.clone(),
        upstreams: d.upstreams.clone(),
        timeout: Duration::from_millis(u64::from(d.timeout_ms)),
        block_application_dns: d.block_application_dns,
    })
}

impl Services {
    /// Binds what `config`'s services listen on (the forwarder's addresses and upstream
    /// sockets, the snoop queue) without serving yet. The daemon calls it before it changes
    /// anything, so a listen address or queue that is taken refuses it with the system
    /// untouched; the first [`Services::sync`] serves these sockets.
    pub fn bind(config: &Config) -> Result<Services, String> {
        let bound = settings(config)
            .map(Forwarder::bind)
            .transpose()
            .map_err(|e| e.to_string())?;
        let bound_queue = snoop_queue(config)
            .map(Snooper::bind)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Services {
            bound,
            bound_queue,
            ..Services::default()
        })
    }

    /// Binds, ahead of a reload to `config`, what its services would listen on that the
    /// running ones do not hold: a listen address or a snoop queue that is taken refuses the
    /// reload before anything changes, as it refuses a start. A forwarder that keeps some of
    /// its addresses cannot bind them twice: the new ones are tried and let go (the first
    /// [`Services::sync`] binds them again), the others are already its own.
    pub fn prepare(&mut self, config: &Config) -> Result<(), String> {
        self.release();
        let running = self.forwarder.as_ref().map(|f| &f.settings);
        if let Some(want) = settings(config).filter(|s| Some(s) != running) {
            let held = running.map_or(&[][..], |r| &r.listen[..]);
            if held.iter().all(|a| !want.listen.contains(a)) {
                self.bound = Some(Forwarder::bind(want).map_err(|e| e.to_string())?);
            } else {
                for addr in want.listen.iter().filter(|a| !held.contains(a)) {
                    for (kind, what) in [(Type::DGRAM, "UDP"), (Type::STREAM, "TCP")] {
                        forwarder::bind(*addr, kind)
                            .map_err(|e| format!("dns forwarder: bind {what} {addr}: {e}"))?;
                    }
                }
            }
        }
        let queue = snoop_queue(config);
        if queue.is_some() && self.snooper.as_ref().map(|s| s.queue) != queue {
            self.bound_queue = queue
                .map(Snooper::bind)
                .transpose()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Lets go of what [`Services::prepare`] bound (the reload did not happen).
    pub fn release(&mut self) {
        self.bound = None;
        self.bound_queue = None;
    }

    /// Brings the services in line with `config`. Error lines say what could not be started
    /// (a listen address taken, no NFQUEUE support); a forwarder that cannot start with new
    /// settings is started again with the ones it had.
    pub fn sync(&mut self, config: &Config, learner: Arc<dyn Learn>) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let want = settings(config);
        if self.forwarder.as_ref().map(|f| &f.settings) != want.as_ref() {
            let old = self.forwarder.take().map(|f| f.settings.clone());
            if let Some(s) = want {
                let started = match self.bound.take().filter(|b| b.settings == s) {
                    Some(bound) => bound.start(Arc::clone(&learner)),
                    None => Forwarder::start(s.clone(), Arc::clone(&learner)),
                };
                match started {
                    Ok(f) => {
                        lines.push(ReportLine::info(format!(
                            "dns forwarder: listening on {} (UDP and TCP), upstreams {}",
                            list(&s.listen),
                            list(&s.upstreams)
                        )));
                        self.forwarder = Some(f);
                    }
                    Err(e) => {
                        lines.push(ReportLine::error(e.to_string()));
                        if let Some(old) = old {
                            self.forwarder = Forwarder::start(old, Arc::clone(&learner)).ok();
                        }
                    }
                }
            } else if old.is_some() {
                lines.push(ReportLine::info("dns forwarder stopped"));
            }
        }
        // Sockets bound for another configuration are not kept.
        self.bound = None;
        let queue = snoop_queue(config);
        if self.snooper.as_ref().map(|s| s.queue) != queue {
            self.snooper = None;
            if let Some(q) = queue {
                let started = match self.bound_queue.take().filter(|b| b.queue == q) {
                    Some(bound) => bound.start(learner),
                    None => Snooper::start(q, learner),
                };
                match started {
                    Ok(s) => {
                        lines.push(ReportLine::info(format!(
                            "dns snoop: answers to {} are learned from NFQUEUE {q} before they pass, each when it replies to a query copied to NFLOG group {q}",
                            config.general.lan.join(", ")
                        )));
                        self.snooper = Some(s);
                    }
                    Err(e) => lines.push(ReportLine::error(e.to_string())),
                }
            }
        }
        self.bound_queue = None;
        lines
    }
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    v.join(", ")
}

//! The daemon's DNS services — the forwarder and the snooper — started with the configuration
//! and restarted when a reload changes what they need (and only then: a reload that touches
//! only the sets keeps every socket).

use std::{sync::Arc, time::Duration};

use super::{
    Learn,
    forwarder::{Forwarder, Settings},
    snoop::Snooper,
};
use crate::{config::Config, status::ReportLine};

/// The running forwarder and snooper, if configured.
#[derive(Debug, Default)]
pub struct Services {
    forwarder: Option<Forwarder>,
    snooper: Option<Snooper>,
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
    /// Brings the services in line with `config`. Error lines say what could not be started
    /// (a listen address taken, no NFQUEUE support); a forwarder that cannot start with new
    /// settings is started again with the ones it had.
    pub fn sync(&mut self, config: &Config, learner: Arc<dyn Learn>) -> Vec<ReportLine> {
        let mut lines = Vec::new();
        let want = settings(config);
        if self.forwarder.as_ref().map(|f| &f.settings) != want.as_ref() {
            let old = self.forwarder.take().map(|f| f.settings.clone());
            if let Some(s) = want {
                match Forwarder::start(s.clone(), Arc::clone(&learner)) {
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
        let queue = config
            .dns
            .as_ref()
            .filter(|d| d.snoop)
            .map(|d| d.snoop_queue);
        if self.snooper.as_ref().map(|s| s.queue) != queue {
            self.snooper = None;
            if let Some(q) = queue {
                match Snooper::start(q, learner) {
                    Ok(s) => {
                        lines.push(ReportLine::info(format!(
                            "dns snoop: answers to {} are learned from NFQUEUE {q} before they pass",
                            config.general.lan.join(", ")
                        )));
                        self.snooper = Some(s);
                    }
                    Err(e) => lines.push(ReportLine::error(e.to_string())),
                }
            }
        }
        lines
    }
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    v.join(", ")
}

//! `steer run`: the controller in a foreground event loop. Events (control requests, SIGHUP,
//! SIGTERM/SIGINT, kernel log records) are handled one at a time by the single task that owns
//! the controller, so no state is shared and nothing needs a lock.
//!
//! Stopping the daemon (SIGTERM, SIGINT) leaves the pinned classifier running with its last
//! state, so a restart or an upgrade never interrupts steering; `steer stop` removes it.

use std::{path::Path, time::Duration};

use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    config::{self, ConfigErrors},
    control::{self, Call, Request, Response, ServerOptions},
    controller::{Controller, ControllerError},
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("cannot start the event loop: {0}")]
    Runtime(#[from] std::io::Error),
}

/// How the event loop ended.
enum Exit {
    /// Signal: leave the classifier running.
    Leave,
    /// `steer stop`: tear everything down.
    Stop(tokio::sync::oneshot::Sender<Response>),
}

/// Runs the daemon until a signal or `steer stop`.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: config::Config) -> Result<(), DaemonError> {
    let (mut ctl, report) = Controller::start(config)?;
    for line in report.lines() {
        log::info!("{line}");
    }
    let (calls_tx, mut calls) = mpsc::channel::<Call>(32);
    let server = control::serve(ServerOptions::new(ctl.socket()), calls_tx)?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut kernel_log = match ctl.dataplane().logger() {
        // SAFETY: the logger owns its ring buffer's descriptor and keeps it open, unchanged,
        // for as long as the AsyncFd holds the logger.
        Ok(l) => Some(
            unsafe { AsyncFd::register(l) }.map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        Err(e) => {
            log::warn!("kernel-side log unavailable: {e}");
            None
        }
    };
    log::info!("steer running: control socket {}", server.path().display());

    let exit = loop {
        tokio::select! {
            Some(call) = calls.recv() => {
                if call.request == Request::Stop {
                    break Exit::Stop(call.reply);
                }
                let response = handle(&mut ctl, call.request);
                let _ = call.reply.send(response);
            }
            _ = hup.recv() => {
                log::info!("SIGHUP: reloading {}", ctl.config().path.display());
                let _ = reload(&mut ctl);
            }
            _ = term.recv() => break Exit::Leave,
            _ = int.recv() => break Exit::Leave,
            ready = readable(&mut kernel_log) => {
                if let Ok(mut guard) = ready {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
        }
    };
    server.shutdown().await;
    match exit {
        Exit::Leave => {
            log::info!(
                "stopping the daemon; the classifier keeps running with its last state (`steer stop` removes it)"
            );
            Ok(())
        }
        Exit::Stop(reply) => {
            let result = ctl.teardown();
            let response = match &result {
                Ok(n) => Response::ok(serde_json::json!({ "removed_pins": n })),
                Err(e) => Response::error(format!("stopping failed: {e}")),
            };
            let _ = reply.send(response);
            // Give the reply a moment to leave before the runtime goes away.
            tokio::time::sleep(Duration::from_millis(50)).await;
            log::info!("stopped: classifier detached and pinned state removed");
            result.map(|_| ()).map_err(DaemonError::from)
        }
    }
}

async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

fn handle(ctl: &mut Controller, request: Request) -> Response {
    match request {
        Request::Status => Response::ok(ctl.status()),
        Request::Reload => match reload(ctl) {
            Ok(lines) => Response::ok(serde_json::json!({ "changes": lines })),
            Err(e) => Response::error(e),
        },
        Request::Wan { name, .. } => Response::error(format!(
            "manual WAN control is not available in this build (WAN `{name}`)"
        )),
        Request::Stop => unreachable!("handled by the event loop"),
    }
}

/// Reloads and logs the outcome; an invalid configuration keeps the running one.
fn reload(ctl: &mut Controller) -> Result<Vec<String>, String> {
    match ctl.reload() {
        Ok(report) => {
            let lines = report.lines();
            for line in &lines {
                log::info!("reload: {line}");
            }
            Ok(lines)
        }
        Err(e) => {
            let msg = format!("reload refused, still running the previous configuration:\n{e}");
            log::error!("{msg}");
            Err(msg)
        }
    }
}

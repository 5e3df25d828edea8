//! The `steer` command line: parsing and the commands. `main` is a thin wrapper around
//! [`run`].

mod dns;
mod dump;
mod explain;
mod generate;
mod import;
mod output;
mod set;
mod vrrp;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    config::{self, DEFAULT_PIN_DIR, DEFAULT_SOCKET},
    control::{self, Request, WanMode},
    controller::{self, TeardownError},
    dataplane,
    model::footprint::Bytes,
    status::{ReportLine, Status},
};
use output::{out, outln};

pub use dump::{Section, dump};
pub use explain::{Explanation, Probe, Proto, explain};
pub use generate::{Shell, color_choice, completions, manpages};

/// `steer --version`: the package version and the git commit it was built from (the build
/// script reads it; `unknown revision` for a build outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("STEER_REVISION"), ")");

#[derive(Parser, Debug)]
#[command(
    name = "steer",
    version = VERSION,
    about = "eBPF traffic steering for multi-WAN routers",
    long_about = "steer classifies every packet from the LAN in the kernel (TC/XDP, range tables) and \
                  stamps the mark of the WAN that should carry it; policy routing sends it there. \
                  `steer run` is the daemon; the other commands inspect and control it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where to find a running steer: its configuration (which names the socket and pin directory)
/// or the paths themselves.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Configuration file to take the socket, pin directory and WAN tables from (nothing else
    /// in it is read or checked).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Pin directory of the classifier's maps.
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground: load, attach, sync the sets, serve the control socket.
    /// SIGHUP reloads; SIGTERM/SIGINT stop the daemon but leave the classifier running.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration and its list files; every error is listed (exit 0 or 1).
    /// With --kernel, also check that this kernel has what steer needs.
    Check {
        /// The configuration file to check (required unless --kernel alone is wanted).
        #[arg(short, long, value_name = "FILE", required_unless_present = "kernel")]
        config: Option<PathBuf>,
        /// Probe the running kernel (BPF maps, tcx, JIT, bpffs); every missing piece is named
        /// with its kernel option.
        #[arg(long)]
        kernel: bool,
    },
    /// Show the daemon's state: WANs, policies, sets, attachments, last change.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what the kernel holds, read straight from the pinned maps (works while the daemon
    /// is down).
    Dump {
        /// What to show.
        #[arg(value_enum, default_value = "all")]
        what: Section,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Run the real classifier on a synthetic packet against the live maps and say where it
    /// goes and why.
    Explain {
        #[command(flatten)]
        probe: Probe,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration; an invalid one keeps the running one and says why.
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Force a WAN up or down, or give it back to health tracking (`auto`); or hand in its
    /// gateway from a DHCP client hook (`gateway ADDR`, `gateway auto` to go back to what the
    /// system's routes say, `auto4` or `auto6` for one family), or its delegated IPv6 prefix
    /// from a DHCPv6 client hook
    /// (`prefix6 PREFIX`, `prefix6 auto`).
    Wan {
        /// The WAN's name; with `gateway` and `prefix6` also its interface (what a DHCP hook
        /// knows).
        name: String,
        #[arg(value_enum)]
        mode: ModeArg,
        /// With `gateway`: the next hop (IPv4 or IPv6), or `auto`; with `prefix6`: the
        /// delegated prefix, or `auto`.
        value: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Add or delete prefixes of a configured set at runtime, like `ipset add`/`del`: applied
    /// at once, kept apart from the configured prefixes, kept across reloads and daemon
    /// restarts (not reboots); `--timeout` removes them again. `list` shows them.
    Set {
        /// The set's name.
        name: String,
        #[arg(value_enum)]
        op: set::SetOpArg,
        /// Prefixes or addresses (as in list files).
        #[arg(value_name = "PREFIX")]
        prefixes: Vec<String>,
        /// With `add`: remove the entries again after this long (600, 90s, 10m, 12h, 7d).
        #[arg(long, value_name = "TIME")]
        timeout: Option<String>,
        /// Read prefixes from FILE (list-file format; `-` for standard input) as well.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// With `list`: print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the steer configuration that does what an mwan3 or omr-bypass configuration
    /// does; what cannot be expressed is listed on stderr with its file:line (and as comments).
    Import {
        /// What the file is.
        #[arg(value_enum)]
        from: import::From,
        /// The UCI file (/etc/config/mwan3, /etc/config/omr-bypass).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// OpenWrt's network configuration, to name each interface's device (eth1, pppoe-wan).
        #[arg(long, value_name = "FILE")]
        network: Option<PathBuf>,
        /// The LAN interfaces steer classifies (general.lan).
        #[arg(long, value_name = "IFACE", default_value = "br-lan")]
        lan: Vec<String>,
    },
    /// Stop steering: detach the classifier and remove all pinned state (the daemon too, if it
    /// runs). Safe to repeat.
    Stop {
        #[command(flatten)]
        target: Target,
    },
    /// Print the completion script for a shell on stdout (e.g. `steer completions bash >
    /// /usr/share/bash-completion/completions/steer`).
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages, steer.1 and steer-<command>.1, into DIR (created if missing).
    Manpages {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    Up,
    Down,
    Auto,
    Gateway,
    Prefix6,
}

impl ModeArg {
    /// The request for `steer wan NAME <mode> [value]`, or what is wrong with the words.
    fn request(self, name: String, value: Option<String>) -> Result<Request, CliError> {
        let mode = match (self, value) {
            (ModeArg::Gateway, Some(v)) => return gateway_request(name, &v),
            (ModeArg::Gateway, None) => {
                return Err(CliError::Refused(
                    "`steer wan NAME gateway` needs the next hop (e.g. 100.64.1.1) or `auto`"
                        .into(),
                ));
            }
            (ModeArg::Prefix6, Some(v)) => return prefix6_request(name, &v),
            (ModeArg::Prefix6, None) => {
                return Err(CliError::Refused(
                    "`steer wan NAME prefix6` needs the delegated prefix (e.g. 2001:db8:1::/56) \
                     or `auto`"
                        .into(),
                ));
            }
            (_, Some(v)) => {
                return Err(CliError::Refused(format!(
                    "unexpected `{v}`: only `steer wan NAME gateway` and `prefix6` take a value"
                )));
            }
            (ModeArg::Up, None) => WanMode::Up,
            (ModeArg::Down, None) => WanMode::Down,
            (ModeArg::Auto, None) => WanMode::Auto,
        };
        Ok(Request::Wan { name, mode })
    }
}

/// `steer wan NAME prefix6 PREFIX|auto`, checked like a configured `prefix6`.
fn prefix6_request(name: String, value: &str) -> Result<Request, CliError> {
    if value == "auto" {
        return Ok(Request::Prefix6 { name, prefix: None });
    }
    crate::wan_sources::learn::parse_hooked(value)
        .map(|p| Request::Prefix6 {
            name,
            prefix: Some(p.to_string()),
        })
        .map_err(|e| CliError::Refused(e.to_string()))
}

/// `steer wan NAME gateway ADDR|auto|auto4|auto6`, checked like a configured gateway; `auto4`
/// and `auto6` give back one family's (a DHCPv4 hook's lost lease leaves IPv6 as it is).
fn gateway_request(name: String, value: &str) -> Result<Request, CliError> {
    let family = match value {
        "auto" => None,
        "auto4" => Some("ipv4"),
        "auto6" => Some("ipv6"),
        _ => {
            return match crate::prefix::parse_addr(value) {
                Ok(a) if crate::prefix::is_unicast(a) => Ok(Request::Gateway {
                    name,
                    gateway: Some(a),
                    family: None,
                }),
                Ok(a) => Err(CliError::Refused(format!(
                    "{a} cannot be a gateway: give the address of the next-hop router on this WAN"
                ))),
                Err(crate::prefix::AddrError::Name { .. }) => Err(CliError::Refused(format!(
                    "gateway `{}` is not an address: give the next hop's address (the lease's \
                     router), or `auto`, `auto4`, `auto6` to go back to what the system says",
                    crate::shown::shown(value)
                ))),
                Err(e) => Err(CliError::Refused(format!(
                    "gateway `{value}`: {}; {} (or `auto`, `auto4`, `auto6`: back to what the \
                     system says)",
                    e.message(),
                    e.hint()
                ))),
            };
        }
    };
    Ok(Request::Gateway {
        name,
        gateway: None,
        family: family.map(str::to_owned),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigErrors),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Dataplane(#[from] dataplane::DataplaneError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    #[error("{0}")]
    Refused(String),
    /// `steer set --file` names something that is not a readable list-sized regular file.
    #[error("cannot read --file {}: {error}; {}", path.display(), error.hint())]
    SetFile {
        path: PathBuf,
        error: config::ReadError,
    },
    /// `steer import` names something that is not a readable regular file of a sensible size.
    #[error("cannot read {}: {error}; {}", path.display(), import_hint(error))]
    ImportFile {
        path: PathBuf,
        error: config::ReadError,
    },
    /// `steer set --file -` was given more than a list file may hold.
    #[error(
        "standard input holds more than the {limit} bytes a list file may have; split the \
         prefixes into several edits"
    )]
    StdinTooBig { limit: u64 },
    /// The source is printed after the message by the binary (`{:#}`).
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do about an `steer import` file that cannot be read.
fn import_hint(error: &config::ReadError) -> &'static str {
    match error {
        config::ReadError::TooBig { .. } => {
            "give the UCI file itself (/etc/config/mwan3, /etc/config/omr-bypass, \
             /etc/config/network): those are far smaller"
        }
        e => e.hint(),
    }
}

/// Socket, pin directory and WAN tables of the steer a command talks to.
struct Resolved {
    socket: PathBuf,
    pin_dir: PathBuf,
    /// Where `pin_dir` came from (`-c FILE`'s general.pin_dir, `--pin-dir`); `None` when it
    /// is the default, which says nothing about which daemon is meant.
    pin_dir_from: Option<String>,
    /// Routing tables of the WANs (known only with `-c`).
    tables: Vec<u32>,
    /// The `-c` file the socket was read from (not given with `--socket`).
    config: Option<PathBuf>,
    /// The daemon on the socket was found to be the one meant ([`Resolved::check_daemon`]),
    /// so the requests of a long `steer set` edit ask once.
    checked: std::cell::Cell<bool>,
}

impl Resolved {
    /// Sends `request` to the daemon. A daemon not found at the socket a `-c` file gave is
    /// named with that file: a file cut short before its `[control]` table gives the default
    /// socket, and "not running" alone hides why another daemon was asked. A request that
    /// changes state goes only to the daemon of the pin directory given
    /// ([`Resolved::check_daemon`]).
    fn call(&self, request: &Request) -> Result<control::Response, CliError> {
        if changes_state(request) {
            self.check_daemon()?;
        }
        control::call(&self.socket, request, TIMEOUT).map_err(|e| self.not_answering(e))
    }

    /// The error of a daemon that does not answer, with what the CLI can tell without it: a
    /// daemon of this namespace whose socket was removed, and the state the last daemon left.
    fn not_answering(&self, e: control::ControlError) -> CliError {
        if !matches!(
            e,
            control::ControlError::NotRunning { .. } | control::ControlError::NotListening { .. }
        ) {
            return e.into();
        }
        if let Some(here) = daemon_here(&self.socket) {
            return CliError::Refused(here);
        }
        let mut text = match &self.config {
            Some(config) => format!(
                "steer is not running at {} (the socket {config} gives: its `[control] socket`, \
                 or the default when it sets none); start it with `steer run -c {config}`",
                self.socket.display(),
                config = config.display()
            ),
            None => e.to_string(),
        };
        if let Some(left) = left_in_kernel(&self.pin_dir) {
            text.push('\n');
            text.push_str(&left);
        }
        CliError::Refused(text)
    }

    /// Refuses to go on when the daemon answering on the socket runs another pin directory
    /// than the one given (`-c`'s general.pin_dir, `--pin-dir`): two routers (network
    /// namespaces) given the same socket path reach whichever daemon bound it last, and a
    /// `steer stop -c A` must not stop B's. A daemon that does not answer is let be: the
    /// request itself says so.
    fn check_daemon(&self) -> Result<(), CliError> {
        let Some(from) = &self.pin_dir_from else {
            return Ok(());
        };
        if self.checked.get() {
            return Ok(());
        }
        let Some((theirs, config)) = self.daemon_pin_dir() else {
            return Ok(());
        };
        if !self.same_daemon(&theirs, &config) {
            return Err(CliError::Refused(format!(
                "the steer daemon answering on {} is not the one of {from}: it runs {} with \
                 pin_dir {}, not {} (another router's daemon on the same socket path, or \
                 another configuration); nothing was sent to it. Give each router its own \
                 `[control] socket`, or name the daemon meant by its own configuration",
                self.socket.display(),
                config.display(),
                theirs.display(),
                self.pin_dir.display()
            )));
        }
        self.checked.set(true);
        Ok(())
    }

    /// Whether a daemon running `config` with `pin_dir` is the one meant: the same pin
    /// directory, or the very file given with `-c` (whose pin_dir was edited since the daemon
    /// started: a reload says what that takes).
    fn same_daemon(&self, pin_dir: &Path, config: &Path) -> bool {
        same_path(pin_dir, &self.pin_dir)
            || self
                .config
                .as_deref()
                .is_some_and(|given| config.is_absolute() && same_path(given, config))
    }

    /// The pin directory and configuration of the daemon answering on the socket.
    fn daemon_pin_dir(&self) -> Option<(PathBuf, PathBuf)> {
        let response = control::call(&self.socket, &Request::Status, CHECK_TIMEOUT).ok()?;
        let body = response.ok.then_some(response.body)?;
        Some((
            PathBuf::from(body["pin_dir"].as_str()?),
            PathBuf::from(body["config"].as_str().unwrap_or("-")),
        ))
    }

    /// A warning when the daemon that answered (`status`) runs another pin directory than the
    /// one given: what it shows is another router's or configuration's.
    fn other_daemon(&self, pin_dir: &Path, config: &Path) -> Option<String> {
        let from = self.pin_dir_from.as_ref()?;
        (!self.same_daemon(pin_dir, config)).then(|| {
            format!(
                "the daemon answering on {} is not the one of {from}: it runs {} with pin_dir \
                 {}, not {}",
                self.socket.display(),
                config.display(),
                pin_dir.display(),
                self.pin_dir.display()
            )
        })
    }
}

/// Whether `request` changes the daemon's state (and so must reach the daemon meant).
fn changes_state(request: &Request) -> bool {
    match request {
        Request::Status => false,
        Request::Set { op, .. } => *op != control::proto::SetOp::List,
        Request::Reload
        | Request::Stop
        | Request::Wan { .. }
        | Request::Gateway { .. }
        | Request::Prefix6 { .. } => true,
    }
}

/// Whether two paths name the same file (compared as written when either cannot be resolved).
fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A daemon that holds this network namespace but does not answer on `socket`: its socket
/// file was removed (it still listens on the path, which nobody can reach any more), or it
/// runs with another socket. `None` when no daemon runs here.
fn daemon_here(socket: &Path) -> Option<String> {
    let pid = crate::instance::holder()?;
    let pid_text = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    Some(if !socket.exists() && listening_at(socket) {
        format!(
            "a steer daemon{pid_text} runs in this network namespace, but its control socket \
             {} was removed (by hand, or a cleanup of its directory): no command can reach it. \
             Steering goes on, and the daemon makes its socket again at its next periodic \
             check (within 10 s). If it does not (its log says why), restart the daemon (its \
             service: `systemctl restart steer` or `/etc/init.d/steer restart`; or stop it{} and \
             start it again with `steer run -c FILE`: the classifier stays in place meanwhile)",
            socket.display(),
            pid.map(|p| format!(" with `kill {p}`")).unwrap_or_default()
        )
    } else {
        format!(
            "a steer daemon{pid_text} runs in this network namespace but not on {}: give its \
             configuration with -c, or its socket with --socket",
            socket.display()
        )
    })
}

/// Whether a socket of this network namespace listens at `path` (`/proc/self/net/unix` keeps
/// the path a socket was bound to after its file is gone).
fn listening_at(path: &Path) -> bool {
    // __SO_ACCEPTCON in the Flags column: a listening socket.
    const LISTENING: u32 = 0x0001_0000;
    let Ok(table) = std::fs::read_to_string("/proc/self/net/unix") else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & LISTENING != 0)
            && Path::new(fields[7]) == path
    })
}

/// What still steers with no daemon: the last daemon's classifier and routing, pinned under
/// `pin_dir`, follow its last policy with nobody to watch the WANs. `None` when nothing is
/// pinned there (or it cannot be read), or when another namespace's steer pinned it.
fn left_in_kernel(pin_dir: &Path) -> Option<String> {
    use dataplane::pin::{self, LinkKind};
    if !pin::map_path(pin_dir, steer_common::map_names::POLICY).exists() {
        return None;
    }
    let owner = dataplane::pin_owner::recorded_owner(pin_dir).ok()?;
    let here = crate::netns::this_namespace();
    if owner.is_some_and(|o| here.is_ok_and(|here| !crate::netns::same_namespace(o, here))) {
        return None;
    }
    let lan = pin::linked_interfaces(pin_dir, LinkKind::Tc).unwrap_or_default();
    let attached = if lan.is_empty() {
        "attached to no interface".to_owned()
    } else {
        format!("attached to {}", lan.join(", "))
    };
    Some(format!(
        "the last daemon's classifier ({attached}; pinned at {}) and its routing are still in \
         place: packets follow its last policy, with no health checks and no failover until a \
         daemon runs again (`steer stop` removes them)",
        pin_dir.display()
    ))
}

impl Target {
    /// Reads from `-c` only what these commands need (not the list files, not the rest of the
    /// file): stopping or inspecting a steer must not depend on its sets being valid.
    fn resolve(&self) -> Result<Resolved, CliError> {
        let from_config = match &self.config {
            Some(path) => Some(config::load_endpoints(path)?),
            None => None,
        };
        let pin_dir_from = match (&self.pin_dir, &self.config) {
            (Some(_), _) => Some("--pin-dir".to_owned()),
            (None, Some(config)) => Some(format!("-c {}", config.display())),
            (None, None) => None,
        };
        Ok(Resolved {
            socket: self
                .socket
                .clone()
                .or_else(|| from_config.as_ref().map(|c| c.socket.clone()))
                .unwrap_or_else(|| DEFAULT_SOCKET.into()),
            pin_dir_from,
            checked: std::cell::Cell::new(false),
            pin_dir: self
                .pin_dir
                .clone()
                .or_else(|| from_config.as_ref().map(|c| c.pin_dir.clone()))
                .unwrap_or_else(|| DEFAULT_PIN_DIR.into()),
            tables: from_config.map(|c| c.tables).unwrap_or_default(),
            config: self.config.clone().filter(|_| self.socket.is_none()),
        })
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the check of which daemon answers waits: one that does not answer by then is not
/// told apart (the request itself then finds it busy or gone).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::shown::error_text;

/// Runs one command; the exit code is 0 on success, 1 when the command reports a failure.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run { config } => {
            crate::daemon::run(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, kernel } => {
            let kernel_ok = !kernel || check_kernel();
            let config_ok = match config {
                Some(path) => check(&path)? == ExitCode::SUCCESS,
                None => true,
            };
            Ok(if kernel_ok && config_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status { target, json } => {
            let body = request(&target, Request::Status)?;
            if let (Some(pin_dir), Some(config)) =
                (body["pin_dir"].as_str(), body["config"].as_str())
                && let Some(other) = target
                    .resolve()?
                    .other_daemon(Path::new(pin_dir), Path::new(config))
            {
                crate::errln!("warning: {other}");
            }
            if json {
                outln(&serde_json::to_string_pretty(&body).unwrap_or_default());
            } else {
                let status: Status = decode(&target, body)?;
                out(&render_status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dump { what, target, json } => {
            let r = target.resolve()?;
            let runtime = crate::runtime_sets::journal::read_known(&r.socket);
            out(&dump(&r.pin_dir, runtime.as_ref(), what, json)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            probe,
            target,
            json,
        } => {
            let resolved = target.resolve()?;
            let mut e = explain(&resolved.pin_dir, &probe)?.with_runtime(
                &crate::runtime_sets::journal::read(&resolved.socket),
                dataplane::learned::boottime_secs(),
            );
            // The maps alone answer; the daemon adds the WAN states the verdict came from.
            // Without it the verdict is the state the last daemon left, frozen: say so.
            let asked = control::call(&resolved.socket, &Request::Status, TIMEOUT)
                .map_err(CliError::from)
                .and_then(|answer| match answer.ok {
                    true => decode::<Status>(&target, answer.body),
                    false => Err(CliError::Refused(answer.error.unwrap_or_default())),
                });
            match asked {
                Ok(status) => match resolved.other_daemon(&status.pin_dir, &status.config) {
                    Some(other) => {
                        e = e.with_daemon_note(format!("{other}: its WAN states are not shown"));
                    }
                    None => {
                        e = e
                            .with_health(&status)
                            .with_sources(&status)
                            .with_main_route(&status)
                            .with_local_route(&status);
                    }
                },
                Err(CliError::Control(control::ControlError::PermissionDenied { .. })) => {
                    // Not root: the maps were read, the daemon may not be asked; no claim.
                }
                Err(err) => {
                    let why = match err {
                        CliError::Control(
                            control::ControlError::NotRunning { .. }
                            | control::ControlError::NotListening { .. },
                        ) => String::new(),
                        other => format!(" ({})", error_text(&other)),
                    };
                    e = e.with_daemon_note(match daemon_here(&resolved.socket) {
                        Some(here) => format!("{here}; its WAN states are not shown"),
                        None => format!(
                            "no steer daemon answers on {}{why}: WAN health unknown and \
                             failover frozen; this is the kernel state the last daemon left",
                            resolved.socket.display(),
                        ),
                    });
                }
            }
            if json {
                outln(&serde_json::to_string_pretty(&e.to_json()).unwrap_or_default());
            } else {
                out(&e.to_string());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { target } => {
            // A `-c` file that cannot be read as far as its socket: say that nothing changed.
            if let Err(CliError::Config(e)) = target.resolve() {
                return Err(CliError::Refused(format!(
                    "{e}\nnothing was reloaded: a running daemon keeps the configuration it has"
                )));
            }
            let mut body = request(&target, Request::Reload)?;
            let lines: Vec<ReportLine> = decode(&target, body["changes"].take())?;
            for line in lines {
                outln(&line.text);
            }
            note_another_file_reloaded(&target);
            Ok(ExitCode::SUCCESS)
        }
        Command::Wan {
            name,
            mode,
            value,
            target,
        } => {
            let body = request(&target, mode.request(name, value)?)?;
            if let Some(s) = body["message"].as_str() {
                outln(s);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Set {
            name,
            op,
            prefixes,
            timeout,
            file,
            json,
            target,
        } => {
            let args = set::SetArgs {
                name,
                op,
                prefixes,
                timeout: timeout.as_deref(),
                file: file.as_deref(),
                json,
            };
            set::run(args, &target)
        }
        Command::Import {
            from,
            file,
            network,
            lan,
        } => import::run(from, &file, network.as_ref(), lan),
        Command::Stop { target } => stop(&target),
        Command::Completions { shell } => {
            generate::print_completions(shell);
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => {
            for page in manpages(&dir)? {
                outln(&page.display().to_string());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A reload re-reads the file the daemon was started with: when `-c` named another one (the
/// same socket), say so rather than let "unchanged" read as if that file had been checked.
fn note_another_file_reloaded(target: &Target) {
    let Some(given) = target.config.as_ref() else {
        return;
    };
    let Ok(body) = request(target, Request::Status) else {
        return;
    };
    let Ok(status) = decode::<Status>(target, body) else {
        return;
    };
    // A relative path is the daemon's working directory's, unknown here.
    if status.config.is_relative() {
        return;
    }
    if !same_path(given, &status.config) {
        crate::errln!(
            "note: the daemon reloaded the file it runs, {}, not {} (start it with that one to \
             use it)",
            status.config.display(),
            given.display()
        );
    }
}

/// A typed answer body; a body that does not decode means the CLI and the daemon differ.
fn decode<T: serde::de::DeserializeOwned>(
    target: &Target,
    body: serde_json::Value,
) -> Result<T, CliError> {
    serde_json::from_value(body).map_err(|e| {
        let path = target
            .resolve()
            .map(|r| r.socket)
            .unwrap_or_else(|_| DEFAULT_SOCKET.into());
        CliError::Control(control::ControlError::BadResponse {
            path,
            detail: e.to_string(),
        })
    })
}

/// Sends a request and returns the body of a successful answer.
fn request(target: &Target, request: Request) -> Result<serde_json::Value, CliError> {
    let response = target.resolve()?.call(&request)?;
    if response.ok {
        Ok(response.body)
    } else {
        Err(CliError::Refused(response.error.unwrap_or_else(|| {
            "the daemon refused without a reason".into()
        })))
    }
}

fn check(path: &Path) -> Result<ExitCode, CliError> {
    let loaded = config::load(path);
    for wait in config::take_waits() {
        crate::errln!("note: {wait}");
    }
    match loaded {
        Ok(c) => {
            let prefixes: usize = c.sets.iter().map(|s| s.prefix_count()).sum();
            let domains: usize = c.sets.iter().map(|s| s.domains.len()).sum();
            if domains > 0 && c.dns.is_none() {
                crate::errln!(
                    "note: {domains} domain(s) are listed but there is no [dns] section: their \
                     addresses are not learned, so they are not steered"
                );
            }
            for note in config::notes(&c) {
                crate::errln!("note: {note}");
            }
            // Where check runs on the router: a LAN or WAN interface it does not have is
            // most likely a typo, which the file's checks cannot see.
            for note in config::interface_notes(&c) {
                crate::errln!("note: {note}");
            }
            // Likewise a probe target that is an address of this machine (a WAN's own).
            for note in config::own_address_notes(&c) {
                crate::errln!("note: {note}");
            }
            match vrrp_vips_here(&c) {
                Ok(notes) => notes.iter().for_each(|n| crate::errln!("note: {n}")),
                Err(clashes) => {
                    crate::errln!("{clashes}");
                    crate::errln!("{}: {} error(s)", path.display(), clashes.0.len());
                    return Ok(ExitCode::FAILURE);
                }
            }
            // And the WAN tables and marks against other software's rules and routes.
            match routing_here(&c) {
                Ok(notes) => notes.iter().for_each(|n| crate::errln!("note: {n}")),
                Err(in_use) => {
                    crate::errln!("{in_use}");
                    crate::errln!("{}: {} error(s)", path.display(), in_use.0.len());
                    return Ok(ExitCode::FAILURE);
                }
            }
            outln(&format!(
                "{}: OK: {} WAN(s), {} policies, {} set(s) with {prefixes} prefixes and {domains} domains, LAN {}",
                path.display(),
                c.wans.len(),
                c.policies.len(),
                c.sets.len(),
                c.general.lan.join(", ")
            ));
            outln(&memory_line(&c));
            if let Some(ipv6) = &c.ipv6 {
                let prefixes = crate::wan_sources::configured(&c.wans);
                let plan = crate::wan_sources::status(
                    ipv6,
                    &c.wans,
                    &prefixes,
                    &[],
                    Ok(Default::default()),
                );
                outln(render_ipv6(&plan).trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            crate::errln!("{errors}");
            crate::errln!(
                "{}: {} error(s); nothing was applied",
                path.display(),
                errors.count()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The WAN tables and marks against this machine's rules and routes
/// ([`crate::routing::check`]): a table another tool uses refuses the configuration.
fn routing_here(c: &config::Config) -> Result<Vec<String>, crate::routing::TablesInUse> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::routing::check(c)),
        Err(e) => Ok(vec![format!(
            "routing: the WAN tables were not checked: {e}"
        )]),
    }
}

/// The VIPs against the interfaces of this machine that the configuration names (the daemon
/// checks them again at start: `steer check` may run off the router, where they are missing).
fn vrrp_vips_here(c: &config::Config) -> Result<Vec<String>, crate::vrrp::vips::Clashes> {
    if c.vrrp.iter().all(|v| v.speaker().is_none()) {
        return Ok(Vec::new());
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::vrrp::vips::check(&c.path, &c.vrrp)),
        Err(e) => Ok(vec![format!("vrrp: the VIPs were not checked: {e}")]),
    }
}

/// The prefix sets' kernel memory, against `max_memory` when one is set.
fn memory_line(c: &config::Config) -> String {
    let f = c.set_footprint();
    let limit = c
        .general
        .capacity
        .memory
        .map_or("no max_memory set".into(), |m| {
            format!("max_memory {}", Bytes(m))
        });
    // The sets with conditions keep theirs in the conditions' tries, which are created at
    // their full size with the program: part of the floor, not of this estimate.
    let ordered: usize = c
        .sets
        .iter()
        .filter(|s| s.conditions.is_some())
        .map(|s| s.prefix_count())
        .sum();
    let conditions = if ordered > 0 {
        format!(
            "; the sets with conditions hold {ordered} more in the conditions' tries, of a \
             fixed size"
        )
    } else {
        String::new()
    };
    format!(
        "kernel memory of the sets: {} in force, {} at the peak of a reload; {limit} ({}{conditions})",
        Bytes(f.in_force()),
        Bytes(f.peak()),
        f.breakdown()
    )
}

/// Prints what the kernel probes found; false when something steer needs is missing.
fn check_kernel() -> bool {
    let findings = crate::kernel::probe();
    outln(&format!("kernel {}:", kernel_release()));
    for f in &findings {
        outln(&format!("  {f}"));
    }
    let missing = crate::kernel::any_missing(&findings);
    if missing {
        crate::errln!("the kernel lacks what steer needs (MISSING lines above)");
    }
    !missing
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "(release unknown)".into())
}

/// How long `steer stop` waits for a daemon that closed the connection or did not answer
/// (it was stopping already: procd's SIGTERM just before) to be gone.
const STOP_GONE: Duration = Duration::from_secs(15);
/// How long a daemon that removed its socket may take to exit (and let go of its lock).
const LOCK_GONE: Duration = Duration::from_secs(5);

/// Asks the daemon to stop; one that closes the connection without answering (it was
/// stopping already) or does not answer is asked again until it answers or is gone, so the
/// teardown below runs after all.
fn ask_to_stop(socket: &Path) -> Result<control::Response, control::ControlError> {
    let deadline = std::time::Instant::now() + STOP_GONE;
    loop {
        let timeout = deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_secs(1));
        match control::call(socket, &Request::Stop, timeout) {
            Err(control::ControlError::Closed { .. } | control::ControlError::Timeout { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            done => return done,
        }
    }
}

/// Refuses the CLI's own teardown while a daemon still holds this network namespace (it
/// answers on another socket than the one asked: the teardown would pull its rules and VIPs
/// from under it). A daemon that is exiting lets go within [`LOCK_GONE`].
fn refuse_beside_a_live_daemon(socket: &Path) -> Result<(), CliError> {
    let deadline = std::time::Instant::now() + LOCK_GONE;
    loop {
        if crate::instance::holder().is_none() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            let here = daemon_here(socket).unwrap_or_else(|| {
                "a steer daemon runs in this network namespace (it just let go)".to_owned()
            });
            return Err(CliError::Refused(format!("{here}; nothing was removed")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asks a running daemon to stop steering; without one, runs the same teardown itself.
fn stop(target: &Target) -> Result<ExitCode, CliError> {
    let r = target.resolve().map_err(|e| match e {
        // The file names where steering lives: without it, say how to give that instead.
        CliError::Config(e) => CliError::Refused(format!(
            "{e}\nnothing was stopped: fix the file, or give the running steer's paths with \
             --pin-dir and --socket (by default {DEFAULT_PIN_DIR} and {DEFAULT_SOCKET})"
        )),
        other => other,
    })?;
    // Another router's daemon on the same socket path is not to be stopped for this one.
    r.check_daemon()?;
    match ask_to_stop(&r.socket) {
        Ok(response) if response.ok => {
            outln("steer stopped: classifier detached, routing and pinned state removed");
            Ok(ExitCode::SUCCESS)
        }
        Ok(response) => Err(CliError::Refused(response.error.unwrap_or_default())),
        Err(
            e @ (control::ControlError::NotRunning { .. }
            | control::ControlError::NotListening { .. }),
        ) => {
            refuse_beside_a_live_daemon(&r.socket)?;
            crate::capabilities::require("stop", &crate::capabilities::for_stop())
                .map_err(|e| CliError::Refused(e.to_string()))?;
            if matches!(e, control::ControlError::NotListening { .. }) {
                // A dead daemon's socket: nobody listens (and no daemon holds the namespace).
                let _ = std::fs::remove_file(&r.socket);
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Refused(format!("cannot start a runtime: {e}")))?;
            let done = runtime.block_on(controller::teardown(&r.pin_dir, &r.tables, &r.socket))?;
            if !done.routing.failures.is_empty() {
                return Err(CliError::Refused(done.routing.failures.join("; ")));
            }
            if let Some(e) = done.nft_error.clone().or(done.vip_error.clone()) {
                return Err(CliError::Refused(e));
            }
            if done.was_empty() {
                outln(&format!(
                    "nothing to stop: no daemon, nothing pinned at {}, no steer routing",
                    r.pin_dir.display()
                ));
            } else {
                outln(&format!(
                    "steer stopped: removed {} pins under {}{}, {} routing entries{}{}",
                    done.pins,
                    r.pin_dir.display(),
                    if done.pins > 0 {
                        " (classifier detached)"
                    } else {
                        ""
                    },
                    done.routing.changes.len(),
                    if done.nft_removed {
                        ", the connection-marking table"
                    } else {
                        ""
                    },
                    match done.vips_removed {
                        0 => String::new(),
                        n => format!(", {n} VRRP virtual addresses"),
                    }
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

/// A JSON value as table text: strings without quotes, null as "-".
pub(crate) fn txt(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `probes normal every 500 ms, late after 10 ms, window 50 ms; 1200 rounds, 2400 out /
/// 2398 in, 182.3 KB; at this pace 345600 probes, 26.3 MB a day`, and the suspicion.
fn probe_line(p: &crate::status::ProbeStatus) -> String {
    if p.pace == "waiting" {
        // Its probes have no way out: no pace, no cost to show.
        return format!(
            "not probed while waiting for a gateway; before: {} rounds, {} packets out / {} in, \
             {}",
            p.rounds,
            p.packets_out,
            p.packets_in,
            human_bytes(p.bytes_out + p.bytes_in),
        );
    }
    let suspect = p
        .suspect
        .as_ref()
        .map(|s| format!("; SUSPECT ({s})"))
        .unwrap_or_default();
    let silent = p
        .silent_ms
        .map(|ms| format!("; nothing back for {ms} ms"))
        .unwrap_or_default();
    format!(
        "probes {} every {} ms, late after {} ms, window {} ms; {} rounds, {} packets out / {} in, \
         {}; at this pace {} probes, {} a day{suspect}{silent}",
        p.pace,
        p.interval_ms,
        p.late_after_ms,
        p.passive_window_ms,
        p.rounds,
        p.packets_out,
        p.packets_in,
        human_bytes(p.bytes_out + p.bytes_in),
        p.probes_per_day,
        human_bytes(p.bytes_per_day),
    )
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1_000 => format!("{b} B"),
        1_000..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.2} GB", b as f64 / 1e9),
    }
}

/// `IPv6 sources: npt, LAN prefix fd10::/64` and a line per WAN: its prefix, what a LAN
/// source becomes there, and what the guard dropped.
fn render_ipv6(v6: &crate::status::Ipv6Status) -> String {
    use std::fmt::Write;
    let mut out = format!("IPv6 sources: {}", v6.mode);
    if let Some(lan) = &v6.lan_prefix {
        let _ = write!(out, ", LAN prefix {lan}");
    }
    out.push('\n');
    for w in &v6.wans {
        let dropped = w
            .foreign_dropped
            .map_or(String::new(), |n| format!("; foreign sources dropped: {n}"));
        let _ = writeln!(
            out,
            "  {}: prefix {} ({}), {}{dropped}",
            w.wan,
            w.prefix6.as_deref().unwrap_or("-"),
            w.origin,
            w.translation,
        );
    }
    if let Some(e) = &v6.counters_error {
        let _ = writeln!(out, "  (the guards' counters could not be read: {e})");
    }
    out
}

/// `connection marking: table inet steer in place (checked 3 s ago, ...)` and its last repair.
fn render_marking(m: &crate::status::MarkingStatus) -> String {
    let checked = m
        .checked_seconds_ago
        .map_or(String::new(), |s| format!("checked {s} s ago, "));
    let mut out = format!(
        "connection marking: nftables table inet {} {} ({checked}{})\n",
        crate::conntrack::NFT_TABLE,
        m.table,
        m.watched
    );
    if let Some(r) = &m.last_repair {
        out.push_str(&format!("  restored {} s ago: {}\n", r.seconds_ago, r.what));
    }
    out
}

/// What the per-WAN packet counters (and the measured shares made of them) count: the
/// classifier's verdicts. A connection held to another WAN takes its mark back in the `inet
/// steer` table, after the classifier counted it.
pub(crate) const COUNTED_AS_CLASSIFIED: &str = "(packets and measured shares: the packets the \
     classifier gave each WAN; connections held to another WAN by steer's nftables table are \
     counted where the classifier sent them)";

/// One set's row of `steer status`; a set with conditions shows its place in the order
/// (`ordered #2`), as `steer dump rules` does: the first one met decides.
fn set_row(r: &crate::status::SetStatus) -> String {
    let matches = match r.order {
        Some(n) => format!("{} #{n}", r.matches),
        None => r.matches.clone(),
    };
    format!(
        "{:<15} {:<4} {:<11} {:<15} {:<9} {:<8} {}",
        r.name,
        r.rule,
        matches,
        r.policy.as_deref().unwrap_or("-"),
        r.prefixes,
        r.runtime,
        r.packets
    )
}

fn render_status(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "steer: config {}, up {} s, policy generation {}{}",
        s.config.display(),
        s.uptime_s,
        s.generation.map_or("-".to_owned(), |g| g.to_string()),
        if s.adopted {
            ", adopted pinned state"
        } else {
            ""
        }
    );
    let lan: Vec<String> = s
        .lan
        .iter()
        .map(|l| match (&l.problem, &l.xdp) {
            (Some(p), _) => format!("{} ({p})", l.interface),
            (None, Some(m)) => format!("{} (tc + xdp {m})", l.interface),
            (None, None) => format!("{} (tc)", l.interface),
        })
        .collect();
    let _ = writeln!(out, "LAN: {}", lan.join(", "));
    if let Some(m) = &s.connection_marking {
        out.push_str(&render_marking(m));
    }
    if !s.standbys.is_empty() || !s.standbys_missing.is_empty() {
        let ready = if s.standbys.is_empty() {
            "none ready".to_owned()
        } else {
            s.standbys.join(", ")
        };
        let _ = writeln!(out, "precomputed failover: {ready}");
        for missing in &s.standbys_missing {
            let _ = writeln!(out, "  no standby (written then flipped): {missing}");
        }
    }
    if let Some(v6) = &s.ipv6 {
        out.push_str(&render_ipv6(v6));
    }
    let _ = writeln!(
        out,
        "\nWAN        state     mark    table  packets      bytes"
    );
    for w in &s.wans {
        let _ = writeln!(
            out,
            "{:<10} {:<9} {:<7} {:<6} {:<12} {}",
            w.name,
            w.state.as_str(),
            format!("{:#x}", w.mark),
            w.table,
            w.packets,
            w.bytes
        );
        if w.families.is_empty() && !w.detail.is_empty() {
            let _ = writeln!(out, "           {}", w.detail);
        }
        for f in &w.families {
            let _ = writeln!(
                out,
                "           {} {:<5} {}\n                      gateway {}",
                f.family,
                f.state.as_str(),
                f.detail,
                f.gateway
            );
            if let Some(p) = &f.probes {
                let _ = writeln!(out, "                      {}", probe_line(p));
            }
        }
    }
    let _ = writeln!(out, "{COUNTED_AS_CLASSIFIED}");
    let _ = writeln!(out, "\npolicy          now");
    for p in &s.policies {
        let _ = writeln!(out, "{:<15} {}", p.name, p.now);
        for share in &p.shares {
            let _ = writeln!(
                out,
                "{:<15}   {:<10} target {:>5.1}%  measured {:>5.1}% ({} packets in {} s{})",
                "",
                share.wan,
                share.target_percent,
                share.measured_percent,
                share.measured_packets,
                share.since_seconds,
                if share.with_other_family {
                    ", IPv6's counted in"
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "\nset             rule match       policy          prefixes  runtime  packets"
    );
    for r in &s.sets {
        let _ = writeln!(out, "{}", set_row(r));
    }
    let m = &s.set_memory;
    let _ = writeln!(
        out,
        "kernel memory of the sets: {}{}",
        Bytes(m.bytes),
        m.max_memory
            .map_or(String::new(), |max| format!(" (max_memory {})", Bytes(max)))
    );
    if let (Some(limit), Some(file)) = (m.limit, &m.limit_file) {
        let _ = writeln!(
            out,
            "memory limit of the daemon and its maps: {} ({file}); changes that would not fit \
             it are refused",
            Bytes(limit)
        );
    }
    out.push_str(&vrrp::render(&s.vrrp));
    let _ = writeln!(out, "\nrouting (desired vs actual)");
    for item in &s.routing.items {
        let _ = writeln!(out, "  {item}");
    }
    if let Some(d) = &s.dns {
        out.push_str(&dns::render_status(d));
    }
    if let Some(f) = &s.last_failover {
        let _ = writeln!(out, "\nlast failover ({} s ago): {}", f.seconds_ago, f.line);
    }
    if let Some(last) = &s.last_apply {
        let _ = writeln!(out, "\nlast change ({} s ago):", last.seconds_ago);
        for c in &last.changes {
            let _ = writeln!(out, "  {c}");
        }
    }
    out
}

#[cfg(test)]
mod error_text_tests {
    use super::error_text;

    #[test]
    fn the_memory_line_names_the_ordered_rules_prefixes_apart() {
        let text = format!(
            "{}\n[[set]]\nname = \"o\"\npolicy = \"p\"\nproto = [\"tcp\"]\n\
             prefixes = [\"198.51.100.0/24\"]\n",
            crate::config::testing::BASE
        );
        let c = crate::config::parse(&text, std::path::Path::new("/nonexistent/s.toml"))
            .expect("valid");
        let line = super::memory_line(&c);
        assert!(
            line.ends_with(
                "(no prefixes in prefix sets; the sets with conditions hold 1 more in the \
                 conditions' tries, of a fixed size)"
            ),
            "{line}"
        );
    }

    #[test]
    fn a_prefix6_that_is_a_word_gets_a_prefix6_hint() {
        let e = super::prefix6_request("wan1".into(), "garbage").unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("domains"), "{text}");
        assert!(text.contains("e.g. 2001:db8:1::/56, or `auto`"), "{text}");
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem);
        let said = crate::control::ControlError::Io {
            op: "bind",
            path: "/run/steer/steer.sock".into(),
            source: io,
        };
        let text = error_text(&said);
        assert_eq!(text.matches("read-only filesystem").count(), 1, "{text}");
        #[derive(Debug, thiserror::Error)]
        #[error("loading failed")]
        struct Terse(#[source] std::io::Error);
        let terse = Terse(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(error_text(&terse), "loading failed: permission denied");
    }
}

#[cfg(test)]
mod status_tests {
    use super::set_row;
    use crate::status::SetStatus;

    /// After a reorder the rows still read in the order the classifier tries the sets with
    /// conditions: each shows its place.
    #[test]
    fn a_set_with_conditions_shows_its_place_in_the_order() {
        let row = |name: &str, matches: &str, order| SetStatus {
            name: name.into(),
            rule: 1,
            matches: matches.into(),
            policy: Some("p".into()),
            prefixes: 0,
            runtime: 0,
            packets: 0,
            bytes: 0,
            order,
        };
        let kid = set_row(&row("kid", "ordered", Some(1)));
        assert!(
            kid.starts_with("kid             1    ordered #1  p "),
            "{kid}"
        );
        let bypass = set_row(&row("bypass", "dst", None));
        assert!(
            bypass.starts_with("bypass          1    dst         p "),
            "{bypass}"
        );
    }
}

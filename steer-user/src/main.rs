//! The `steer` binary: a thin wrapper over the library's command line.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // Every command that reads a configuration may parse lists of a million lines.
    steer::heap::return_big_blocks_when_freed();
    // NO_COLOR (https://no-color.org) turns off every color steer prints: clap's help and
    // errors here, the log lines below.
    let color = steer::cli::color_choice(std::env::var_os("NO_COLOR").as_deref());
    let matches = steer::cli::Cli::command().color(color).get_matches();
    let cli = steer::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let daemon = matches!(cli.command, steer::cli::Command::Run { .. });
    let default_level = if daemon { "info" } else { "warn" };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    if color == clap::ColorChoice::Never {
        logger.write_style(env_logger::WriteStyle::Never);
    }
    if steer::journal::is_journal() {
        // Under systemd (the daemon, or `steer stop` in ExecStopPost=): each line carries its
        // priority, so `journalctl -p warning` finds it.
        logger.format(|buf, record| {
            use std::io::Write;
            let text = steer::journal::lines(record.level(), &record.args().to_string());
            buf.write_all(text.as_bytes())
        });
    } else if !daemon {
        // A command's warnings are part of its answer (`steer check` on a set that
        // first-set-wins emptied), not a daemon's log: no timestamp, no module.
        logger.format(|buf, record| {
            use std::io::Write;
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            writeln!(buf, "{level}: {}", record.args())
        });
    }
    logger.init();
    match steer::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            steer::errln!("steer: {}", steer::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

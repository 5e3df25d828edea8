//! The `steer` binary: a thin wrapper over the library's command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = steer::cli::Cli::parse();
    let default_level = if matches!(cli.command, steer::cli::Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .init();
    match steer::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("steer: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

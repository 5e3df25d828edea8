//! `steer import mwan3|omr-bypass FILE`: the steer configuration on stdout, what was not
//! imported on stderr (and as comments in it).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::ValueEnum;

use super::{CliError, output::outln};
use crate::import::{self, Network, Options};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// OpenWrt's mwan3 (/etc/config/mwan3).
    Mwan3,
    /// OpenMPTCProuter's omr-bypass (/etc/config/omr-bypass).
    OmrBypass,
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })
}

/// Runs the import; exit 0 when it printed a configuration (notes or not), an error when
/// the file holds nothing to import.
pub fn run(
    from: From,
    file: &Path,
    network: Option<&PathBuf>,
    lan: Vec<String>,
) -> Result<ExitCode, CliError> {
    let text = read(file)?;
    let refused = |e: import::ImportError| CliError::Refused(e.to_string());
    let network = match network {
        Some(p) => Some(
            Network::parse(&read(p)?, &p.display().to_string()).map_err(|e| refused(e.into()))?,
        ),
        None => None,
    };
    let opts = Options {
        file: file.display().to_string(),
        network,
        lan,
    };
    let imported = match from {
        From::Mwan3 => import::mwan3::import(&text, &opts),
        From::OmrBypass => import::omr_bypass::import(&text, &opts),
    }
    .map_err(|e| {
        // An import that found nothing says what it left out before saying so.
        for n in e.notes() {
            crate::errln!("{n}");
        }
        refused(e)
    })?;
    for n in &imported.notes {
        crate::errln!("{n}");
    }
    outln(imported.toml.trim_end());
    Ok(ExitCode::SUCCESS)
}

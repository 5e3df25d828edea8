//! `steer import mwan3|omr-bypass FILE`: the steer configuration on stdout, what was not
//! imported on stderr (and as comments in it).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::ValueEnum;

use super::{CliError, output::outln};
use crate::{
    config::MAX_CONFIG_BYTES,
    import::{self, Network, Options},
};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// OpenWrt's mwan3 (/etc/config/mwan3).
    Mwan3,
    /// OpenMPTCProuter's omr-bypass (/etc/config/omr-bypass).
    OmrBypass,
}

/// The UCI file at `path`, read as the configuration is ([`crate::config::read_file`]): a
/// regular file only (`/dev/zero` would fill memory, a FIFO block forever) of at most
/// [`MAX_CONFIG_BYTES`] (an mwan3 or network file is a few kilobytes; an omr-bypass one with
/// its lists a few hundred).
fn read(path: &Path) -> Result<String, CliError> {
    let bytes =
        crate::config::read_file(path, MAX_CONFIG_BYTES).map_err(|error| CliError::ImportFile {
            path: path.to_owned(),
            error,
        })?;
    String::from_utf8(bytes).map_err(|e| CliError::Refused(format!(
        "{} is not UTF-8 text (byte {} is not): give the UCI file itself, e.g. /etc/config/mwan3",
        path.display(),
        e.utf8_error().valid_up_to()
    )))
}

/// Runs the import; exit 0 when it printed a configuration (notes or not), an error when
/// the file holds nothing to import.
pub fn run(
    from: From,
    file: &Path,
    network: Option<&PathBuf>,
    lan: Vec<String>,
) -> Result<ExitCode, CliError> {
    let text = read(file);
    for wait in crate::config::take_waits() {
        crate::errln!("note: {wait}");
    }
    let text = text?;
    // The error quotes the file's names, which may hold control characters.
    let refused = |e: import::ImportError| CliError::Refused(import::visible(&e.to_string()));
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

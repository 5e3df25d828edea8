//! `steer set NAME add|del|flush|list`: runtime edits of a set through the daemon.
//!
//! The prefixes (arguments, a file, or standard input) are checked here with the list parser
//! first, so a typo is named at its place (`stdin:12:1`) before anything is sent; the daemon
//! checks them again against the set (its family, the default route, the other sets) and
//! applies the edit whole or not at all. An edit too long for one request goes in several of
//! one batch, applied when the last arrives.

use std::{io::Read, path::Path, process::ExitCode};

use clap::ValueEnum;

use super::{CliError, Resolved, Target, output::outln};
use crate::{
    config::{MAX_LIST_BYTES, parse_list_bytes, read_file},
    control::{
        Request,
        proto::{Batch, MAX_SET_TIMEOUT_SECS, SetOp},
    },
    prefix::parse_prefix,
};

/// Bytes of prefixes per request: well under the daemon's default request limit (64 KiB).
const CHUNK_BYTES: usize = 48 * 1024;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOpArg {
    /// Add prefixes (an entry already there gets the new timeout).
    Add,
    /// Delete runtime entries (configured prefixes stay: edit the list and reload).
    Del,
    /// Delete every runtime entry of the set.
    Flush,
    /// Show the set's runtime entries and the time they have left.
    List,
}

impl SetOpArg {
    fn wire(self) -> SetOp {
        match self {
            SetOpArg::Add => SetOp::Add,
            SetOpArg::Del => SetOp::Del,
            SetOpArg::Flush => SetOp::Flush,
            SetOpArg::List => SetOp::List,
        }
    }
}

/// What `steer set` was asked.
#[derive(Debug)]
pub struct SetArgs<'a> {
    pub name: String,
    pub op: SetOpArg,
    pub prefixes: Vec<String>,
    pub timeout: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub json: bool,
}

pub fn run(args: SetArgs, target: &Target) -> Result<ExitCode, CliError> {
    let daemon = target.resolve()?;
    let op = args.op.wire();
    if op == SetOp::List {
        if !args.prefixes.is_empty() || args.timeout.is_some() || args.file.is_some() {
            return Err(CliError::Refused(
                "`list` takes no prefixes, --timeout or --file: it shows every runtime entry \
                 of the set"
                    .into(),
            ));
        }
        return list(&daemon, &args);
    }
    let timeout = args.timeout.map(parse_timeout).transpose()?;
    if timeout.is_some() && op != SetOp::Add {
        return Err(CliError::Refused(
            "only `steer set NAME add` takes --timeout".into(),
        ));
    }
    let tokens = prefixes(&args)?;
    match (op, tokens.is_empty()) {
        (SetOp::Flush, false) => {
            return Err(CliError::Refused(
                "`flush` takes no prefixes: it deletes every runtime entry of the set".into(),
            ));
        }
        (SetOp::Add | SetOp::Del, true) => {
            return Err(CliError::Refused(format!(
                "no prefixes: give them as arguments (steer set {} {} 192.0.2.0/24) or with \
                 --file FILE (- for standard input)",
                args.name,
                if op == SetOp::Add { "add" } else { "del" }
            )));
        }
        _ => {}
    }
    let chunks = chunks(tokens);
    let batch_id = (chunks.len() > 1).then(batch_id);
    let mut message = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let request = Request::Set {
            name: args.name.clone(),
            op,
            prefixes: chunk.clone(),
            timeout,
            batch: batch_id.map(|id| Batch {
                id,
                last: i + 1 == chunks.len(),
            }),
        };
        let response = daemon.call(&request)?;
        if !response.ok {
            return Err(refused(response.error));
        }
        if let Some(m) = response.body["message"].as_str() {
            message = m.to_owned();
        }
    }
    outln(&message);
    Ok(ExitCode::SUCCESS)
}

/// The daemon's refusal as the CLI prints it (after its own `steer: `). The daemon names the
/// command in its log (`steer set bypass: refused, ...`); printed as it is, the reply would
/// read `steer: steer set bypass: refused`.
fn refused(error: Option<String>) -> CliError {
    let error = error.unwrap_or_default();
    CliError::Refused(match error.strip_prefix("steer set ") {
        Some(rest) => format!("set {rest}"),
        None => error,
    })
}

fn list(daemon: &Resolved, args: &SetArgs) -> Result<ExitCode, CliError> {
    let request = Request::Set {
        name: args.name.clone(),
        op: SetOp::List,
        prefixes: Vec::new(),
        timeout: None,
        batch: None,
    };
    let response = daemon.call(&request)?;
    if !response.ok {
        return Err(refused(response.error));
    }
    if args.json {
        outln(&serde_json::to_string_pretty(&response.body).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let entries = response.body["entries"].as_array();
    if entries.is_none_or(|e| e.is_empty()) {
        // On stderr: stdout stays a valid (empty) list file.
        crate::errln!(
            "set {}: no runtime entries (the prefixes its lists give: steer dump sets; the \
             addresses learned from DNS answers: steer dump dns)",
            crate::shown::shown(&args.name)
        );
    }
    for entry in entries.into_iter().flatten() {
        let prefix = entry["prefix"].as_str().unwrap_or("?");
        match entry["expires_in"].as_u64() {
            // A comment, so the output can be appended to a list file as it is.
            Some(s) => outln(&format!("{prefix} # expires in {}", human(s))),
            None => outln(prefix),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The prefixes of the arguments and of `--file`, in canonical form, or every bad one at its
/// place.
fn prefixes(args: &SetArgs) -> Result<Vec<String>, CliError> {
    let mut tokens = Vec::new();
    let mut bad = Vec::new();
    for (i, arg) in args.prefixes.iter().enumerate() {
        match parse_prefix(arg.trim(), true) {
            Ok(p) => tokens.push(p.to_string()),
            Err(e) => bad.push(format!("argument {}: {}; {}", i + 1, e.message(), e.hint())),
        }
    }
    if let Some(file) = args.file {
        let (label, bytes) = read_input(file)?;
        match parse_list_bytes(&bytes, true) {
            Ok(listed) => tokens.extend(listed.iter().map(|l| l.prefix.to_string())),
            Err(errors) => bad.extend(errors.iter().map(|e| format!("{label}:{e}"))),
        }
    }
    if bad.is_empty() {
        return Ok(tokens);
    }
    let shown = bad.len().min(20);
    let mut text = format!(
        "{} bad prefix{}, nothing was sent:\n  {}",
        bad.len(),
        if bad.len() == 1 { "" } else { "es" },
        bad[..shown].join("\n  ")
    );
    if bad.len() > shown {
        text.push_str(&format!("\n  and {} more", bad.len() - shown));
    }
    Err(CliError::Refused(text))
}

/// The bytes of `--file` (`-`: standard input) and how messages name it. A file is read as
/// the daemon reads a list file (a regular file only, at most [`MAX_LIST_BYTES`]), and standard
/// input is held to the same size: `--file /dev/zero` or an endless pipe would otherwise grow
/// this process until the memory runs out.
fn read_input(file: &Path) -> Result<(String, Vec<u8>), CliError> {
    if file == Path::new("-") {
        let bytes = read_bounded(std::io::stdin().lock(), MAX_LIST_BYTES).map_err(|e| match e {
            Bounded::Io(source) => CliError::Io {
                op: "read",
                path: "standard input".into(),
                source,
            },
            Bounded::TooBig => CliError::StdinTooBig {
                limit: MAX_LIST_BYTES,
            },
        })?;
        return Ok(("stdin".into(), bytes));
    }
    let bytes = read_file(file, MAX_LIST_BYTES).map_err(|error| CliError::SetFile {
        path: file.to_owned(),
        error,
    })?;
    Ok((file.display().to_string(), bytes))
}

/// Why [`read_bounded`] gave up.
#[derive(Debug)]
enum Bounded {
    Io(std::io::Error),
    TooBig,
}

/// Everything `reader` holds, if that is at most `limit` bytes; never more than one byte past
/// the limit is read.
fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, Bounded> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Bounded::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Bounded::TooBig);
    }
    Ok(bytes)
}

/// The prefixes in requests of at most [`CHUNK_BYTES`].
fn chunks(tokens: Vec<String>) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for t in tokens {
        // Quotes and a comma around each.
        let cost = t.len() + 3;
        if size + cost > CHUNK_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += cost;
        if let Some(last) = out.last_mut() {
            last.push(t);
        }
    }
    out
}

/// An id for one multi-request edit: unique enough among the few open at once.
fn batch_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    u64::from(std::process::id()) << 32 | u64::from(nanos)
}

/// `--timeout`: seconds, or a number with `s`, `m`, `h` or `d` (as `10m`).
fn parse_timeout(text: &str) -> Result<u64, CliError> {
    let bad = || {
        CliError::Refused(format!(
            "--timeout `{}`: give a time like 600, 90s, 10m, 12h or 7d (at least one \
             second; leave --timeout out for an entry that stays until deleted)",
            crate::shown::shown(text)
        ))
    };
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(0) => Err(bad()),
        Some(s) if s <= MAX_SET_TIMEOUT_SECS => Ok(s),
        _ => Err(CliError::Refused(format!(
            "--timeout `{}`: longer than a year (365d), the most an entry may have; leave \
             --timeout out for an entry that stays until deleted",
            crate::shown::shown(text)
        ))),
    }
}

/// Seconds as `1h2m3s`.
fn human(mut s: u64) -> String {
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s >= size {
            out.push_str(&format!("{}{unit}", s / size));
            s %= size;
        }
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_of_the_daemon_is_not_prefixed_twice() {
        let e = refused(Some(
            "steer set bypass: refused, nothing changed:\n  0.0.0.0/0: ...".into(),
        ));
        assert_eq!(
            e.to_string(),
            "set bypass: refused, nothing changed:\n  0.0.0.0/0: ..."
        );
        assert_eq!(
            refused(Some("no set named".into())).to_string(),
            "no set named"
        );
    }

    #[test]
    fn timeouts_take_units_and_refuse_zero_and_junk() {
        assert_eq!(parse_timeout("600").unwrap(), 600);
        assert_eq!(parse_timeout("10m").unwrap(), 600);
        assert_eq!(parse_timeout("2h").unwrap(), 7200);
        assert_eq!(parse_timeout("7d").unwrap(), 604_800);
        assert_eq!(parse_timeout("365d").unwrap(), 31_536_000);
        for long in ["366d", "100000000d", "18446744073709551615"] {
            let e = parse_timeout(long).unwrap_err().to_string();
            assert!(e.contains("longer than a year (365d)"), "{long}: {e}");
        }
        for bad in ["0", "0m", "10x", "m", "", "-5", "99999999999999999999d"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(human(3725), "1h2m5s");
        assert_eq!(human(0), "0s");
    }

    #[test]
    fn input_is_held_to_the_size_of_a_list_file() {
        let limit = 1000;
        assert_eq!(read_bounded(&[b'x'; 1000][..], limit).unwrap().len(), 1000);
        assert!(matches!(
            read_bounded(&[b'x'; 1001][..], limit),
            Err(Bounded::TooBig)
        ));
        // An endless source is read only up to the limit.
        assert!(matches!(
            read_bounded(std::io::repeat(0), limit),
            Err(Bounded::TooBig)
        ));
        let e = CliError::StdinTooBig {
            limit: MAX_LIST_BYTES,
        };
        assert!(e.to_string().contains("67108864 bytes"), "{e}");
    }

    #[test]
    fn a_device_or_missing_file_is_refused_with_its_name() {
        let e = read_input(Path::new("/dev/zero")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot read --file /dev/zero: it is a device, not a regular file"),
            "{text}"
        );
        assert!(text.contains("give the path of a regular file"), "{text}");
        let e = read_input(Path::new("/nonexistent/steer-list")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read --file /nonexistent/steer-list: "),
            "{e}"
        );
    }

    #[test]
    fn long_edits_are_cut_into_requests_the_daemon_takes() {
        let tokens: Vec<String> = (0..20_000u32)
            .map(|i| std::net::Ipv4Addr::from(i << 8).to_string() + "/24")
            .collect();
        let chunks = chunks(tokens.clone());
        assert!(chunks.len() > 1);
        assert_eq!(chunks.concat(), tokens);
        for c in &chunks {
            let request = Request::Set {
                name: "a-set-name-of-forty-seven-characters-at-most-x".into(),
                op: SetOp::Add,
                prefixes: c.clone(),
                timeout: Some(u64::MAX),
                batch: Some(Batch {
                    id: u64::MAX,
                    last: false,
                }),
            };
            let line = serde_json::to_string(&request).unwrap();
            assert!(
                line.len() < crate::control::server::DEFAULT_MAX_REQUEST_BYTES,
                "{}",
                line.len()
            );
        }
    }
}

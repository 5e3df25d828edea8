//! Log lines for systemd's journal. When the service manager connects stderr to the journal it
//! says so in `$JOURNAL_STREAM`; each line then starts with its syslog priority (`<4>` for a
//! warning: `sd-daemon(3)`'s prefixes), so `journalctl -p warning` finds steer's warnings, and
//! carries no timestamp of its own (the journal stamps every line). A message of several lines
//! gives every line its priority: the journal takes each line as an entry of its own.

/// Whether stderr is the journal: `$JOURNAL_STREAM` (`DEVICE:INODE`) names stderr's own file
/// (a child whose stderr was redirected inherits the variable, not the stream).
pub fn is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match (
        std::fs::metadata("/proc/self/fd/2"),
        dev.parse::<u64>(),
        ino.parse::<u64>(),
    ) {
        (Ok(meta), Ok(dev), Ok(ino)) => meta.dev() == dev && meta.ino() == ino,
        _ => false,
    }
}

/// The syslog priority of a log level.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `text` as journal lines of `level`.
pub fn lines(level: log::Level, text: &str) -> String {
    let prio = priority(level);
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.lines() {
        out.push_str(&format!("<{prio}>{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_carries_the_priority_of_its_level() {
        assert_eq!(lines(log::Level::Warn, "wan1 down"), "<4>wan1 down\n");
        assert_eq!(
            lines(
                log::Level::Error,
                "reload refused:\n    steer.toml:3:1: bad"
            ),
            "<3>reload refused:\n<3>    steer.toml:3:1: bad\n"
        );
        assert_eq!(lines(log::Level::Info, "ready"), "<6>ready\n");
    }
}

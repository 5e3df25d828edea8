//! Values from input (list lines, config values, domain names, socket requests) as messages
//! show them: escaped and bounded.
//!
//! A message may reach a terminal, the daemon's log and a control-socket reply. The value in
//! it is whatever the input held: a 10 MB line would be printed at full length (twice where
//! the message also names a part of it), and control characters (ESC sequences, NULs) would
//! reach the terminal raw. Every value quoted in an error goes through [`Shown`]. An error
//! with its causes is shown on one line by [`error_text`].

use std::fmt;

/// Characters of a value a message shows; the rest is summarized by the value's length.
pub const SHOWN_CHARS: usize = 80;

/// A value as a message shows it: at most [`SHOWN_CHARS`] characters, control and invisible
/// formatting characters written as `\u{1b}`, and when cut, `… (N bytes)` after it.
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_CHARS) {
            write_char(f, c)?;
        }
        if chars.next().is_some() {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// [`Shown`] as a string.
pub fn shown(value: &str) -> String {
    Shown(value).to_string()
}

/// The first `n` of `items` joined by `sep`, then "and N more" for the others: a line names a
/// few (a forged advert's 255 addresses, a table's routes), not all.
pub fn first_few<T: fmt::Display>(items: &[T], n: usize, sep: &str) -> String {
    let mut out: Vec<String> = items.iter().take(n).map(ToString::to_string).collect();
    if items.len() > n {
        out.push(format!("and {} more", items.len() - n));
    }
    out.join(sep)
}

/// One character of a value: as itself if it prints as itself, else as `\u{..}`.
fn write_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    if is_hidden(c) {
        write!(f, "\\u{{{:x}}}", u32::from(c))
    } else {
        fmt::Write::write_char(f, c)
    }
}

/// Whether `c` would not print as a visible character of its own: control characters (C0, DEL,
/// C1), and the formatting characters that are invisible or reorder text (soft hyphen,
/// zero-width and bidirectional marks, line and paragraph separators, byte-order mark).
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// An error and its causes, as one line: a cause whose text the message already carries (most
/// of steer's errors put their source in their own words) is not repeated.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_printable_value_is_shown_as_it_is() {
        assert_eq!(shown("192.0.2.0/24"), "192.0.2.0/24");
        assert_eq!(shown("bücher.example"), "bücher.example");
    }

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(
            shown("1.2.3.\x1b[2J\x1b[31mEVIL\0"),
            "1.2.3.\\u{1b}[2J\\u{1b}[31mEVIL\\u{0}"
        );
        assert_eq!(
            shown("a\u{202e}b\u{200b}c\r\t"),
            "a\\u{202e}b\\u{200b}c\\u{d}\\u{9}"
        );
    }

    #[test]
    fn a_huge_value_is_cut_and_its_length_given() {
        let line = format!("1.2.3.0/24{}", "x".repeat(10 * 1024 * 1024));
        let s = shown(&line);
        assert!(s.len() < 200, "{}", s.len());
        assert!(s.starts_with("1.2.3.0/24xxx"), "{s}");
        assert!(s.ends_with(&format!("… ({} bytes)", line.len())), "{s}");
        // Exactly the limit is not cut.
        assert_eq!(shown(&"y".repeat(SHOWN_CHARS)), "y".repeat(SHOWN_CHARS));
    }

    #[test]
    fn a_cut_value_of_control_characters_stays_bounded() {
        let s = shown(&"\x1b".repeat(1_000_000));
        assert!(s.len() < 1000, "{}", s.len());
        assert!(!s.contains('\x1b'));
    }
}

//! Diagnostics: located, explained errors, and the context that collects them while the
//! sections are checked.

use std::{
    collections::HashSet,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use crate::shown::shown;

/// One problem in the configuration, located in the file where it was written.
///
/// `line` and `column` are 1-based (column counts characters). A `line` of 0 means the problem
/// has no position (the file could not be read at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Where in the configuration, e.g. `wan[wan1].mark` or `set[bypass].prefixes[2]`.
    pub field: String,
    /// The offending value as written (may be empty when something is missing).
    pub value: String,
    /// What is wrong.
    pub message: String,
    /// What would be valid, or what to do.
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    /// `{file}:{line}:{column}: {field} = {value}: {message}; {hint}`; the position, ` = {value}`,
    /// the field and `; {hint}` are left out when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            f.write_str(&self.field)?;
            if !self.value.is_empty() {
                write!(f, " = {}", self.value)?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration. Nothing may be applied when this is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<Diagnostic>,
    /// Errors found but not shown: a list file's bad lines past the first 50 are summed up in
    /// one line, which stands for them.
    pub unshown: usize,
}

impl ConfigErrors {
    /// Every error found, shown or not.
    pub fn count(&self) -> usize {
        self.errors.len() + self.unshown
    }
}

impl fmt::Display for ConfigErrors {
    /// One diagnostic per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// `text` with each character that would not print as itself ([`crate::shown`]'s) written as
/// the TOML escape a configuration file has for it (`\u001b`), at full length.
pub(crate) fn toml_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_toml_char(&mut out, c);
    }
    out
}

/// [`toml_escaped`] of one character, onto `out`.
pub(crate) fn push_toml_char(out: &mut String, c: char) {
    let mut buf = [0; 4];
    if shown(c.encode_utf8(&mut buf)).chars().count() == 1 {
        out.push(c);
    } else if u32::from(c) <= 0xffff {
        out.push_str(&format!("\\u{:04x}", u32::from(c)));
    } else {
        out.push_str(&format!("\\U{:08x}", u32::from(c)));
    }
}

/// A text with its line starts, to turn byte offsets into 1-based line and column.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|s| *s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, column + 1)
    }

    /// The text of a span, as a short single-line snippet for messages.
    pub fn snippet(&self, span: &Range<usize>) -> String {
        let s = self.text.get(span.clone()).unwrap_or("");
        shorten(s)
    }
}

/// The first line of `s`, cut to a readable length, with control and invisible characters
/// escaped (see [`crate::shown`]): the value of a diagnostic is the input as written, which
/// reaches terminals and logs.
pub(crate) fn shorten(s: &str) -> String {
    const CHARS: usize = 60;
    let first = s.lines().next().unwrap_or("").trim_end();
    let multi = s.trim_end().contains('\n');
    let cut = first
        .char_indices()
        .nth(CHARS)
        .map_or(first, |(i, _)| &first[..i]);
    let mut out = shown(cut);
    if multi || cut.len() < first.len() {
        out.push_str(" …");
    }
    out
}

/// A position in a file other than the config file: 1-based line and column (in characters).
pub(crate) struct Place<'p> {
    pub file: &'p Path,
    pub line: usize,
    pub column: usize,
}

/// Collects diagnostics for one configuration file.
pub(crate) struct Ctx<'a> {
    pub src: &'a Source<'a>,
    pub file: &'a Path,
    pub diags: Vec<Diagnostic>,
    /// Field paths whose values had the wrong type (already reported, then removed; a list
    /// item is replaced by an empty stand-in that validation skips): checks that depend on
    /// them stay quiet instead of echoing the error.
    pub removed: HashSet<String>,
    /// Errors found and summed up in a line of their own rather than shown (that line stands
    /// for one of them).
    pub unshown: usize,
    /// The names of the document's `[[policy]]` tables, for hints that suggest one.
    pub policies: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(src: &'a Source<'a>, file: &'a Path) -> Self {
        Ctx {
            src,
            file,
            diags: Vec::new(),
            removed: HashSet::new(),
            unshown: 0,
            policies: Vec::new(),
        }
    }

    /// An error at `span` of the config file; the value is the span's text.
    pub fn err(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let value = self.src.snippet(span);
        self.err_value(span, field, value, message, hint);
    }

    /// An error at `span` of the config file with an explicit value text.
    pub fn err_value(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let (line, column) = self.src.locate(span.start);
        // A message or hint quotes names and values of the file (a WAN's name in another
        // WAN's error, a suggestion): whatever a check forgot to escape reaches the terminal
        // escaped, as the file writes it.
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            value: value.into(),
            message: toml_escaped(&message.into()),
            hint: toml_escaped(&hint.into()),
        });
    }

    /// An error in a file other than the config file (a list file), at `place`.
    pub fn err_in(
        &mut self,
        place: Place<'_>,
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diagnostic {
            file: place.file.to_path_buf(),
            line: place.line,
            column: place.column,
            field: field.into(),
            value: value.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// The 1-based line where `span` of the config file starts.
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        self.src.locate(span.start).0
    }

    /// Whether the value at `path` had the wrong type: reported by the schema walk, then
    /// removed (or, for a list item, replaced by an empty stand-in so that the positions of
    /// the others hold).
    pub fn mistyped(&self, path: &str) -> bool {
        self.removed.contains(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_is_one_based_in_characters() {
        let s = Source::new("ab\nçd = 1\n");
        assert_eq!(s.locate(0), (1, 1));
        assert_eq!(s.locate(3), (2, 1));
        assert_eq!(s.locate(6), (2, 3)); // after "çd" (ç is two bytes)
    }

    #[test]
    fn shorten_cuts_and_escapes() {
        let huge = format!("1.2.3.0/24{}", "x".repeat(10 * 1024 * 1024));
        let s = shorten(&huge);
        assert_eq!(s, format!("1.2.3.0/24{} …", "x".repeat(50)));
        assert_eq!(shorten("1.2.3.\x1b[2J\0"), "1.2.3.\\u{1b}[2J\\u{0}");
        assert_eq!(shorten("a\nb"), "a …");
    }

    #[test]
    fn display_leaves_out_empty_parts() {
        let d = Diagnostic {
            file: "a.toml".into(),
            line: 3,
            column: 7,
            field: "wan[wan1].mark".into(),
            value: "0".into(),
            message: "mark is 0".into(),
            hint: "use 0x100".into(),
        };
        assert_eq!(
            d.to_string(),
            "a.toml:3:7: wan[wan1].mark = 0: mark is 0; use 0x100"
        );
        let d = Diagnostic {
            value: String::new(),
            hint: String::new(),
            line: 0,
            ..d
        };
        assert_eq!(d.to_string(), "a.toml: wan[wan1].mark: mark is 0");
    }
}

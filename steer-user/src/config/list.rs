//! List files: one IP or CIDR per line, `#` comments (whole-line or after an entry), blank
//! lines; CRLF line endings and a UTF-8 byte-order mark are accepted.

use std::fmt;

use crate::{
    model::sorted::{SortedPrefixes, v4_key},
    prefix::{AddrError, Prefix, parse_prefix},
};

/// What is wrong with one line of a list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListErrorKind {
    /// The entry is not an acceptable address or network.
    Addr(AddrError),
    /// The line is not UTF-8.
    NotUtf8,
    /// The file is UTF-16 (it starts with a UTF-16 byte-order mark).
    Utf16,
    /// No line of the file is an address: it is some other file (a wrong path, or a link to a
    /// file that is not a list). Its lines are not repeated in messages, which may reach
    /// someone who may not read it.
    NotAList { bad_lines: usize },
}

/// One entry of a list file and where it is written: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub prefix: Prefix,
    pub line: usize,
    pub column: usize,
}

/// One bad line of a list file: 1-based line and column (in characters) of the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListError {
    pub line: usize,
    pub column: usize,
    /// The entry as written (comment and surrounding whitespace removed); lossy for non-UTF-8.
    pub text: String,
    pub kind: ListErrorKind,
}

impl ListError {
    pub fn message(&self) -> String {
        match &self.kind {
            ListErrorKind::Addr(e) => e.message(),
            ListErrorKind::NotUtf8 => "the line is not valid UTF-8 text".into(),
            ListErrorKind::Utf16 => "the file is UTF-16 encoded".into(),
            ListErrorKind::NotAList { bad_lines } => format!(
                "this is not a list file: none of its {bad_lines} non-comment lines is an IP \
                 address or prefix (its lines are not shown)"
            ),
        }
    }

    pub fn hint(&self) -> String {
        match &self.kind {
            ListErrorKind::Addr(e) => e.hint(),
            ListErrorKind::NotUtf8 => {
                "save the file as UTF-8 (or plain ASCII); entries are addresses like 192.0.2.0/24"
                    .into()
            }
            ListErrorKind::Utf16 => "save the file as UTF-8 (or plain ASCII)".into(),
            ListErrorKind::NotAList { .. } => {
                "check the path: a list file holds one address or prefix per line, e.g. \
                 192.0.2.0/24"
                    .into()
            }
        }
    }
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}; {}",
            self.line,
            self.column,
            self.message(),
            self.hint()
        )
    }
}

impl std::error::Error for ListError {}

/// Where a list's entries go as they are parsed. [`parse_list`] collects [`Listed`]s; the reload
/// of a changed list ([`parse_list_split`]) keeps each entry as the set holds it, with its sort
/// key, instead of a vector of a million `Listed`s copied once more.
pub trait ListSink {
    fn entry(&mut self, listed: Listed);

    /// The piece this sink was given is parsed (called on the thread that parsed it).
    fn finish(&mut self) {}
}

impl ListSink for Vec<Listed> {
    fn entry(&mut self, listed: Listed) {
        self.push(listed);
    }
}

/// Parses the text of a list file into prefixes with their places, or every bad line.
/// `allow_default_route` permits `0.0.0.0/0` and `::/0`.
pub fn parse_list(text: &str, allow_default_route: bool) -> Result<Vec<Listed>, Vec<ListError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // At most one entry per line: one allocation instead of twenty doublings of up to 40 MB.
    let mut out = Vec::with_capacity(count_lines(text.as_bytes()));
    let mut errors = Vec::new();
    parse_lines(text, 1, allow_default_route, &mut out, &mut errors);
    outcome(out, errors)
}

/// Lines of `text` (newlines and one): at most how many entries it has.
fn count_lines(text: &[u8]) -> usize {
    text.iter().filter(|b| **b == b'\n').count() + 1
}

/// Lines of `text` as an editor counts them: a last line without its newline is one, the
/// empty text has none.
pub fn line_count(text: &[u8]) -> usize {
    count_lines(text) - usize::from(text.is_empty() || text.ends_with(b"\n"))
}

/// Parses every line of `text` (as `text.split('\n')` gives them), numbered from `first_line`.
/// A line the fast path takes is parsed and its end found in one pass over its bytes; only
/// the others are searched for their end and handed to the general path.
fn parse_lines(
    text: &str,
    first_line: usize,
    allow_default_route: bool,
    out: &mut impl ListSink,
    errors: &mut Vec<ListError>,
) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut number = first_line;
    loop {
        let end = match fast_v4_at(bytes, start) {
            Some((prefix, end)) => {
                out.entry(Listed {
                    prefix,
                    line: number,
                    column: 1,
                });
                end
            }
            None => {
                let end = bytes[start..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(bytes.len(), |n| start + n);
                // `start` and `end` are at a newline or an end of `text`: character boundaries.
                parse_line_general(&text[start..end], number, allow_default_route, out, errors);
                end
            }
        };
        if end == bytes.len() {
            return;
        }
        start = end + 1;
        number += 1;
    }
}

/// A piece of a list as [`parse_list_split`] describes it to the maker of its sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListPiece {
    /// Its place in the file: 0 for the first.
    pub index: usize,
    /// Its lines: at most how many entries it has.
    pub lines: usize,
    /// Lines of the pieces after it: the first piece's sink can make room for the entries of
    /// all of them, to be appended without moving its own.
    pub lines_after: usize,
}

/// [`parse_list_bytes`] for a list expected to have no bad line, split at newlines into (up to)
/// `parts` pieces parsed on as many threads, each into a sink of its own made by `sink` (on
/// this thread, in file order, before any is parsed).
/// Returns the sinks in file order, which together received exactly the entries
/// [`parse_list_bytes`] gives, in the same order; `None` where it gives errors (the caller
/// reads the file the way that reports them).
pub fn parse_list_split<S: ListSink + Send>(
    bytes: &[u8],
    allow_default_route: bool,
    parts: usize,
    mut sink: impl FnMut(ListPiece) -> S,
) -> Option<Vec<S>> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return None;
    }
    let pieces = split_at_newlines(bytes, parts);
    let lines: Vec<usize> = pieces
        .iter()
        .map(|&(start, end)| count_lines(&bytes[start..end]))
        .collect();
    // The sinks are made in file order, before any piece is parsed: each can be given its
    // part of something shared (a place in one vector).
    let sinks: Vec<S> = (0..pieces.len())
        .map(|index| {
            sink(ListPiece {
                index,
                lines: lines[index],
                lines_after: lines[index + 1..].iter().sum(),
            })
        })
        .collect();
    let parse = |index: usize, mut out: S| -> Option<S> {
        let (start, end) = pieces[index];
        // A newline is never part of a multi-byte character: each piece is UTF-8 when the
        // whole is, and only the first can start with a byte-order mark.
        let text = std::str::from_utf8(&bytes[start..end]).ok()?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Each piece before ends with a newline: it has one line fewer than newlines and one.
        let first_line = 1 + lines[..index].iter().map(|l| l - 1).sum::<usize>();
        let mut errors = Vec::new();
        parse_lines(text, first_line, allow_default_route, &mut out, &mut errors);
        out.finish();
        errors.is_empty().then_some(out)
    };
    std::thread::scope(|scope| {
        let parse = &parse;
        let mut sinks = sinks.into_iter().enumerate();
        let (_, first) = sinks.next()?;
        let rest: Vec<_> = sinks
            .map(|(index, sink)| scope.spawn(move || parse(index, sink)))
            .collect();
        let first = parse(0, first);
        let rest: Option<Vec<S>> = rest.into_iter().map(|h| h.join().ok()?).collect();
        Some([first?].into_iter().chain(rest?).collect())
    })
}

/// A list's prefixes, each once, sorted, and how many entries it has (a repeated prefix each
/// time): all a set keeps of its lists (8 bytes an IPv4 prefix). Parsed in `parts` pieces as
/// [`parse_list_split`] does, each into sort keys sorted on its thread; the text is let go
/// before the pieces are merged. Where the list has bad lines, its text comes back for
/// [`parse_list_bytes`] to say which.
pub fn parse_list_sorted(
    bytes: Vec<u8>,
    allow_default_route: bool,
    parts: usize,
) -> Result<(SortedPrefixes, usize), Vec<u8>> {
    let keys = |piece: ListPiece| Keys {
        v4: Vec::with_capacity(piece.lines),
        v6: Vec::new(),
    };
    let Some(pieces) = parse_list_split(&bytes, allow_default_route, parts, keys) else {
        return Err(bytes);
    };
    drop(bytes);
    let entries = pieces.iter().map(|k| k.v4.len() + k.v6.len()).sum();
    let v4 = distinct(Runs::new(pieces.iter().map(|p| p.v4.as_slice()).collect()));
    let v6 = distinct(Runs::new(pieces.iter().map(|p| p.v6.as_slice()).collect()));
    Ok((SortedPrefixes { v4, v6 }, entries))
}

/// The sort keys of a piece's entries (a repeated prefix each time), sorted on the thread that
/// parsed it.
struct Keys {
    /// `v4_key`s.
    v4: Vec<u64>,
    /// Address and length.
    v6: Vec<(u128, u8)>,
}

impl ListSink for Keys {
    #[inline]
    fn entry(&mut self, listed: Listed) {
        match listed.prefix {
            Prefix::V4 { addr, len } => self.v4.push(v4_key(u32::from(addr), len)),
            Prefix::V6 { addr, len } => self.v6.push((u128::from(addr), len)),
        }
    }

    fn finish(&mut self) {
        // The standard sort takes three quarters of the time a radix sort does on these (500k
        // keys: 9.5 against 12.7 ms), and linear time on a list written sorted, as many are.
        self.v4.sort_unstable();
        self.v6.sort_unstable();
    }
}

/// A sorted sequence, each value once.
fn distinct<T: PartialEq + Copy>(sorted: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(sorted.size_hint().0);
    for t in sorted {
        if out.last() != Some(&t) {
            out.push(t);
        }
    }
    out
}

/// Sorted runs read as one sorted sequence (a few runs: one per core).
struct Runs<'a, T> {
    runs: Vec<&'a [T]>,
}

impl<'a, T: Ord + Copy> Runs<'a, T> {
    fn new(mut runs: Vec<&'a [T]>) -> Self {
        runs.retain(|r| !r.is_empty());
        Runs { runs }
    }
}

impl<T: Ord + Copy> Iterator for Runs<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        let (mut at, mut min) = (0, *self.runs.first()?.first()?);
        for (k, run) in self.runs.iter().enumerate().skip(1) {
            if run[0] < min {
                (at, min) = (k, run[0]);
            }
        }
        self.runs[at] = &self.runs[at][1..];
        if self.runs[at].is_empty() {
            self.runs.remove(at);
        }
        Some(min)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.runs.iter().map(|r| r.len()).sum();
        (left, Some(left))
    }
}

/// Every entry of a list's text, in order, to `each`: on this thread, nothing collected (what
/// a message reads a list again for). False where the list has bad lines (`each` may have been
/// given some of its entries).
pub fn each_listed(bytes: &[u8], allow_default_route: bool, each: impl FnMut(Listed)) -> bool {
    struct Each<F>(F);
    impl<F: FnMut(Listed)> ListSink for Each<F> {
        fn entry(&mut self, listed: Listed) {
            (self.0)(listed);
        }
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errors = Vec::new();
    parse_lines(text, 1, allow_default_route, &mut Each(each), &mut errors);
    errors.is_empty()
}

/// The first line (1-based) of list file contents `bytes` that lists `prefix`, for a message:
/// the daemon does not keep its lists' lines.
pub fn list_line_of(bytes: &[u8], prefix: &Prefix) -> Option<usize> {
    let mut line = None;
    each_listed(bytes, true, |listed| {
        if line.is_none() && listed.prefix == *prefix {
            line = Some(listed.line);
        }
    });
    line
}

/// Pieces a list of `len` bytes is best parsed in ([`parse_list_split`]): one per core (up to
/// four), each of a megabyte or more (a thread costs more than parsing a small list).
pub fn list_pieces(len: usize) -> usize {
    const PIECE: usize = 1 << 20;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(4).min(len / PIECE).max(1)
}

/// `bytes` cut into (up to) `parts` pieces of about the same size, each but the last ending with
/// a newline: (start, end) of each, at least one.
fn split_at_newlines(bytes: &[u8], parts: usize) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for k in 1..parts.max(1) {
        let target = (bytes.len() * k / parts).max(start);
        let Some(newline) = bytes[target..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let end = target + newline + 1;
        pieces.push((start, end));
        start = end;
    }
    pieces.push((start, bytes.len()));
    pieces
}

/// The entries, or the bad lines; a file none of whose lines is an entry is not a list, and
/// none of its lines is repeated, unless every one of them is an address written wrong (host
/// bits, a leading zero, a mapped address: a list with mistakes, whose hints help).
fn outcome(out: Vec<Listed>, errors: Vec<ListError>) -> Result<Vec<Listed>, Vec<ListError>> {
    match errors.first() {
        None => Ok(out),
        Some(_) if !out.is_empty() => Err(errors),
        Some(first) if first.kind == ListErrorKind::Utf16 => Err(errors),
        Some(_)
            if errors
                .iter()
                .all(|e| address_written_wrong(&e.kind) || address_then_typo(&e.text)) =>
        {
            Err(errors)
        }
        Some(first) => Err(vec![ListError {
            line: first.line,
            column: 1,
            text: String::new(),
            kind: ListErrorKind::NotAList {
                bad_lines: errors.len(),
            },
        }]),
    }
}

/// An error that only an address written wrong gives: the line parsed as one, but for a
/// detail (never a line of some other file, which fails on its first character).
/// An entry whose part before the `/` is an address (`100.64.7.0/24x`, `10.0.0.0/`): a list
/// line with a typo in its length, shown like any bad line.
fn address_then_typo(text: &str) -> bool {
    text.split_once('/')
        .is_some_and(|(addr, _)| addr.parse::<std::net::IpAddr>().is_ok())
}

fn address_written_wrong(kind: &ListErrorKind) -> bool {
    matches!(
        kind,
        ListErrorKind::Addr(
            AddrError::HostBits { .. }
                | AddrError::Mapped { .. }
                | AddrError::LeadingZero { .. }
                | AddrError::LenLeadingZero { .. }
                | AddrError::LenRange { .. }
                | AddrError::OctetRange { .. }
                | AddrError::DefaultRoute { .. }
        )
    )
}

/// Like [`parse_list`], for raw file contents: reports lines that are not UTF-8 (and UTF-16
/// files) instead of failing on the whole file.
pub fn parse_list_bytes(
    bytes: &[u8],
    allow_default_route: bool,
) -> Result<Vec<Listed>, Vec<ListError>> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(vec![ListError {
            line: 1,
            column: 1,
            text: String::new(),
            kind: ListErrorKind::Utf16,
        }]);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return parse_list(text, allow_default_route);
    }
    let bytes = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        match std::str::from_utf8(line) {
            Ok(line) => parse_line(line, i + 1, allow_default_route, &mut out, &mut errors),
            Err(e) => {
                let good = &line[..e.valid_up_to()];
                let column = String::from_utf8_lossy(good).chars().count() + 1;
                let lossy = String::from_utf8_lossy(line);
                let content = lossy.split('#').next().unwrap_or("").trim();
                errors.push(ListError {
                    line: i + 1,
                    column,
                    text: content.to_owned(),
                    kind: ListErrorKind::NotUtf8,
                });
            }
        }
    }
    outcome(out, errors)
}

#[inline]
fn parse_line(
    line: &str,
    number: usize,
    allow_default_route: bool,
    out: &mut impl ListSink,
    errors: &mut Vec<ListError>,
) {
    if let Some(prefix) = fast_v4(line.as_bytes()) {
        out.entry(Listed {
            prefix,
            line: number,
            column: 1,
        });
        return;
    }
    parse_line_general(line, number, allow_default_route, out, errors);
}

/// The line nearly every list is made of, parsed without the general path: a canonical IPv4
/// address or network alone on its line (a `\r` may end it). Anything else — whitespace, a
/// comment, a leading zero, a length of 0, host bits, IPv6 — returns `None` and takes the
/// general path, so this accepts only lines `parse_prefix` accepts, with the same prefix at
/// column 1 (the tests compare the two on tricky and random lines). About three times faster
/// than the general path, which trims, counts characters and splits strings.
#[inline]
fn fast_v4(line: &[u8]) -> Option<Prefix> {
    // A line has no newline: the one it is taken to end at is its end.
    match fast_v4_at(line, 0)? {
        (prefix, end) if end == line.len() => Some(prefix),
        _ => None,
    }
}

/// [`fast_v4`] on the line of `bytes` that starts at `start`: the prefix and where the line
/// ends (its newline, or the end of `bytes`), found in the same pass.
#[inline]
fn fast_v4_at(bytes: &[u8], start: usize) -> Option<(Prefix, usize)> {
    let digit = |i: usize| match bytes.get(i) {
        Some(b @ b'0'..=b'9') => Some(u32::from(b - b'0')),
        _ => None,
    };
    let mut i = start;
    let mut addr: u32 = 0;
    for k in 0..4 {
        if k > 0 {
            if bytes.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        // One to three digits, no leading zero: after a `0` comes what ends the number, or
        // the line is not one the fast path takes.
        let mut v = digit(i)?;
        i += 1;
        if v != 0
            && let Some(d) = digit(i)
        {
            v = v * 10 + d;
            i += 1;
            if let Some(d) = digit(i) {
                v = v * 10 + d;
                i += 1;
            }
        }
        if v > 255 {
            return None;
        }
        addr = addr << 8 | v;
    }
    let len = if bytes.get(i) == Some(&b'/') {
        let mut len = match digit(i + 1)? {
            0 => return None,
            d => d,
        };
        i += 2;
        if let Some(d) = digit(i) {
            len = len * 10 + d;
            i += 1;
        }
        len
    } else {
        32
    };
    let end = match bytes.get(i) {
        None | Some(b'\n') => i,
        Some(b'\r') if matches!(bytes.get(i + 1), None | Some(b'\n')) => i + 1,
        _ => return None,
    };
    // Host bits set (or a length past 32): the general path says which.
    if len > 32 || addr & u32::MAX.checked_shr(len).unwrap_or(0) != 0 {
        return None;
    }
    let prefix = Prefix::V4 {
        addr: std::net::Ipv4Addr::from(addr),
        len: len as u8,
    };
    Some((prefix, end))
}

/// Any line: comment, whitespace, every form and every error.
fn parse_line_general(
    line: &str,
    number: usize,
    allow_default_route: bool,
    out: &mut impl ListSink,
    errors: &mut Vec<ListError>,
) {
    let content = match line.find('#') {
        Some(p) => &line[..p],
        None => line,
    };
    let entry = content.trim();
    if entry.is_empty() {
        return;
    }
    let offset = entry.as_ptr() as usize - line.as_ptr() as usize;
    let column = line[..offset].chars().count() + 1;
    match parse_prefix(entry, allow_default_route) {
        Ok(prefix) => out.entry(Listed {
            prefix,
            line: number,
            column,
        }),
        Err(e) => errors.push(ListError {
            line: number,
            column,
            text: entry.to_owned(),
            kind: ListErrorKind::Addr(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_addresses_written_wrong_is_a_list_with_mistakes_not_another_file() {
        let errors = parse_list_bytes(b"\xef\xbb\xbf10.0.0.1/8\r\n", false).unwrap_err();
        assert!(
            matches!(
                errors[0].kind,
                ListErrorKind::Addr(AddrError::HostBits { .. })
            ),
            "{errors:?}"
        );
        assert!(
            errors[0].hint().contains("10.0.0.0/8"),
            "{}",
            errors[0].hint()
        );
        let errors =
            parse_list_bytes(b"root:x:0:0:root:/root:/bin/sh\n10.0.0.1/8\n", false).unwrap_err();
        assert!(
            matches!(
                errors[..],
                [ListError {
                    kind: ListErrorKind::NotAList { bad_lines: 2 },
                    ..
                }]
            ),
            "{errors:?}"
        );
        // A one-line list with a typo in its length shows the line, not "not a list file".
        let errors = parse_list_bytes(
            b"100.64.7.0/24x
",
            false,
        )
        .unwrap_err();
        assert!(
            matches!(&errors[..], [e] if matches!(e.kind, ListErrorKind::Addr(_)) && e.line == 1),
            "{errors:?}"
        );
    }

    #[test]
    fn lines_are_counted_as_an_editor_counts_them() {
        assert_eq!(line_count(b""), 0);
        assert_eq!(line_count(b"10.0.0.0/8"), 1);
        assert_eq!(line_count(b"10.0.0.0/8\n"), 1);
        assert_eq!(line_count(b"10.0.0.0/8\r\n\n192.0.2.1"), 3);
    }

    #[test]
    fn comments_blank_lines_crlf_bom() {
        let text =
            "\u{feff}# header\r\n10.0.0.0/8\r\n\r\n  192.0.2.1  # a host\r\n2001:db8::/32#x\n\t\n";
        let got = parse_list(text, false).unwrap();
        let got: Vec<(String, usize, usize)> = got
            .iter()
            .map(|l| (l.prefix.to_string(), l.line, l.column))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.0/8".to_string(), 2, 1),
                ("192.0.2.1/32".to_string(), 4, 3),
                ("2001:db8::/32".to_string(), 5, 1)
            ]
        );
    }

    #[test]
    fn every_bad_line_is_reported_with_its_column() {
        let text = "10.0.0.0/8\n  010.1.1.1\n\n10.1.2.3/16 # x\n";
        let errs = parse_list(text, false).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].line, errs[0].column), (2, 3));
        assert!(matches!(
            errs[0].kind,
            ListErrorKind::Addr(AddrError::LeadingZero { .. })
        ));
        assert_eq!((errs[1].line, errs[1].column), (4, 1));
        assert_eq!(errs[1].text, "10.1.2.3/16");
    }

    /// A sink that notes it was finished.
    #[derive(Debug, Default)]
    struct Noted {
        got: Vec<Listed>,
        finished: bool,
    }

    impl ListSink for Noted {
        fn entry(&mut self, listed: Listed) {
            self.got.push(listed);
        }
        fn finish(&mut self) {
            self.finished = true;
        }
    }

    #[test]
    fn a_list_parsed_in_pieces_gives_what_it_gives_whole() {
        let mut texts: Vec<Vec<u8>> = [
            "\u{feff}# header\r\n10.0.0.0/8\r\n\r\n  192.0.2.1  # a host\r\n2001:db8::/32#x\n\t\n",
            "10.0.0.0/8\n10.0.0.0/8\n192.0.2.0/24",
            "\n\n\n",
            "",
            "192.0.2.0/24\n  010.1.1.1\n",
            "# only comments\n",
            "not a list\n",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
        texts.push(b"10.0.0.0/8\n1\xff.0.0.1\n192.0.2.0/24\n".to_vec());
        texts.push(b"\xff\xfe1\x000\x00".to_vec());
        // Random lines: every form, some bad, so that pieces start and end anywhere.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let forms = [
            "10.1.2.0/24",
            "192.0.2.7",
            "2001:db8::/48",
            "# c",
            "",
            " 10.9.0.0/16 # x",
            "fd00::1",
            "10.0.0.0/8\r",
        ];
        for bad in [false, true] {
            let mut text = String::new();
            for i in 0..500 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                text.push_str(forms[(rng % forms.len() as u64) as usize]);
                if bad && i == 333 {
                    text.push('x');
                }
                text.push('\n');
            }
            texts.push(text.into_bytes());
        }
        for bytes in &texts {
            let whole = parse_list_bytes(bytes, false).ok();
            for parts in 1..=5 {
                let pieces = parse_list_split(bytes, false, parts, |piece| Noted {
                    got: Vec::with_capacity(piece.lines),
                    finished: false,
                });
                let joined = pieces.as_ref().map(|p| {
                    assert!(p.iter().all(|n| n.finished));
                    p.iter().flat_map(|n| n.got.clone()).collect::<Vec<_>>()
                });
                assert_eq!(
                    joined,
                    whole,
                    "{parts} pieces of {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn pieces_end_at_newlines() {
        let text = b"aaaa\nbb\ncccccc\nd";
        let pieces = split_at_newlines(text, 3);
        assert_eq!(pieces.first().map(|p| p.0), Some(0));
        assert_eq!(pieces.last().map(|p| p.1), Some(text.len()));
        for w in pieces.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            assert_eq!(text[w[0].1 - 1], b'\n');
        }
        assert_eq!(split_at_newlines(b"no newline", 4), vec![(0, 10)]);
        assert_eq!(split_at_newlines(b"", 2), vec![(0, 0)]);
    }

    #[test]
    fn non_utf8_lines_are_named() {
        let bytes = b"10.0.0.0/8\n1\xff.0.0.1\n192.0.2.0/24\n\xfe\n";
        let errs = parse_list_bytes(bytes, false).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].line, errs[0].column), (2, 2));
        assert_eq!(errs[0].kind, ListErrorKind::NotUtf8);
        assert_eq!(errs[1].line, 4);
        let errs = parse_list_bytes(b"\xff\xfe1\x000\x00", false).unwrap_err();
        assert_eq!(errs[0].kind, ListErrorKind::Utf16);
        let ok = parse_list_bytes(b"\xef\xbb\xbf10.0.0.0/8\r\n", false).unwrap();
        assert_eq!(ok.len(), 1);
    }

    /// Both paths on one line: (entries, errors).
    fn both(line: &str, allow: bool) -> [(Vec<Listed>, Vec<ListError>); 2] {
        let (mut fast, mut fast_errors) = (Vec::new(), Vec::new());
        parse_line(line, 7, allow, &mut fast, &mut fast_errors);
        let (mut general, mut general_errors) = (Vec::new(), Vec::new());
        parse_line_general(line, 7, allow, &mut general, &mut general_errors);
        [(fast, fast_errors), (general, general_errors)]
    }

    #[test]
    fn the_fast_path_is_exactly_as_strict_as_the_general_one() {
        let tricky = [
            "10.0.0.0/8",
            "10.0.0.0/8\r",
            "192.0.2.1",
            "255.255.255.255/32",
            "0.0.0.0/0",
            "0.0.0.0",
            "1.2.3.4/0",
            "010.1.1.1",
            "10.01.1.1",
            "10.0.0.0/08",
            "10.0.0.0/08\r",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "256.0.0.0",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "0x0a.0.0.1",
            "167772161",
            " 10.0.0.0/8",
            "10.0.0.0/8 ",
            "\t10.0.0.0/8",
            "10.0.0.0 /8",
            "10.0.0.0/8#c",
            "10.0.0.0/8 # c",
            "# 10.0.0.0/8",
            "",
            "\r",
            "::ffff:10.0.0.1",
            "::ffff:0:0/96",
            "2001:db8::/32",
            "fe80::1%eth0",
            "[2001:db8::1]",
            "\u{feff}10.0.0.0/8",
            "10.0.0.0/8\r\r",
            "1000.0.0.0",
            "1.2.3.4/320",
            "1.2.3.4/3x",
            "01.2.3.4/32",
            "1.2.3.4/32\u{a0}",
            "１.2.3.4",
            "10.0.0.0\\8",
            "10.0.0.0/8/8",
            "example.com",
        ];
        for line in tricky {
            for allow in [false, true] {
                let [fast, general] = both(line, allow);
                assert_eq!(fast, general, "{line:?} (allow_default_route = {allow})");
            }
        }
        // Random lines from the characters that matter, shaped like addresses half the time.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let alphabet: Vec<char> = "0123456789./:#% \t\rxaf\u{feff}".chars().collect();
        for _ in 0..200_000 {
            let line: String = if next(2) == 0 {
                (0..next(20))
                    .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let octet = |next: &mut dyn FnMut(u64) -> u64| match next(6) {
                    0 => format!("0{}", next(300)),
                    1 => next(1000).to_string(),
                    _ => next(256).to_string(),
                };
                let mut l = (0..4)
                    .map(|_| octet(&mut next))
                    .collect::<Vec<_>>()
                    .join(".");
                match next(4) {
                    0 => {}
                    1 => l.push_str(&format!("/{}", next(40))),
                    2 => l.push_str(&format!("/0{}", next(40))),
                    _ => l.push_str(&format!("/{}\r", next(34))),
                }
                l
            };
            let allow = next(2) == 0;
            let [fast, general] = both(&line, allow);
            assert_eq!(fast, general, "{line:?} (allow_default_route = {allow})");
        }
    }

    #[test]
    fn default_route_needs_permission() {
        assert!(parse_list("0.0.0.0/0\n", false).is_err());
        assert_eq!(parse_list("0.0.0.0/0\n::/0\n", true).unwrap().len(), 2);
    }
}

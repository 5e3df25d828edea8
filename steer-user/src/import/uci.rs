//! The UCI configuration format OpenWrt writes (`/etc/config/*`): `config TYPE ['NAME']`,
//! `option KEY 'VALUE'`, `list KEY 'VALUE'`, quoting and `#` comments, read into sections that
//! remember the line of every section and option so an import can point at them.

use std::fmt;

/// One `config` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    /// `None` for an anonymous section (`config rule`).
    pub name: Option<String>,
    /// Its position among the sections of its type, from 0 (`@rule[2]` in `uci show`).
    pub index: usize,
    pub line: usize,
    pub options: Vec<Opt>,
}

/// One `option` or the values of one `list` key (all its `list` lines, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub key: String,
    pub values: Vec<String>,
    /// Written with `list` (else `option`).
    pub list: bool,
    /// The line of its first (for `option`: its last, which wins) occurrence.
    pub line: usize,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Opt> {
        self.options.iter().find(|o| o.key == key)
    }

    /// The value of `key`: an option's value, or a list's first item.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|o| o.values.first())
            .map(String::as_str)
    }

    /// The items of `key`: a list's items, or an option's value split on whitespace (as the
    /// shell scripts that read UCI do with `for x in $value`).
    pub fn items(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(o) if o.list => o.values.clone(),
            Some(o) => o
                .values
                .iter()
                .flat_map(|v| v.split_whitespace())
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The line of `key`, else of the section.
    pub fn line_of(&self, key: &str) -> usize {
        self.get(key).map_or(self.line, |o| o.line)
    }

    /// The section for messages: `interface 'wan'`, or `@rule[3]` for an anonymous one (as
    /// `uci show` names it).
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} '{n}'", self.kind),
            None => format!("@{}[{}]", self.kind, self.index),
        }
    }
}

/// A line UCI would not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}; {hint}")]
pub struct UciError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

/// Parses `text` (the contents of `file`, named in errors). Stops at the first bad line: what
/// follows it cannot be trusted to belong to the section it seems to.
pub fn parse(text: &str, file: &str) -> Result<Vec<Section>, UciError> {
    let mut sections: Vec<Section> = Vec::new();
    // The section `option` and `list` lines go to: a named section written again is the same
    // section, and its options merge into it where it first stood (as uci reads the file).
    let mut current: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |column: usize, message: String, hint: &str| UciError {
            file: file.to_owned(),
            line,
            column,
            message,
            hint: hint.to_owned(),
        };
        let words = words(raw).map_err(|(col, m, h)| err(col, m, h))?;
        let Some((keyword, kcol)) = words.first() else {
            continue;
        };
        let args = &words[1..];
        match keyword.as_str() {
            "package" => {}
            "config" => {
                let Some((kind, _)) = args.first() else {
                    return Err(err(
                        kcol + keyword.len(),
                        "`config` without a section type".into(),
                        "write e.g. config interface 'wan'",
                    ));
                };
                if let Some((extra, col)) = args.get(2) {
                    return Err(err(
                        *col,
                        format!("unexpected `{extra}` after the section name"),
                        "a section line is config TYPE ['NAME']; quote a name that has spaces",
                    ));
                }
                let name = args.get(1).map(|(n, _)| n.clone());
                // (uci also takes a section of another type with that name and retypes it,
                // keeping its options: a file that does so is broken for the router too, and
                // is read here as two sections.)
                let again = name.as_ref().and_then(|n| {
                    sections
                        .iter()
                        .position(|s| s.name.as_ref() == Some(n) && s.kind == *kind)
                });
                if let Some(at) = again {
                    current = Some(at);
                    continue;
                }
                let index = sections.iter().filter(|s| s.kind == *kind).count();
                sections.push(Section {
                    kind: kind.clone(),
                    name,
                    index,
                    line,
                    options: Vec::new(),
                });
                current = Some(sections.len() - 1);
            }
            "option" | "list" => {
                let list = keyword == "list";
                let Some(section) = current.map(|at| &mut sections[at]) else {
                    return Err(err(
                        *kcol,
                        format!("`{keyword}` outside a section"),
                        "put a `config TYPE 'NAME'` line before it",
                    ));
                };
                let Some((key, _)) = args.first() else {
                    return Err(err(
                        kcol + keyword.len(),
                        format!("`{keyword}` without a name"),
                        &format!("write {keyword} KEY 'VALUE'"),
                    ));
                };
                let Some((value, _)) = args.get(1) else {
                    return Err(err(
                        kcol + keyword.len(),
                        format!("`{keyword} {key}` has no value"),
                        &format!("write {keyword} {key} 'VALUE' (quote an empty value: '')"),
                    ));
                };
                if let Some((extra, col)) = args.get(2) {
                    return Err(err(
                        *col,
                        format!("unexpected `{extra}` after the value of `{key}`"),
                        "quote a value that has spaces: 'a b'",
                    ));
                }
                add(section, key, value, list, line);
            }
            other => {
                return Err(err(
                    *kcol,
                    format!("unknown keyword `{other}`"),
                    "UCI lines start with config, option, list or package",
                ));
            }
        }
    }
    Ok(sections)
}

fn add(section: &mut Section, key: &str, value: &str, list: bool, line: usize) {
    match section.options.iter_mut().find(|o| o.key == *key) {
        // `list` lines add to a list (an option before becomes its first item); a later
        // `option` replaces the earlier one, as uci does.
        Some(o) if list => {
            o.list = true;
            o.values.push(value.to_owned());
        }
        Some(o) => {
            *o = Opt {
                key: key.to_owned(),
                values: vec![value.to_owned()],
                list,
                line,
            };
        }
        None => section.options.push(Opt {
            key: key.to_owned(),
            values: vec![value.to_owned()],
            list,
            line,
        }),
    }
}

type WordError = (usize, String, &'static str);

/// The words of a line with their 1-based columns: unquoted runs, `'single'` (literal) and
/// `"double"` (`\` escapes the next character) quoted parts, glued together when adjacent as in
/// the shell; `#` outside quotes at a word start ends the line.
fn words(line: &str) -> Result<Vec<(String, usize)>, WordError> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            break;
        }
        let start = i;
        let mut word = String::new();
        while i < chars.len() && !chars[i].is_whitespace() {
            match chars[i] {
                q @ ('\'' | '"') => {
                    let open = i;
                    i += 1;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err((
                                open + 1,
                                format!("unterminated {} quote", quote_name(q)),
                                "close the quote on the same line",
                            ));
                        };
                        i += 1;
                        if c == q {
                            break;
                        }
                        if c == '\\'
                            && q == '"'
                            && let Some(&n) = chars.get(i)
                        {
                            word.push(n);
                            i += 1;
                            continue;
                        }
                        word.push(c);
                    }
                }
                '\\' if i + 1 < chars.len() => {
                    word.push(chars[i + 1]);
                    i += 2;
                }
                c => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        out.push((word, start + 1));
    }
    Ok(out)
}

fn quote_name(q: char) -> &'static str {
    if q == '\'' { "single" } else { "double" }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "config {} '{n}'", self.kind),
            None => write!(f, "config {}", self.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_comments_and_lists() {
        let text = "# head\npackage mwan3\nconfig interface 'wan' # c\n\toption enabled 1\n\
                    \tlist track_ip \"1.1.1.1\"\n\tlist track_ip '9.9.9.9'\n\
                    \toption note 'a b'\"c\\\"d\"\nconfig rule\n\toption x ''\n";
        let s = parse(text, "f").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name.as_deref(), Some("wan"));
        assert_eq!(s[0].line, 3);
        assert_eq!(s[0].value("enabled"), Some("1"));
        assert_eq!(s[0].items("track_ip"), ["1.1.1.1", "9.9.9.9"]);
        assert_eq!(s[0].line_of("track_ip"), 5);
        assert_eq!(s[0].value("note"), Some("a bc\"d"));
        assert_eq!(s[1].name, None);
        assert_eq!(s[1].label(), "@rule[0]");
        assert_eq!(s[0].label(), "interface 'wan'");
        assert_eq!(s[1].value("x"), Some(""));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let e = parse("config a 'b'\n  option x 'unterminated\n", "f").unwrap_err();
        assert_eq!((e.line, e.column), (2, 12));
        assert!(e.message.contains("unterminated single quote"), "{e}");
        let e = parse("\n\noption x 1\n", "f").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.to_string().contains("outside a section"), "{e}");
        let e = parse("config a\n option x\n", "f").unwrap_err();
        assert!(
            e.to_string().starts_with("f:2:8: `option x` has no value"),
            "{e}"
        );
        let e = parse("config a\n opt x 1\n", "f").unwrap_err();
        assert!(e.message.contains("unknown keyword `opt`"), "{e}");
    }

    /// A named section written twice is one section, where it first stood, as uci reads it
    /// (an override appended to the file by a script, `uci import -m`).
    #[test]
    fn a_named_section_written_again_merges_into_the_first() {
        let text = "config interface 'wan'\n\toption enabled 0\n\tlist track_ip 1.1.1.1\n\
                    config rule\n\toption x 1\n\
                    config interface 'wan'\n\toption enabled 1\n\tlist track_ip 9.9.9.9\n\
                    \toption reliability 2\n\
                    config rule\n\toption y 1\n";
        let s = parse(text, "f").unwrap();
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].label(), "interface 'wan'");
        assert_eq!(s[0].value("enabled"), Some("1"));
        assert_eq!(s[0].items("track_ip"), ["1.1.1.1", "9.9.9.9"]);
        assert_eq!(s[0].value("reliability"), Some("2"));
        assert_eq!(s[2].value("y"), Some("1"), "after it: the next section");
        assert_eq!(s[2].label(), "@rule[1]");
    }

    #[test]
    fn a_list_line_after_an_option_of_the_same_key_extends_it() {
        let s = parse("config a\n option k x\n list k y\n", "f").unwrap();
        assert_eq!(s[0].items("k"), ["x", "y"]);
    }
}

//! A set's domain list files (`domain_files`): one name per line, `#` comments, blank lines,
//! CRLF and a byte-order mark accepted; each name checked as an inline domain is. They are read
//! by the rules of every list file (`config::read`: regular files only, a size cap, links only
//! from root, a stable read; a daemon's memory budget, `config::list_budget`), and a file none of whose lines is a name is not a list: refused
//! without repeating its lines. They are
//! read after the sets' prefixes and inline domains are resolved, and their names join the
//! set's `domains` unless an earlier set has them (refused or left to the earlier set by
//! `general.duplicates`, reported at the list file's line). `filter_aaaa` is taken here too.

use std::{collections::HashMap, path::PathBuf};

use super::REPORT_LIMIT;
use crate::{
    config::{
        DuplicatePolicy, Set,
        diag::{Ctx, Place, shorten},
        list_budget::{Unread, read_list},
        names::normalize_domain,
        schema::Strings,
    },
    model::Direction,
};

/// What a set has beyond what [`super::duplicates::resolve`] builds.
pub(super) struct Extra {
    pub label: String,
    pub files: Option<Strings>,
    pub filter_aaaa: bool,
}

/// Adds the domain list files' names and `filter_aaaa` to `sets` (one `Extra` per set, in
/// order).
pub(super) fn add(cx: &mut Ctx<'_>, sets: &mut [Set], extra: Vec<Extra>, policy: DuplicatePolicy) {
    let base = match cx.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::new(),
    };
    // Every domain already held, by the set (index) that holds it.
    let mut owners: HashMap<String, usize> = HashMap::new();
    for (i, s) in sets.iter().enumerate() {
        for d in &s.domains {
            owners.entry(d.clone()).or_insert(i);
        }
    }
    for (index, extra) in extra.into_iter().enumerate() {
        let Some(set) = sets.get_mut(index) else {
            break;
        };
        set.filter_aaaa = extra.filter_aaaa;
        let Some(files) = &extra.files else { continue };
        if set.direction == Direction::Src && !files.get_ref().is_empty() {
            cx.err(
                &files.span(),
                format!("{}.domain_files", extra.label),
                "domains only work in sets with match = \"dst\"",
                "steer learns a domain's addresses from DNS answers, which are destinations; move the list to a dst set",
            );
            continue;
        }
        for (i, v) in files.get_ref().iter().enumerate() {
            let field = format!("{}.domain_files[{i}]", extra.label);
            if cx.mistyped(&field) {
                continue;
            }
            let path = base.join(v.get_ref());
            let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            // The same rules as the sets' address lists: a regular file, at most
            // MAX_LIST_BYTES, links only from root, a stable read, and admitted by a daemon's
            // memory budget (a name's parse holds about what a prefix's does).
            let bytes = match read_list(&path, &shown) {
                Ok(bytes) => bytes,
                Err(Unread::OverLimit(e)) => {
                    cx.err(&v.span(), &field, e.to_string(), e.hint());
                    continue;
                }
                Err(Unread::Failed(e)) => {
                    cx.err(
                        &v.span(),
                        &field,
                        format!(
                            "cannot read domain list `{}` (resolved to {}): {e}",
                            v.get_ref(),
                            shown.display()
                        ),
                        format!(
                            "{} (relative paths are relative to the config file's directory)",
                            e.hint()
                        ),
                    );
                    continue;
                }
            };
            sets[index].domain_files.push(shown);
            let lines = match parse_domain_list(&bytes) {
                Ok(lines) => lines,
                Err(not_a_list) => {
                    let place = Place {
                        file: &path,
                        line: not_a_list.line,
                        column: 1,
                    };
                    // None of its lines is repeated: it may be a file the reader of the
                    // message may not read.
                    cx.err_in(place, &field, "", not_a_list.message, not_a_list.hint);
                    continue;
                }
            };
            let mut bad = 0usize;
            for line in lines {
                let place = Place {
                    file: &path,
                    line: line.line,
                    column: line.column,
                };
                let domain = match line.domain {
                    Ok(d) => d,
                    Err((message, hint)) => {
                        bad += 1;
                        if bad <= REPORT_LIMIT {
                            cx.err_in(place, &field, shorten(&line.written), message, hint);
                        }
                        continue;
                    }
                };
                let written = line.written.as_str();
                match owners.get(&domain) {
                    Some(&other) if other == index => {}
                    Some(&other) => {
                        let other = sets[other].name.clone();
                        match policy {
                            DuplicatePolicy::Error => cx.err_in(
                                place,
                                &field,
                                written,
                                format!("domain `{domain}` is also in set `{other}`"),
                                "remove it from one of the sets, or set general.duplicates = \"first-set-wins\" to let the earlier set keep it",
                            ),
                            DuplicatePolicy::FirstSetWins => log::warn!(
                                "set `{}`: domain `{domain}` ({}:{}) is already in set `{other}`; dropped (general.duplicates = \"first-set-wins\")",
                                sets[index].name,
                                path.display(),
                                line.line
                            ),
                        }
                    }
                    None => {
                        owners.insert(domain.clone(), index);
                        sets[index].domains.push(domain);
                    }
                }
            }
            if bad > REPORT_LIMIT {
                cx.unshown += bad - REPORT_LIMIT - 1;
                cx.err_in(
                    Place {
                        file: &path,
                        line: 0,
                        column: 0,
                    },
                    &field,
                    "",
                    format!(
                        "{} more bad lines in this file are not shown",
                        bad - REPORT_LIMIT
                    ),
                    "is this really a list of domain names?",
                );
            }
        }
    }
}

/// One non-comment line of a domain list.
struct DomainLine {
    line: usize,
    /// 1-based column of the name, in characters.
    column: usize,
    /// The name as written (lossy for a line that is not UTF-8).
    written: String,
    /// The name normalized, or what is wrong with it and what to do.
    domain: Result<String, (String, String)>,
}

/// Why a whole file is refused; none of its lines is shown.
struct NotAList {
    line: usize,
    message: String,
    hint: String,
}

/// Splits a domain list into its non-comment lines, each checked as an inline domain is. A
/// UTF-16 file, or a file none of whose lines is a name (a wrong path, a link to some other
/// file), is not a list: refused whole, without repeating a line.
fn parse_domain_list(bytes: &[u8]) -> Result<Vec<DomainLine>, NotAList> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(NotAList {
            line: 1,
            message: "the file is UTF-16 encoded".into(),
            hint: "save the file as UTF-8 (or plain ASCII)".into(),
        });
    }
    let bytes = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
    let mut out = Vec::new();
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let entry = raw.split(|b| *b == b'#').next().unwrap_or(&[]);
        let text = String::from_utf8_lossy(entry);
        let written = text.trim();
        if written.is_empty() {
            continue;
        }
        let lead = &text[..text.len() - text.trim_start().len()];
        let domain = if std::str::from_utf8(entry).is_err() {
            Err((
                "the line is not valid UTF-8 text".to_owned(),
                "save the file as UTF-8 (or plain ASCII); entries are names like video.example"
                    .to_owned(),
            ))
        } else {
            normalize_domain(written)
        };
        out.push(DomainLine {
            line: n + 1,
            column: lead.chars().count() + 1,
            written: written.to_owned(),
            domain,
        });
    }
    let first_bad = out.iter().find(|l| l.domain.is_err()).map(|l| l.line);
    match first_bad {
        Some(line) if out.iter().all(|l| l.domain.is_err()) => Err(NotAList {
            line,
            message: format!(
                "this is not a domain list: none of its {} non-comment lines is a domain name \
                 (its lines are not shown)",
                out.len()
            ),
            hint: "check the path: a domain list holds one name per line, e.g. video.example"
                .into(),
        }),
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{BASE, Scratch, errors_of};

    #[test]
    fn domain_list_files_add_names_and_report_bad_lines_where_they_are() {
        let dir = Scratch::new("domain-files");
        dir.write(
            "a.txt",
            "\u{feff}# streaming\r\nVideo.Example.\r\n  *.bad.example\n\ncdn.example # inline\n",
        );
        let config = dir.write(
            "steer.toml",
            &format!(
                "{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\ndomain_files = [\"a.txt\"]\nfilter_aaaa = true\n"
            ),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!((e.line, e.column), (3, 3));
        assert_eq!(e.field, "set[s].domain_files[0]");
        assert!(e.hint.contains("`bad.example`"), "{}", e.hint);

        dir.write("a.txt", "video.example\ncdn.example\nvideo.example\n");
        let c = crate::config::load(&config).expect("valid");
        assert_eq!(c.sets[0].domains, ["video.example", "cdn.example"]);
        assert!(c.sets[0].filter_aaaa);
    }

    #[test]
    fn a_listed_domain_of_an_earlier_set_is_refused_at_its_line() {
        let dir = Scratch::new("domain-dup");
        dir.write("b.txt", "x.example\nshared.example\n");
        let config = dir.write(
            "steer.toml",
            &format!(
                "{BASE}\n[[set]]\nname = \"a\"\npolicy = \"p\"\ndomains = [\"shared.example\"]\n\
                 [[set]]\nname = \"b\"\npolicy = \"p\"\ndomain_files = [\"b.txt\"]\n"
            ),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("also in set `a`"));
    }

    #[test]
    fn a_file_without_a_single_name_is_not_a_domain_list_and_its_lines_are_not_shown() {
        let dir = Scratch::new("domain-not-a-list");
        let secret = "root:$y$j9T$secret:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n";
        let list = dir.write("shadow", secret);
        let config = dir.write(
            "steer.toml",
            &format!(
                "{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\ndomain_files = [\"shadow\"]\n"
            ),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(
            (e.file.as_path(), e.line, e.value.as_str()),
            (list.as_path(), 1, "")
        );
        assert!(
            e.message
                .starts_with("this is not a domain list: none of its 2 non-comment lines"),
            "{}",
            e.message
        );
        let shown = format!("{errors:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("daemon"),
            "{shown}"
        );

        let utf16: Vec<u8> = [0xff, 0xfe, b'a', 0, b'\n', 0].to_vec();
        std::fs::write(dir.path("utf16"), utf16).unwrap();
        let config = dir.write(
            "steer.toml",
            &format!("{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\ndomain_files = [\"utf16\"]\n"),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].message, "the file is UTF-16 encoded");
    }

    #[test]
    fn domain_lists_are_read_by_the_rules_of_every_list_file() {
        let dir = Scratch::new("domain-read-rules");
        // A directory (not a regular file) is refused before a byte is read.
        std::fs::create_dir_all(dir.path("a-dir")).unwrap();
        // A FIFO would block a plain read forever.
        let fifo = std::ffi::CString::new(dir.path("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for name in ["a-dir", "fifo"] {
            let config = dir.write(
                "steer.toml",
                &format!(
                    "{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\ndomain_files = [\"{name}\"]\n"
                ),
            );
            let errors = errors_of(&config);
            assert_eq!(errors.len(), 1, "{errors:#?}");
            assert!(
                errors[0].message.contains("not a regular file"),
                "{}",
                errors[0].message
            );
            assert_eq!(
                errors[0].hint,
                "give the path of a regular file (relative paths are relative to the config file's directory)"
            );
        }
    }
}

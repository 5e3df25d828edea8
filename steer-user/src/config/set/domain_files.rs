//! A set's domain list files (`domain_files`): one name per line, `#` comments, blank lines,
//! CRLF and a byte-order mark accepted; each name checked as an inline domain is. They are
//! read after the sets' prefixes and inline domains are resolved, and their names join the
//! set's `domains` unless an earlier set has them (refused or left to the earlier set by
//! `general.duplicates`, reported at the list file's line). `filter_aaaa` is taken here too.

use std::{collections::HashMap, path::PathBuf};

use super::REPORT_LIMIT;
use crate::{
    config::{
        DuplicatePolicy, Set,
        diag::{Ctx, Place, shorten},
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
            let text = match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
                    cx.err(
                        &v.span(),
                        &field,
                        format!(
                            "cannot read domain list `{}` (resolved to {}): {e}",
                            v.get_ref(),
                            shown.display()
                        ),
                        "relative paths are relative to the config file's directory; fix the path or create the file",
                    );
                    continue;
                }
            };
            sets[index]
                .domain_files
                .push(std::path::absolute(&path).unwrap_or_else(|_| path.clone()));
            let mut bad = 0usize;
            for (n, line) in text
                .strip_prefix('\u{feff}')
                .unwrap_or(&text)
                .lines()
                .enumerate()
            {
                let entry = line.split('#').next().unwrap_or("");
                let written = entry.trim();
                if written.is_empty() {
                    continue;
                }
                let column = entry.len() - entry.trim_start().len() + 1;
                let place = Place {
                    file: &path,
                    line: n + 1,
                    column,
                };
                let domain = match normalize_domain(written) {
                    Ok(d) => d,
                    Err((message, hint)) => {
                        bad += 1;
                        if bad <= REPORT_LIMIT {
                            cx.err_in(place, &field, shorten(written), message, hint);
                        }
                        continue;
                    }
                };
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
                                n + 1
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
}

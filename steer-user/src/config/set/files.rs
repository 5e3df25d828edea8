//! A set's list files: found relative to the configuration file's directory, read (within the
//! daemon's memory budget: `config::list_budget`), and their bad lines reported where
//! they are written (up to a limit, then summarized).

use std::path::{Path, PathBuf};

use super::{REPORT_LIMIT, pending::PendingSet};
use crate::config::{
    ListError, ListErrorKind,
    diag::{Ctx, Place, shorten},
    list::{list_pieces, parse_list_bytes, parse_list_sorted},
    list_budget::{Unread, read_list},
    schema::S,
};

/// Reads the list files of a configuration file's sets.
pub(super) struct ListFiles {
    /// The configuration file's directory (empty for the working directory).
    base_dir: PathBuf,
}

impl ListFiles {
    pub fn new(config_file: &Path) -> Self {
        let base_dir = match config_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::new(),
        };
        ListFiles { base_dir }
    }

    /// Reads `files[index]` of `set`, written as `v`, into the set's listed prefixes.
    pub fn read(&self, cx: &mut Ctx<'_>, set: &mut PendingSet, index: usize, v: &S<String>) {
        let field = format!("{}.files[{index}]", set.label);
        if cx.mistyped(&field) {
            return;
        }
        let written = v.get_ref();
        if written.trim().is_empty() {
            cx.err(
                &v.span(),
                &field,
                "empty file name",
                "write the path of a list file, e.g. \"lists/bypass.txt\"",
            );
            return;
        }
        let path = self.base_dir.join(written);
        let absolute = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        set.files.push(absolute.clone());
        let bytes = match read_list(&path, &absolute) {
            Ok(b) => b,
            Err(Unread::OverLimit(e)) => {
                cx.err(&v.span(), &field, e.to_string(), e.hint());
                return;
            }
            Err(Unread::Failed(e)) => {
                cx.err(
                    &v.span(),
                    &field,
                    format!(
                        "cannot read list file `{written}` of set `{}` (resolved to {}): {e}",
                        set.name,
                        absolute.display()
                    ),
                    format!(
                        "{} (relative paths are relative to the config file's directory, {})",
                        e.hint(),
                        self.shown_base_dir().display()
                    ),
                );
                return;
            }
        };
        let parts = list_pieces(bytes.len());
        match parse_list_sorted(bytes, set.allow_default_route, parts) {
            Ok((listed, _)) => {
                set.listed.union(listed);
                set.read_files.push((index, path));
            }
            // A list with bad lines is parsed again whole: that is what reports them all.
            Err(bytes) => {
                let errors = parse_list_bytes(&bytes, set.allow_default_route)
                    .err()
                    .unwrap_or_default();
                report_bad_lines(cx, set, &field, &path, &errors);
            }
        }
    }

    fn shown_base_dir(&self) -> PathBuf {
        std::path::absolute(self.base_dir.join(".")).unwrap_or_else(|_| self.base_dir.clone())
    }
}

/// Reports the first [`REPORT_LIMIT`] bad lines of a list file, then how many more there are.
fn report_bad_lines(
    cx: &mut Ctx<'_>,
    set: &PendingSet,
    field: &str,
    file: &Path,
    errors: &[ListError],
) {
    let place = |e: &ListError| Place {
        file,
        line: e.line,
        column: e.column,
    };
    for e in errors.iter().take(REPORT_LIMIT) {
        let hint = match &e.kind {
            ListErrorKind::Addr(a) => set.addr_hint(a),
            _ => e.hint(),
        };
        cx.err_in(place(e), field, shorten(&e.text), e.message(), hint);
    }
    if let Some(first_unshown) = errors.get(REPORT_LIMIT) {
        cx.unshown += errors.len() - REPORT_LIMIT - 1;
        cx.err_in(
            place(first_unshown),
            field,
            "",
            format!(
                "{} more bad lines in this file are not shown",
                errors.len() - REPORT_LIMIT
            ),
            "is this really a list of addresses?",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::REPORT_LIMIT;
    use crate::config::testing::{BASE, Scratch, errors_of};

    #[test]
    fn list_file_errors_are_placed_in_the_list_file_and_summarized_past_the_limit() {
        let dir = Scratch::new("list-errors");
        let mut list = "0.0.0.0/0\n".to_owned();
        for _ in 0..REPORT_LIMIT + 1 {
            list.push_str("  010.0.0.1\n");
        }
        list.push_str("192.0.2.0/24\n");
        let list_path = dir.write("list.txt", &list);
        let config = dir.write(
            "steer.toml",
            &format!("{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\nfiles = [\"list.txt\"]\n"),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), REPORT_LIMIT + 1, "{errors:#?}");
        assert!(
            errors
                .iter()
                .all(|d| d.file == list_path && d.field == "set[s].files[0]")
        );
        let first = &errors[0];
        assert_eq!((first.line, first.column), (1, 1));
        assert_eq!(first.value, "0.0.0.0/0");
        assert!(
            first
                .hint
                .starts_with("if set[s] really should take all such traffic, set `allow_default_route = true` in it"),
            "{}",
            first.hint
        );
        assert_eq!((errors[1].line, errors[1].column), (2, 3));
        let summary = &errors[REPORT_LIMIT];
        assert_eq!((summary.line, summary.column), (REPORT_LIMIT + 1, 3));
        assert_eq!(
            summary.message,
            "2 more bad lines in this file are not shown"
        );
        assert_eq!(summary.value, "");
        let all = crate::config::load(&config).unwrap_err();
        assert_eq!(all.count(), REPORT_LIMIT + 2, "every bad line is counted");
    }

    #[test]
    fn a_huge_bad_line_and_control_characters_are_shown_cut_and_escaped() {
        let dir = Scratch::new("list-huge-line");
        let huge = format!("1.2.3.0/24{}", "x".repeat(10 * 1024 * 1024));
        let list = format!("192.0.2.0/24\n{huge}\n1.2.3.\x1b[2J\x1b[31mEVIL\0\n");
        dir.write("list.txt", &list);
        let config = dir.write(
            "steer.toml",
            &format!("{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\nfiles = [\"list.txt\"]\n"),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(shown.iter().all(|s| s.len() < 1000), "{shown:#?}");
        assert!(
            shown[0].contains(&format!("… ({} bytes)", huge.len())),
            "{}",
            shown[0]
        );
        assert!(
            shown
                .iter()
                .all(|s| !s.contains('\x1b') && !s.contains('\0')),
            "{shown:#?}"
        );
        assert!(shown[1].contains("1.2.3.\\u{1b}[2J"), "{}", shown[1]);
    }

    #[test]
    fn a_file_without_a_single_address_is_not_a_list_and_its_lines_are_not_shown() {
        let dir = Scratch::new("not-a-list");
        let secret = "root:$y$j9T$secret:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n";
        let list_path = dir.write("shadow", secret);
        let config = dir.write(
            "steer.toml",
            &format!("{BASE}\n[[set]]\nname = \"s\"\npolicy = \"p\"\nfiles = [\"shadow\"]\n"),
        );
        let errors = errors_of(&config);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(
            (e.file.as_path(), e.line, e.value.as_str()),
            (list_path.as_path(), 1, "")
        );
        assert!(
            e.message
                .starts_with("this is not a list file: none of its 2 non-comment lines"),
            "{}",
            e.message
        );
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("daemon"),
            "{shown}"
        );
    }
}

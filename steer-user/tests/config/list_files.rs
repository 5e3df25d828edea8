//! List files: their format, their errors (placed in the list file), and a timing run over a
//! 1,000,000-line list.

use std::time::Instant;

use super::{common::TempDir, *};

#[test]
fn list_file_format_comments_crlf_and_bom() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/bom-crlf.txt\"]",
        1,
    );
    let c = parse_in_fixtures(&text).unwrap();
    // The set keeps the prefixes sorted; their lines are found again in the file.
    let bytes = std::fs::read(fixtures().join("lists/bom-crlf.txt")).unwrap();
    let got: Vec<(String, Option<usize>)> = c.sets[0]
        .all_prefixes()
        .map(|p| (p.to_string(), config::list_line_of(&bytes, &p)))
        .collect();
    assert_eq!(
        got,
        [
            ("192.0.2.0/24".to_string(), Some(2)),
            ("198.51.100.1/32".to_string(), Some(4)),
            ("2001:db8::/48".to_string(), Some(6)),
        ]
    );
}

#[test]
fn list_file_errors_name_file_line_and_column() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/bad.txt\"]",
        1,
    );
    let e = errors(&text);
    let list = fixtures().join("lists/bad.txt");
    let got: Vec<(PathBuf, usize, usize, String)> = e
        .errors
        .iter()
        .map(|d| (d.file.clone(), d.line, d.column, d.value.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (list.clone(), 3, 1, "010.0.0.0/8".to_string()),
            (list.clone(), 4, 3, "10.1.2.3/16".to_string()),
            (list.clone(), 6, 1, "10/8".to_string()),
            (list.clone(), 7, 1, "::ffff:192.0.2.1".to_string()),
            (list.clone(), 8, 1, "fe80::1%eth0".to_string()),
            (list.clone(), 9, 1, "0.0.0.0/0".to_string()),
        ],
        "{e}"
    );
    let shown = e.to_string();
    let first = shown.lines().nth(1).unwrap();
    assert_eq!(
        first,
        format!(
            "{}:4:3: set[s].files[0] = 10.1.2.3/16: `10.1.2.3/16` has host bits set; the network is 10.1.0.0/16; write `10.1.0.0/16` for the whole network, or `10.1.2.3` for just that address",
            list.display()
        )
    );
    assert!(
        e.errors[5]
            .hint
            .contains("if set[s] really should take all such traffic"),
        "{e}"
    );
}

#[test]
fn non_utf8_list_lines_are_reported() {
    let dir = TempDir::new("non-utf8");
    std::fs::write(dir.join("l.txt"), b"10.0.0.0/8\n10.\xff.0.0/16\n").unwrap();
    let cfg = dir.join("steer.toml");
    let text = MIN.replacen("prefixes = [\"10.0.0.0/8\"]", "files = [\"l.txt\"]", 1);
    std::fs::write(&cfg, &text).unwrap();
    let e = config::load(&cfg).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    let d = &e.errors[0];
    assert_eq!(
        (d.file.clone(), d.line, d.column),
        (dir.join("l.txt"), 2, 4)
    );
    assert!(d.message.contains("not valid UTF-8"), "{d}");
}

#[test]
fn a_missing_list_file_names_the_set_and_both_paths() {
    let text = MIN.replacen(
        "prefixes = [\"10.0.0.0/8\"]",
        "files = [\"lists/missing.txt\"]",
        1,
    );
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1);
    let m = &e.errors[0].message;
    assert!(m.contains("`lists/missing.txt`"), "{m}");
    assert!(m.contains("set `s`"), "{m}");
    assert!(
        m.contains(&fixtures().join("lists/missing.txt").display().to_string()),
        "{m}"
    );
    assert!(m.contains("No such file or directory"), "{m}");
}

#[test]
fn a_million_line_list_parses_and_loads() {
    const LINES: u32 = 1_000_000;
    let dir = TempDir::new("million");
    let mut text = String::with_capacity(LINES as usize * 20);
    text.push_str("# generated\n");
    for i in 0..LINES {
        if i % 4 == 3 {
            let _ = writeln!(text, "2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
        } else if i % 100 == 0 {
            let _ = writeln!(
                text,
                "{}/32   # host {i}",
                std::net::Ipv4Addr::from(0x0a00_0000 + i)
            );
        } else {
            let _ = writeln!(text, "{}", std::net::Ipv4Addr::from(0x0a00_0000 + i));
        }
    }
    std::fs::write(dir.join("big.txt"), &text).unwrap();
    let cfg = dir.join("steer.toml");
    std::fs::write(
        &cfg,
        MIN.replacen("prefixes = [\"10.0.0.0/8\"]", "files = [\"big.txt\"]", 1),
    )
    .unwrap();

    let start = Instant::now();
    let parsed = config::parse_list(&text, false).unwrap();
    let list_time = start.elapsed();
    assert_eq!(parsed.len(), LINES as usize);

    let start = Instant::now();
    let c = config::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let load_time = start.elapsed();
    assert_eq!(c.sets[0].prefix_count(), LINES as usize);
    println!(
        "{LINES} lines ({} MB): parse_list {list_time:?}, full config::load {load_time:?} ({} build)",
        text.len() / 1_000_000,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}

/// A list file over its limit is told to be split; the configuration file over its own, to
/// keep its prefixes in list files. (Both files are sparse: nothing that big is written.)
#[test]
fn a_file_too_big_is_told_what_to_do_for_its_kind() {
    let dir = TempDir::new("too-big");
    let list = std::fs::File::create(dir.join("big.txt")).unwrap();
    list.set_len(config::MAX_LIST_BYTES + 1).unwrap();
    let cfg = dir.join("steer.toml");
    std::fs::write(
        &cfg,
        MIN.replacen("prefixes = [\"10.0.0.0/8\"]", "files = [\"big.txt\"]", 1),
    )
    .unwrap();
    // Written over a second ago, as far as the reader can tell: no wait for it to settle.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
    for p in [dir.join("big.txt"), cfg.clone()] {
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let e = config::load(&cfg).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    let hint = &e.errors[0].hint;
    assert!(hint.contains("split the list into several files"), "{hint}");
    assert!(!hint.contains("configuration"), "{hint}");

    let huge = dir.join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(config::MAX_CONFIG_BYTES + 1)
        .unwrap();
    let e = config::load(&huge).unwrap_err();
    let hint = &e.errors[0].hint;
    assert!(hint.contains("a configuration this big"), "{hint}");
    assert!(!hint.contains("split the list"), "{hint}");
}

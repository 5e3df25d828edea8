//! Every configuration under examples/ is valid: `steer check -c` (the real binary) accepts each
//! `*.toml` found there, so a new example is checked the moment it is added. The BIRD snippets
//! there parse (`bird -p`), and the Grafana dashboard is JSON Grafana can import (its queries
//! are checked against a real daemon's metrics in the privileged tests, tests/tests/dashboard.rs).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

const STEER: &str = env!("CARGO_BIN_EXE_steer");

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every file under `dir` whose name ends with `suffix`, sorted.
fn find(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_configuration_passes_steer_check() {
    let configs = find(&examples_dir(), ".toml");
    let names: Vec<String> = configs
        .iter()
        .map(|p| {
            p.strip_prefix(examples_dir())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    // The setups examples/README.md explains: none may disappear unnoticed.
    for wanted in [
        "dual-wan-failover/steer.toml",
        "balance-3-1/steer.toml",
        "omr-bypass/steer.toml",
        "ha-pair/router-a.toml",
        "ha-pair/router-b.toml",
        "ha-routed/router-a.toml",
        "ha-routed/router-b.toml",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
    let mut failed = Vec::new();
    for config in &configs {
        let out = Command::new(STEER)
            .arg("check")
            .arg("-c")
            .arg(config)
            .env("NO_COLOR", "1")
            .output()
            .expect("run steer check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Notes (stderr, "note: ...") are fine; an error is not.
        let clean = stderr.lines().all(|l| l.starts_with("note: "));
        if !out.status.success() || !stdout.contains(": OK: ") || !clean {
            failed.push(format!("{}:\n{stdout}{stderr}", config.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn the_examples_readme_explains_every_example() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).expect("README.md");
    for config in find(&examples_dir(), ".toml") {
        let dir = config.parent().unwrap().file_name().unwrap();
        let dir = dir.to_string_lossy();
        assert!(
            readme.contains(&format!("]({dir}/")),
            "examples/README.md links no file of {dir}/"
        );
    }
}

#[test]
fn bird_snippets_parse() {
    let snippets = find(&examples_dir(), "bird.conf");
    assert!(
        !snippets.is_empty(),
        "the routed HA pair has a BIRD snippet"
    );
    let have = Command::new("sh")
        .args(["-c", "command -v bird"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "bird is missing: `cargo xtask setup` installs bird2"
        );
        eprintln!("note: bird is not installed: the BIRD snippets are not parsed");
        return;
    }
    for conf in snippets {
        let out = Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(&conf)
            .output()
            .expect("run bird -p");
        assert!(
            out.status.success(),
            "bird -p -c {}: {}",
            conf.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dashboard_is_importable_grafana_json() {
    let path = examples_dir().join("grafana/steer-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(d["title"].is_string() && d["panels"].is_array(), "{d}");
    // Importable anywhere: the datasource is a variable the importer picks, never the uid of
    // the datasource it was exported from.
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut targets = 0;
    for panel in all_panels(&d) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            targets += 1;
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(balanced(expr), "unbalanced brackets or quotes in `{expr}`");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
        }
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        }
    }
    assert!(targets >= 10, "{targets} queries");
}

/// The panels, those inside collapsed rows included.
fn all_panels(d: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Whether the brackets of a PromQL expression pair up, outside its string literals.
fn balanced(expr: &str) -> bool {
    let mut open = Vec::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => open.push(c),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(want) {
                    return false;
                }
            }
            _ => {}
        }
    }
    !expr.trim().is_empty() && open.is_empty() && quote.is_none()
}

#[test]
fn bracket_check_finds_mistakes() {
    assert!(balanced("sum by (le) (rate(x{a=\"(\"}[5m]))"));
    assert!(!balanced("sum(rate(x[5m])"));
    assert!(!balanced("x{a=\"b}"));
    assert!(!balanced("rate(x[5m)]"));
}

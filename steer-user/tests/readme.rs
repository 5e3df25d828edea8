//! The configuration shown in README.md is valid: `steer check` accepts it as printed.

mod common;

use std::path::PathBuf;

use common::TempDir;

#[test]
fn the_readme_example_configuration_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme
        .find("```toml\n")
        .expect("a toml block in the README")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("closed block");
    let dir = TempDir::new("example");
    let path = dir.join("steer.toml");
    std::fs::write(&path, &readme[start..end]).unwrap();
    let config =
        steer::config::load(&path).unwrap_or_else(|e| panic!("README example is invalid:\n{e}"));
    assert_eq!(config.wans.len(), 2);
    assert_eq!(config.sets.len(), 2);
    assert_eq!(
        config.default.as_ref().map(|d| d.policy.as_str()),
        Some("balanced")
    );
}

//! The HA configuration in README.md's "Two routers (HA)" section is valid as printed.

mod common;

use std::path::PathBuf;

use common::TempDir;
use steer::config::Engine;

#[test]
fn the_readme_ha_example_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .find("## Two routers (HA)")
        .expect("a \"Two routers (HA)\" section");
    let start = section
        + readme[section..]
            .find("```toml\n")
            .expect("a toml block in the section")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("closed block");
    let dir = TempDir::new("ha-example");
    let path = dir.join("steer.toml");
    std::fs::write(&path, &readme[start..end]).unwrap();
    let config =
        steer::config::load(&path).unwrap_or_else(|e| panic!("README HA example is invalid:\n{e}"));
    assert_eq!(config.vrrp.len(), 1);
    let v = &config.vrrp[0];
    let Engine::Steer(s) = &v.engine else {
        panic!("steer speaks the example's instance")
    };
    assert_eq!((s.vrid, s.priority, s.advert_interval_cs), (51, 150, 10));
    assert!(v.wans.iter().any(|w| w.wan == "dsl" && w.master_only));
}

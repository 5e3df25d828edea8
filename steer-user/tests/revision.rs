//! The build script's reading of HEAD (`steer --version`), on made-up repositories: each layout
//! git leaves, and the files watched, which decide when cargo rebuilds steer-user.

mod common;

#[path = "../build/git_head.rs"]
mod git_head;

use std::path::{Path, PathBuf};

use common::TempDir;
use git_head::git_head;

const A: &str = "1111111111111111111111111111111111111111";
const B: &str = "2222222222222222222222222222222222222222";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn head(root: &Path) -> (String, Vec<PathBuf>) {
    git_head(root).unwrap_or_else(|| panic!("no HEAD read in {}", root.display()))
}

#[test]
fn a_branch_with_a_loose_ref_watches_head_and_that_ref_only() {
    let dir = TempDir::new("loose");
    let root = dir.join("src");
    let git = root.join(".git");
    write(&git.join("HEAD"), "ref: refs/heads/main\n");
    write(&git.join("refs/heads/main"), &format!("{A}\n"));
    write(&git.join("refs/heads/other"), &format!("{B}\n"));
    let (hash, watched) = head(&root);
    assert_eq!(hash, A);
    assert_eq!(watched, [git.join("HEAD"), git.join("refs/heads/main")]);
}

#[test]
fn a_worktree_reads_its_own_head_and_the_common_refs() {
    let dir = TempDir::new("worktree");
    let main = dir.join("main/.git");
    let wt_git = main.join("worktrees/wt");
    write(&main.join("HEAD"), "ref: refs/heads/main\n");
    write(&main.join("refs/heads/main"), &format!("{A}\n"));
    write(&main.join("refs/heads/feature"), &format!("{B}\n"));
    write(&wt_git.join("HEAD"), "ref: refs/heads/feature\n");
    write(&wt_git.join("commondir"), "../..\n");
    let root = dir.join("wt");
    write(
        &root.join(".git"),
        &format!("gitdir: {}\n", wt_git.display()),
    );
    let (hash, watched) = head(&root);
    assert_eq!(hash, B);
    assert_eq!(
        watched,
        [wt_git.join("HEAD"), wt_git.join("../../refs/heads/feature")]
    );
}

#[test]
fn a_packed_ref_and_a_detached_head_are_read() {
    let dir = TempDir::new("packed");
    let root = dir.join("src");
    let git = root.join(".git");
    write(&git.join("HEAD"), "ref: refs/heads/main\n");
    write(
        &git.join("packed-refs"),
        &format!(
            "# pack-refs with: peeled fully-peeled sorted\n{B} refs/heads/dev\n{A} refs/heads/main\n"
        ),
    );
    std::fs::create_dir_all(git.join("refs/heads")).unwrap();
    let (hash, watched) = head(&root);
    assert_eq!(hash, A);
    // The next commit writes refs/heads/main, which does not exist yet: its directory is
    // watched instead.
    assert!(watched.contains(&git.join("packed-refs")), "{watched:?}");
    assert!(watched.contains(&git.join("refs/heads")), "{watched:?}");

    write(&git.join("HEAD"), &format!("{B}\n"));
    assert_eq!(head(&root), (B.to_owned(), vec![git.join("HEAD")]));
}

#[test]
fn no_checkout_or_nonsense_is_no_revision() {
    let dir = TempDir::new("none");
    assert_eq!(git_head(&dir.join("tarball")), None);
    let git = dir.join("broken/.git");
    write(&git.join("HEAD"), "ref: refs/heads/gone\n");
    assert_eq!(git_head(&dir.join("broken")), None);
    write(&git.join("HEAD"), "not a hash\n");
    assert_eq!(git_head(&dir.join("broken")), None);
}

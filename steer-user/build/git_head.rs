//! The commit a git checkout's HEAD points at, read from the files under `.git` (no `git`
//! binary needed at build time): a plain checkout, a worktree (`.git` is a `gitdir:` file),
//! a branch whose ref is loose or only packed, a detached HEAD.

use std::path::{Path, PathBuf};

/// HEAD's commit (hex) of the checkout at `root`, and the files it was read from: the ones
/// whose change means another commit (a build script reruns on them). `None` outside a
/// checkout or when the files do not make sense.
pub fn git_head(root: &Path) -> Option<(String, Vec<PathBuf>)> {
    let dot_git = root.join(".git");
    // A worktree's (or submodule's) `.git` is a file: `gitdir: <path>`.
    let git_dir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
        if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        }
    } else {
        dot_git
    };
    // Branches live in the common directory of a worktree's repository.
    let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    let head_file = git_dir.join("HEAD");
    let head = std::fs::read_to_string(&head_file).ok()?;
    let mut watched = vec![head_file];
    let head = head.trim();
    let Some(name) = head.strip_prefix("ref:").map(str::trim) else {
        // Detached: HEAD holds the commit itself.
        return is_hash(head).then(|| (head.to_owned(), watched));
    };
    for dir in [&git_dir, &common_dir] {
        let loose = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&loose) {
            watched.push(loose);
            let hash = text.trim();
            return is_hash(hash).then(|| (hash.to_owned(), watched));
        }
    }
    // Only packed (a fresh clone): the next commit writes the loose ref, which does not exist
    // yet and so cannot be watched (cargo would rerun on every build); its directory can.
    let packed = common_dir.join("packed-refs");
    watched.push(packed.clone());
    if let Some(parent) = common_dir.join(name).parent().filter(|p| p.is_dir()) {
        watched.push(parent.to_owned());
    }
    let text = std::fs::read_to_string(&packed).ok()?;
    let hash = text.lines().find_map(|line| {
        let (hash, refname) = line.split_once(' ')?;
        (refname.trim() == name && is_hash(hash)).then(|| hash.to_owned())
    })?;
    Some((hash, watched))
}

fn is_hash(s: &str) -> bool {
    s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

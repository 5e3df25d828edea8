//! `steer check --kernel`: whether this kernel has what steer needs, each missing piece named
//! with the kernel option that provides it. Every probe asks the kernel itself (creates a map
//! and closes it, queries the loopback's tcx chain, reads a sysctl); nothing is attached or
//! changed.
//!
//! What it cannot see without changing the system (policy routing rules, conntrack marks in
//! nftables) the daemon reports when it applies them.

use std::path::Path;

use aya::{
    maps::MapType,
    programs::{ProgramError, SchedClassifier, TcAttachType},
    sys::{SyscallError, is_map_supported},
};

use crate::dataplane::pin::is_bpffs;

/// How one probe came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// steer cannot run (or cannot do what the line names) on this kernel.
    Missing,
    /// The kernel lacks it, or this process may not check it: the line says what follows.
    Warning,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Missing => "MISSING",
            Verdict::Warning => "warning",
        }
    }
}

/// One feature: what it is, the kernel option behind it, and what the probe found.
#[derive(Clone, Debug)]
pub struct Finding {
    pub feature: &'static str,
    pub option: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<8} {} ({}): {}",
            self.verdict.as_str(),
            self.feature,
            self.option,
            self.detail
        )
    }
}

/// The map types the classifier is built from, with the option and kernel release they need.
const MAPS: &[(MapType, &str, &str)] = &[
    (
        MapType::Array,
        "BPF array maps (policy table, WANs)",
        "CONFIG_BPF_SYSCALL",
    ),
    (
        MapType::PerCpuArray,
        "BPF per-CPU array maps (counters)",
        "CONFIG_BPF_SYSCALL, Linux 4.6+",
    ),
    (
        MapType::Hash,
        "BPF hash maps (hosts learned from DNS)",
        "CONFIG_BPF_SYSCALL",
    ),
    (
        MapType::LruHash,
        "BPF LRU hash maps (the rule of fragmented datagrams)",
        "CONFIG_BPF_SYSCALL, Linux 4.10+",
    ),
    (
        MapType::LpmTrie,
        "BPF LPM trie maps (local destinations, the ordered rules' addresses)",
        "CONFIG_BPF_SYSCALL, Linux 4.11+",
    ),
    (
        MapType::ArrayOfMaps,
        "BPF array-of-maps (the prefix sets' range tables)",
        "CONFIG_BPF_SYSCALL, Linux 4.12+",
    ),
];

/// Probes everything, in the order a reader fixes them: the BPF system call first.
pub fn probe() -> Vec<Finding> {
    let mut out: Vec<Finding> = MAPS
        .iter()
        .map(|&(ty, feature, option)| map_finding(ty, feature, option))
        .collect();
    out.push(tcx());
    out.push(jit(Path::new("/proc/sys/net/core/bpf_jit_enable")));
    out.push(bpffs(Path::new(crate::config::DEFAULT_PIN_DIR)));
    out
}

/// Whether any required feature is missing.
pub fn any_missing(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.verdict == Verdict::Missing)
}

fn map_finding(ty: MapType, feature: &'static str, option: &'static str) -> Finding {
    let (verdict, detail) = match is_map_supported(ty) {
        Ok(true) => (Verdict::Ok, "created and closed one".to_owned()),
        Ok(false) => (
            Verdict::Missing,
            "the kernel refuses the map type".to_owned(),
        ),
        Err(e) => syscall_failure(&e),
    };
    Finding {
        feature,
        option,
        verdict,
        detail,
    }
}

/// A bpf() call that failed outright: no system call, or no permission.
fn syscall_failure(e: &SyscallError) -> (Verdict, String) {
    match e.io_error.raw_os_error() {
        Some(libc::ENOSYS) => (
            Verdict::Missing,
            "the bpf() system call does not exist: a kernel built with CONFIG_BPF_SYSCALL=y"
                .to_owned(),
        ),
        Some(libc::EPERM) => (
            Verdict::Missing,
            "not permitted: run as root, or with CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN \
             before Linux 5.8)"
                .to_owned(),
        ),
        _ => (Verdict::Missing, format!("bpf() failed: {}", e.io_error)),
    }
}

/// The classifier is attached with tcx (Linux 6.6+); querying the loopback's tcx ingress chain
/// tells whether the kernel has it without attaching anything.
fn tcx() -> Finding {
    let (verdict, detail) = match SchedClassifier::query_tcx("lo", TcAttachType::Ingress) {
        Ok((_, progs)) => (
            Verdict::Ok,
            format!("queried lo's ingress chain ({} programs)", progs.len()),
        ),
        Err(e) => tcx_failure(&e),
    };
    Finding {
        feature: "tcx attachment of the TC classifier",
        option: "CONFIG_NET_XGRESS, Linux 6.6+",
        verdict,
        detail,
    }
}

fn tcx_failure(e: &ProgramError) -> (Verdict, String) {
    let errno = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EINVAL) => (
            Verdict::Missing,
            "the kernel has no tcx: steer needs Linux 6.6 or later".to_owned(),
        ),
        Some(libc::EPERM) => (
            Verdict::Missing,
            "not permitted: run as root, or with CAP_NET_ADMIN".to_owned(),
        ),
        _ => (Verdict::Missing, format!("querying lo's tcx chain: {e}")),
    }
}

/// Without a JIT the classifier is interpreted: it works, several times slower.
fn jit(sysctl: &Path) -> Finding {
    let (verdict, detail) = match std::fs::read_to_string(sysctl) {
        Ok(v) if v.trim() == "0" => (
            Verdict::Warning,
            format!(
                "{} is 0: programs are interpreted (slower); set it to 1",
                sysctl.display()
            ),
        ),
        Ok(v) => (Verdict::Ok, format!("{} = {}", sysctl.display(), v.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            Verdict::Warning,
            "no JIT in this kernel: programs are interpreted (slower)".to_owned(),
        ),
        Err(e) => (
            Verdict::Warning,
            format!("cannot read {}: {e}", sysctl.display()),
        ),
    };
    Finding {
        feature: "BPF JIT compiler",
        option: "CONFIG_BPF_JIT",
        verdict,
        detail,
    }
}

/// Pins live on bpffs: mounted by the init system on most distributions, else by steer.
fn bpffs(pin_dir: &Path) -> Finding {
    let mount = pin_dir.parent().unwrap_or(pin_dir);
    let (verdict, detail) = if is_bpffs(mount) {
        (Verdict::Ok, format!("{} is mounted", mount.display()))
    } else if std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| has_bpf_fs(&f)) {
        (
            Verdict::Ok,
            format!(
                "{} is not mounted: `steer run` mounts it (needs CAP_SYS_ADMIN)",
                mount.display()
            ),
        )
    } else {
        (
            Verdict::Missing,
            "the kernel has no bpf filesystem to pin the classifier on".to_owned(),
        )
    };
    Finding {
        feature: "BPF filesystem (pins)",
        option: "CONFIG_BPF_SYSCALL",
        verdict,
        detail,
    }
}

fn has_bpf_fs(filesystems: &str) -> bool {
    filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("bpf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_jit_sysctl_and_a_missing_one_are_warnings_naming_the_option() {
        let dir = std::env::temp_dir().join(format!("steer-jit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let off = dir.join("bpf_jit_enable");
        std::fs::write(&off, "0\n").unwrap();
        let f = jit(&off);
        assert_eq!(f.verdict, Verdict::Warning);
        assert!(f.to_string().contains("CONFIG_BPF_JIT"), "{f}");
        std::fs::write(&off, "1\n").unwrap();
        assert_eq!(jit(&off).verdict, Verdict::Ok);
        let f = jit(&dir.join("absent"));
        assert_eq!(f.verdict, Verdict::Warning);
        assert!(f.detail.contains("no JIT"), "{f}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_bpf_filesystem_is_found_in_proc_filesystems() {
        assert!(has_bpf_fs("nodev\tsysfs\nnodev\tbpf\n\text4\n"));
        assert!(!has_bpf_fs("nodev\tsysfs\n\text4\n"));
    }
}

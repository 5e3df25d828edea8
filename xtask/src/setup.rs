//! `cargo xtask setup`: everything a fresh machine lacks to build and test steer.
//!
//! Each step checks first and does nothing when its piece is already there, so a second run takes
//! about a second.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{self, output},
    ebpf_toolchain,
};

/// Debian packages the tests, the demo and the benchmarks use: iproute2 (ip, tc), nftables (NAT
/// in the lab; a contender of the forwarding benchmark), conntrack (checking flushed flows),
/// iputils-ping and procps (sysctl), bpftool and tcpdump (looking at what the kernel holds when
/// something goes wrong); for the forwarding benchmark and its test: netsniff-ng (trafgen, the
/// generator), iptables and ipset (the iptables+ipset contender), ethtool (veth offloads and
/// GRO, which decide where veth receives); for WANs as they come: dnsmasq-base (the ISP's DHCP
/// server), busybox (udhcpc), isc-dhcp-client (dhclient) and dhcpcd-base (dhcpcd), the router's
/// DHCP clients whose hooks in contrib/dhcp are tested, socat (a point-to-point link between
/// namespaces, like a PPP session) and radvd (router advertisements); for IPv6 on several
/// WANs: isc-dhcp-server (`dhcpd -6`, the ISPs' prefix delegation to the router's dhcpcd);
/// for domain sets: bind9-dnsutils (dig, the lab's clients), dnsperf (the DNS benchmark), and
/// iptables again (snoop mode's NFQUEUE chain on kernels whose nftables has no queue
/// expression) with dnsmasq-base (the resolver behind steer's DNS forwarder); the HA tests'
/// real peers: keepalived (VRRP interop, the keepalived engine), bird2 (OSPF for the routed
/// VIP) and conntrackd (connections across a failover); for the service files: systemd
/// (`systemd-analyze verify` on the unit) and util-linux (`setpriv`, which runs the daemon with
/// exactly the unit's capabilities); for `cargo xtask dist` and its test tier:
/// gcc-aarch64-linux-gnu (the linker of the static aarch64 build) and qemu-user (qemu-aarch64
/// runs that binary in the tests).
const PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "conntrack",
    "iputils-ping",
    "procps",
    "bpftool",
    "tcpdump",
    "netsniff-ng",
    "iptables",
    "ipset",
    "ethtool",
    "dnsmasq-base",
    "busybox",
    "isc-dhcp-client",
    "dhcpcd-base",
    "isc-dhcp-server",
    "socat",
    "radvd",
    "bind9-dnsutils",
    "dnsperf",
    "keepalived",
    "bird2",
    "conntrackd",
    "systemd",
    "util-linux",
    // `bash -n`, `zsh -n`, `fish -n` check the completion scripts; `man -l` (man-db, with
    // groff-base) renders the man pages, both in steer-user/tests/cli_conventions.rs.
    "zsh",
    "fish",
    "man-db",
    "groff-base",
    "gcc-aarch64-linux-gnu",
    "qemu-user",
];

/// The Rust targets of the static builds (`cargo xtask dist`); their std ships the musl C
/// library, so no musl toolchain is needed.
const DIST_TARGETS: [&str; 2] = [crate::dist::X86_64.triple, crate::dist::AARCH64.triple];

/// bpf-linker release line known to build against the nightly toolchain's LLVM.
const BPF_LINKER_VERSION: &str = "^0.13";

pub fn run() -> Result<()> {
    let started = Instant::now();
    cmd::step("setup");
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    ensure_nightly_clippy()?;
    ensure_bpf_linker(&sysroot)?;
    ensure_packages()?;
    ensure_dist_targets()?;
    ensure_bpffs()?;
    ensure_cargo_fuzz()?;
    // What steer-user's build script will demand, checked its way.
    ebpf_toolchain::check()
        .map_err(|missing| anyhow::anyhow!("the eBPF toolchain is still not ready: {missing}"))?;
    eprintln!("    setup done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn ok(what: &str) {
    eprintln!("    ok  {what}");
}

/// The nightly toolchain's sysroot, installing the toolchain if rustup can.
fn nightly_sysroot() -> Result<PathBuf> {
    if let Some(sysroot) = ebpf_toolchain::nightly_sysroot() {
        ok("nightly toolchain");
        return Ok(sysroot);
    }
    eprintln!("    installing the nightly toolchain");
    cmd::run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
    ]))
    .context("the eBPF programs need a nightly Rust toolchain and rustup could not install one")?;
    ebpf_toolchain::nightly_sysroot().context("nightly rustc does not run")
}

fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if ebpf_toolchain::has_rust_src(sysroot) {
        ok("rust-src (nightly)");
        return Ok(());
    }
    eprintln!("    installing rust-src for nightly");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// `cargo xtask lint` runs clippy on the eBPF crate with the nightly toolchain.
fn ensure_nightly_clippy() -> Result<()> {
    if output(
        "rustup",
        &["run", "nightly", "cargo", "clippy", "--version"],
    )
    .is_some()
    {
        ok("clippy (nightly)");
        return Ok(());
    }
    eprintln!("    installing clippy for nightly");
    cmd::run(Command::new("rustup").args(["component", "add", "clippy", "--toolchain", "nightly"]))
}

/// bpf-linker must link against the same LLVM that nightly rustc emits bitcode for; no prebuilt
/// binary is downloadable here, so it is built from crates.io against the libLLVM shipped inside
/// the toolchain.
fn ensure_bpf_linker(sysroot: &Path) -> Result<()> {
    if ebpf_toolchain::has_bpf_linker() {
        ok("bpf-linker");
        return Ok(());
    }
    let version =
        output("rustup", &["run", "nightly", "rustc", "-vV"]).context("nightly rustc -vV")?;
    let major = llvm_major(&version).context("nightly rustc -vV reports no LLVM version")?;
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    let prefix = llvm_prefix_dir(major)?;
    let link = prefix.join("lib/libLLVM.so");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("link {} -> {}", link.display(), libllvm.display()))?;
    eprintln!(
        "    building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} ({}), about a minute",
        libllvm.display()
    );
    cmd::run(
        Command::new(cmd::cargo_bin())
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )
    .context("building bpf-linker failed")
}

/// "LLVM version: 22.1.4" -> 22.
fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The toolchain's shared libLLVM (`libLLVM.so.<ver>-rust-<ver>-nightly`). Its sibling
/// `libLLVM-<major>-rust-...so` is a linker script, not a library, so only ELF files count.
fn find_libllvm(libdir: &Path) -> Result<PathBuf> {
    let entries =
        std::fs::read_dir(libdir).with_context(|| format!("read {}", libdir.display()))?;
    let is_elf = |p: &Path| {
        let mut magic = [0u8; 4];
        std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"\x7fELF"
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .filter(|p| is_elf(p))
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .with_context(|| format!("no shared libLLVM in {}", libdir.display()))
}

fn llvm_prefix_dir(major: u32) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(format!(".cache/steer/llvm-{major}")))
}

fn ensure_packages() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        ok(&format!("Debian packages ({})", PACKAGES.join(", ")));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root to install them",
            missing.join(" ")
        );
    }
    eprintln!("    installing {}", missing.join(" "));
    install_packages(
        Path::new("apt-get"),
        &missing,
        APT_LOCK_WAIT,
        APT_LOCK_RETRY,
    )
}

/// How long setup waits for another apt or dpkg to release its lock: on a fresh Debian,
/// unattended-upgrades (and apt-daily's `apt-get update`) hold it for minutes after boot.
const APT_LOCK_WAIT: Duration = Duration::from_secs(600);
/// Between tries of an `apt-get update` that found its lock taken.
const APT_LOCK_RETRY: Duration = Duration::from_secs(5);

/// `apt-get update` then `apt-get install` of `missing`, waiting up to `lock_wait` for a lock
/// another apt or dpkg holds; a failure says what to do.
fn install_packages(
    apt: &Path,
    missing: &[&str],
    lock_wait: Duration,
    retry: Duration,
) -> Result<()> {
    let deadline = Instant::now() + lock_wait;
    apt_get(apt, &["update", "-qq"], deadline, retry)
        .with_context(|| apt_failed("apt-get update", missing, lock_wait))?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing);
    apt_get(apt, &args, deadline, retry)
        .with_context(|| apt_failed("apt-get install", missing, lock_wait))
}

/// Runs apt-get (its stderr shown as it comes, and kept): dpkg's lock is waited for by apt
/// itself (`DPkg::Lock::Timeout`, until `deadline`); the lists lock of `apt-get update`, which
/// that option does not cover (apt 2.6), by trying again every `retry` until `deadline`.
fn apt_get(apt: &Path, args: &[&str], deadline: Instant, retry: Duration) -> Result<()> {
    loop {
        let timeout = deadline.saturating_duration_since(Instant::now()).as_secs();
        let mut child = Command::new(apt)
            .args(["-o", &format!("DPkg::Lock::Timeout={timeout}")])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", apt.display()))?;
        let mut stderr = String::new();
        if let Some(pipe) = child.stderr.take() {
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok)
            {
                eprintln!("{line}");
                stderr.push_str(&line);
                stderr.push('\n');
            }
        }
        let status = child.wait()?;
        if status.success() {
            return Ok(());
        }
        if !is_lock_error(&stderr) || Instant::now() + retry > deadline {
            bail!("`{} {}` failed ({status})", apt.display(), args.join(" "));
        }
        eprintln!(
            "    another apt or dpkg holds its lock: trying again in {} s",
            retry.as_secs()
        );
        std::thread::sleep(retry);
    }
}

/// Whether apt-get failed because another process held one of its locks (the lock's path is in
/// the message in every language).
fn is_lock_error(stderr: &str) -> bool {
    [
        "/var/lib/dpkg/lock",
        "/var/lib/apt/lists/lock",
        "/var/cache/apt/archives/lock",
    ]
    .iter()
    .any(|lock| stderr.contains(lock))
}

fn apt_failed(step: &str, missing: &[&str], lock_wait: Duration) -> String {
    format!(
        "{step} failed, so the Debian packages {packages} are not installed. If it could not get \
         a lock (/var/lib/dpkg/lock-frontend, /var/lib/apt/lists/lock), another apt or dpkg held \
         it for more than {minutes} min: on a fresh Debian, unattended-upgrades installing \
         updates (`systemctl status unattended-upgrades apt-daily apt-daily-upgrade`); wait for \
         it to finish, then run `cargo xtask setup` again. Otherwise install them yourself: \
         `apt-get install {packages}`",
        packages = missing.join(" "),
        minutes = lock_wait.as_secs() / 60,
    )
}

/// The packages dpkg does not list as installed, from one dpkg-query for all of them. It exits 1
/// when it has never heard of some, but still lists the others, so its status is not a verdict.
fn missing_packages() -> Vec<&'static str> {
    let listed = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(PACKAGES)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    not_installed(PACKAGES, &listed)
}

/// The `wanted` packages that `listed` (lines of "${Package} ${Status}") does not show installed.
fn not_installed<'a>(wanted: &[&'a str], listed: &str) -> Vec<&'a str> {
    let installed: HashSet<&str> = listed
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

/// Whether the effective uid is 0, from /proc/self/status ("Uid: real effective saved fs"): what
/// `geteuid` returns, without spawning `id` or adding a libc dependency to the xtask.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The fuzz targets run under `cargo fuzz` (with the nightly toolchain, installed above).
/// Installing it takes a minute or two; where that fails, the fuzz tier of `cargo xtask test`
/// is skipped, except under CI, where setup fails.
fn ensure_cargo_fuzz() -> Result<()> {
    if let Some(version) = crate::fuzz::cargo_fuzz_version() {
        ok(&version);
        return Ok(());
    }
    eprintln!("    installing cargo-fuzz (about two minutes)");
    let installed =
        cmd::run(Command::new(cmd::cargo_bin()).args(["install", "cargo-fuzz", "--locked"]));
    match installed {
        Ok(()) if crate::fuzz::cargo_fuzz_version().is_some() => Ok(()),
        Ok(()) => {
            bail!("cargo-fuzz was installed but `rustup run nightly cargo fuzz` does not run")
        }
        Err(e) if crate::fuzz::in_ci() => Err(e.context("installing cargo-fuzz failed")),
        Err(e) => {
            eprintln!(
                "    WARNING: installing cargo-fuzz failed ({e:#}): the fuzz tier is skipped"
            );
            Ok(())
        }
    }
}

/// The musl targets, for the toolchain that runs the xtask (rustup sets RUSTUP_TOOLCHAIN for it,
/// so `rustup target` acts on that one).
fn ensure_dist_targets() -> Result<()> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    let missing: Vec<&str> = DIST_TARGETS
        .into_iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        ok(&format!("Rust targets {}", DIST_TARGETS.join(", ")));
        return Ok(());
    }
    eprintln!("    adding the Rust targets {}", missing.join(" "));
    cmd::run(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
}

/// What `cargo xtask dist` needs of `target` in the nightly toolchain, which rebuilds the
/// standard library for it: the musl C library and start files of the target's prebuilt
/// standard library (`lib/self-contained`). Added with rustup; where the nightly has no such
/// component (rustup found none for aarch64 musl of the nightly the eBPF build uses), they are
/// copied from the stable toolchain's target, which `run` installs (the same musl). Not part
/// of `run`: only the release builds need it.
pub fn ensure_nightly_dist_target(target: &str) -> Result<()> {
    let nightly = nightly_sysroot()?;
    let wanted = nightly.join(format!("lib/rustlib/{target}/lib/self-contained"));
    if wanted.join("libc.a").is_file() {
        return Ok(());
    }
    eprintln!("    adding the Rust target {target} to the nightly toolchain");
    // Its failure is said below, in steer's words.
    let added = Command::new("rustup")
        .args(["target", "add", "--toolchain", "nightly", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if added {
        return Ok(());
    }
    let stable =
        output("rustc", &["--print", "sysroot"]).context("the stable toolchain's sysroot")?;
    let stable =
        PathBuf::from(stable.trim()).join(format!("lib/rustlib/{target}/lib/self-contained"));
    if !stable.join("libc.a").is_file() {
        bail!(
            "the nightly toolchain has no {target} (rustup could not add it) and the stable one \
             has no musl C library for it in {}: run `cargo xtask setup`",
            stable.display()
        );
    }
    eprintln!(
        "    rustup has no {target} for this nightly: its musl C library and start files come \
         from the stable toolchain ({})",
        stable.display()
    );
    std::fs::create_dir_all(&wanted)?;
    for entry in std::fs::read_dir(&stable)? {
        let entry = entry?;
        std::fs::copy(entry.path(), wanted.join(entry.file_name()))?;
    }
    Ok(())
}

/// Pinned maps live on bpffs; mount it where the system did not.
fn ensure_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        l.split_whitespace().nth(1) == Some("/sys/fs/bpf")
            && l.split_whitespace().nth(2) == Some("bpf")
    }) {
        ok("bpffs on /sys/fs/bpf");
        return Ok(());
    }
    if !is_root() {
        bail!("bpffs is not mounted on /sys/fs/bpf: run `cargo xtask setup` as root");
    }
    std::fs::create_dir_all("/sys/fs/bpf").ok();
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    ok("mounted bpffs on /sys/fs/bpf");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::{install_packages, is_root, llvm_major, not_installed};

    /// A stand-in for apt-get in a fresh directory: it logs its arguments to `args` and fails
    /// with apt's lock message (on `lock`) its first `fails` runs.
    fn fake_apt(tag: &str, lock: &str, fails: u32) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("xtask-apt-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let apt = dir.join("apt-get");
        let d = dir.display();
        std::fs::write(
            &apt,
            format!(
                "#!/bin/sh\necho \"$*\" >> {d}/args\n\
                 n=$(($(cat {d}/count 2>/dev/null || echo 0) + 1)); echo $n > {d}/count\n\
                 if [ $n -le {fails} ]; then\n\
                 echo 'E: Could not get lock {lock}. It is held by process 1 (unattended-upgr)' >&2\n\
                 exit 100; fi\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&apt, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        (apt, dir)
    }

    #[test]
    fn apt_waits_for_a_lock_another_apt_holds() {
        let (apt, dir) = fake_apt("waits", "/var/lib/apt/lists/lock", 2);
        install_packages(
            &apt,
            &["conntrack"],
            Duration::from_secs(5),
            Duration::from_millis(10),
        )
        .expect("the lock was released after two tries");
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        let runs: Vec<&str> = args.lines().collect();
        assert_eq!(runs.len(), 4, "update three times, then install: {args}");
        assert!(
            runs.iter()
                .all(|r| r.starts_with("-o DPkg::Lock::Timeout=")),
            "apt itself waits for dpkg's lock: {args}"
        );
        assert!(
            runs[3].ends_with("install -y -qq --no-install-recommends conntrack"),
            "{args}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_lock_held_too_long_says_what_to_do() {
        let (apt, dir) = fake_apt("held", "/var/lib/dpkg/lock-frontend", u32::MAX);
        let e = install_packages(
            &apt,
            &["conntrack", "socat"],
            Duration::from_millis(50),
            Duration::from_millis(10),
        )
        .expect_err("the lock stays held");
        let message = format!("{e:#}");
        for what in [
            "conntrack socat",
            "lock",
            "unattended-upgrades",
            "run `cargo xtask setup` again",
            "apt-get install conntrack socat",
        ] {
            assert!(message.contains(what), "`{what}` in: {message}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn packages_count_only_when_installed() {
        let listed = "bpftool install ok installed\n\
                      iproute2 deinstall ok config-files\n\
                      procps install ok half-configured\n";
        assert_eq!(
            not_installed(&["bpftool", "iproute2", "procps", "tcpdump"], listed),
            ["iproute2", "procps", "tcpdump"]
        );
        assert_eq!(not_installed(&["bpftool"], ""), ["bpftool"]);
    }

    #[test]
    fn is_root_agrees_with_id() {
        let id = std::process::Command::new("id").arg("-u").output().unwrap();
        let euid = String::from_utf8(id.stdout).unwrap();
        assert_eq!(is_root(), euid.trim() == "0", "id -u says {euid}");
    }

    #[test]
    fn llvm_major_from_rustc_vv() {
        let vv =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
    }
}

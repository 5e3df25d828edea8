//! What the dist checks read from a binary's ELF header: its machine, and whether it is static.
//! Both dist targets are little-endian ELF64, so nothing else is parsed.

use anyhow::{Result, bail};

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const EM_BPF: u16 = 247;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// The facts of a little-endian ELF64 file the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub machine: u16,
    /// A PT_INTERP program header: the kernel would start a dynamic loader first.
    pub interpreter: bool,
    /// DT_NEEDED entries: shared libraries it asks for. A static-pie binary (what Rust's musl
    /// targets build) has a dynamic section for its own relocations, but none of these.
    pub needed: usize,
}

/// Reads the header of a little-endian ELF64 file, `None` if it is not one (or is cut short).
pub fn parse(elf: &[u8]) -> Option<Header> {
    if elf.get(..4)? != b"\x7fELF" || elf.get(4)? != &2 || elf.get(5)? != &1 {
        return None;
    }
    let machine = u16_at(elf, 0x12)?;
    let (phoff, phentsize, phnum) = (u64_at(elf, 0x20)?, u16_at(elf, 0x36)?, u16_at(elf, 0x38)?);
    let mut header = Header {
        machine,
        interpreter: false,
        needed: 0,
    };
    for i in 0..usize::from(phnum) {
        let ph = usize::try_from(phoff).ok()? + i * usize::from(phentsize);
        match u32_at(elf, ph)? {
            PT_INTERP => header.interpreter = true,
            PT_DYNAMIC => header.needed += needed_entries(elf, u64_at(elf, ph + 0x08)?)?,
            _ => {}
        }
    }
    Some(header)
}

/// DT_NEEDED entries in the dynamic section at `offset` (16-byte entries up to DT_NULL).
fn needed_entries(elf: &[u8], offset: u64) -> Option<usize> {
    let mut at = usize::try_from(offset).ok()?;
    let mut needed = 0;
    loop {
        match u64_at(elf, at)? {
            DT_NULL => return Some(needed),
            DT_NEEDED => needed += 1,
            _ => {}
        }
        at += 16;
    }
}

/// Fails unless `elf` is a static executable for `machine`: what a router without our libc
/// (OpenWrt has musl, others glibc of some age) can run as it is.
pub fn check_static(elf: &[u8], machine: u16, what: &str) -> Result<()> {
    let Some(header) = parse(elf) else {
        bail!("{what} is not a little-endian ELF64 file");
    };
    if header.machine != machine {
        bail!(
            "{what} is built for ELF machine {} instead of {machine} ({})",
            header.machine,
            machine_name(machine)
        );
    }
    if header.interpreter {
        bail!("{what} is dynamically linked: it has a PT_INTERP program header");
    }
    if header.needed > 0 {
        bail!("{what} needs {} shared libraries", header.needed);
    }
    Ok(())
}

pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_BPF => "BPF",
        _ => "other",
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header for `machine` with the given program headers (type, and for
    /// PT_DYNAMIC the dynamic entries' tags).
    fn elf(machine: u16, segments: &[(u32, &[u64])]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let mut data = 64 + 56 * segments.len();
        let mut tables = Vec::new();
        for (kind, tags) in segments {
            let mut ph = [0u8; 56];
            ph[..4].copy_from_slice(&kind.to_le_bytes());
            ph[8..16].copy_from_slice(&(data as u64).to_le_bytes());
            b.extend_from_slice(&ph);
            for tag in tags.iter().chain(&[DT_NULL]) {
                tables.extend_from_slice(&tag.to_le_bytes());
                tables.extend_from_slice(&0u64.to_le_bytes());
            }
            data += 16 * (tags.len() + 1);
        }
        b.extend(tables);
        b
    }

    #[test]
    fn a_static_pie_passes() {
        // PT_LOAD, PT_DYNAMIC with relocation entries only (DT_RELA = 7, DT_FLAGS_1 = 0x6ffffffb).
        let bin = elf(EM_AARCH64, &[(1, &[]), (PT_DYNAMIC, &[7, 0x6fff_fffb])]);
        assert_eq!(
            parse(&bin),
            Some(Header {
                machine: EM_AARCH64,
                interpreter: false,
                needed: 0
            })
        );
        check_static(&bin, EM_AARCH64, "bin").unwrap();
        let e = check_static(&bin, EM_X86_64, "bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("machine 183 instead of 62 (x86_64)"), "{e}");
    }

    #[test]
    fn an_interpreter_or_a_shared_library_fails() {
        let interp = elf(EM_X86_64, &[(PT_INTERP, &[])]);
        let e = check_static(&interp, EM_X86_64, "bin").unwrap_err();
        assert!(e.to_string().contains("PT_INTERP"), "{e}");
        let needs = elf(EM_X86_64, &[(PT_DYNAMIC, &[DT_NEEDED, 7, DT_NEEDED])]);
        assert_eq!(parse(&needs).unwrap().needed, 2);
        let e = check_static(&needs, EM_X86_64, "bin").unwrap_err();
        assert!(e.to_string().contains("needs 2 shared libraries"), "{e}");
    }

    #[test]
    fn this_dynamically_linked_test_binary_is_seen_as_such() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        let header = parse(&me).unwrap();
        assert!(header.interpreter && header.needed > 0, "{header:?}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(header.machine, EM_X86_64);
    }

    #[test]
    fn truncated_or_foreign_files_are_not_elf64() {
        assert_eq!(parse(b"\x7fELF"), None);
        assert_eq!(parse(b"#!/bin/sh\n"), None);
        let mut bin = elf(EM_X86_64, &[(PT_DYNAMIC, &[7])]);
        bin.truncate(bin.len() - 16);
        assert_eq!(parse(&bin), None, "a dynamic section cut short");
    }
}

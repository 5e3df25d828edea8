//! Drops the DWARF sections from the eBPF object before it is embedded. bpf-linker needs the
//! debug info to write the object's BTF (`.BTF`, `.BTF.ext`: what the kernel and aya use), but
//! the DWARF itself is read by nobody at run time, and it is most of the object: about 650 KB of
//! its 770 KB, in every `steer` binary that goes onto a router's flash.

use object::build::elf::{Builder, SectionData};

/// The object `bytes` without its `.debug_*` sections and their relocations. BTF, programs,
/// maps and their relocations are kept as they are.
pub fn strip_dwarf(bytes: &[u8]) -> Result<Vec<u8>, object::build::Error> {
    let mut builder = Builder::read(bytes)?;
    for section in builder.sections.iter_mut() {
        let name = section.name.as_slice();
        if name.starts_with(b".debug_") || name.starts_with(b".rel.debug_") {
            section.delete = true;
        }
    }
    builder.delete_orphans();
    // LLVM writes one string table for symbol and section names; the builder keeps it for the
    // symbols and writes the section names into a table of their own.
    if !builder
        .sections
        .iter()
        .any(|s| matches!(s.data, SectionData::SectionString))
    {
        let names = builder.sections.add();
        names.name = b".shstrtab"[..].into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.sh_addralign = 1;
        names.data = SectionData::SectionString;
    }
    let mut out = Vec::with_capacity(bytes.len());
    builder.write(&mut out)?;
    Ok(out)
}

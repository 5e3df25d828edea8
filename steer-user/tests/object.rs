//! The eBPF object embedded in `steer`: its DWARF dropped at build time (it is most of the
//! object and nobody reads it at run time), its BTF, programs and maps kept (the kernel and aya
//! need them; every privileged test loads this object).

use object::{Object, ObjectSection};

#[test]
fn the_embedded_object_keeps_btf_programs_and_maps_and_drops_dwarf() {
    let obj = object::File::parse(steer::objects::STEER).expect("the embedded object is ELF");
    let names: Vec<&str> = obj.sections().filter_map(|s| s.name().ok()).collect();
    for needed in [
        ".BTF",
        ".BTF.ext",
        "classifier",
        "xdp",
        "maps",
        ".maps",
        "license",
    ] {
        assert!(names.contains(&needed), "no {needed} section in {names:?}");
    }
    let dwarf: Vec<&&str> = names.iter().filter(|n| n.contains(".debug_")).collect();
    assert!(dwarf.is_empty(), "DWARF left in the object: {dwarf:?}");
}

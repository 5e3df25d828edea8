//! Batched map syscalls aya 0.14 does not offer: `BPF_MAP_UPDATE_BATCH` and
//! `BPF_MAP_LOOKUP_BATCH`, one syscall for many elements. Kernels or map types without batch
//! support answer `EINVAL`/`ENOTSUPP`; callers fall back to per-element calls.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// `ENOTSUPP` is kernel-internal (524) but leaks to userspace from some map types.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const _: () = assert!(size_of::<BatchAttr>() == 56);

/// Whether an error means "this map or kernel has no batch operations".
pub fn is_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP)
    )
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised `batch` member of bpf_attr of the size passed; the
    // kernel reads and writes only within it and within the buffers it points at, which the
    // callers keep alive and sized for the elements they describe.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>() as u32,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `keys[i] -> values[i]` for every i in one syscall. On error the kernel reports how
/// many elements it wrote before failing; that count is returned with the error.
///
/// # Safety
/// `K` and `V` must be exactly the map's key and value layout: the kernel reads `key_size` and
/// `value_size` bytes per element through the pointers.
pub unsafe fn update<K: Pod, V: Pod>(
    map: impl AsFd,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(keys.len()).expect("batch fits in u32"),
        map_fd: map.as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr).map_err(|e| (attr.count as usize, e))
}

/// Reads every element of the map, `chunk` elements per syscall.
///
/// # Safety
/// `K` and `V` must be exactly the map's key and value layout: the kernel writes `key_size` and
/// `value_size` bytes per element.
pub unsafe fn lookup_all<K: Pod, V: Pod>(map: impl AsFd, chunk: usize) -> io::Result<Vec<(K, V)>> {
    let fd = map.as_fd().as_raw_fd() as u32;
    let mut out = Vec::new();
    // SAFETY: `Pod` types are valid for any bytes, zeroes included.
    let (blank_key, blank_value) = unsafe { (std::mem::zeroed::<K>(), std::mem::zeroed::<V>()) };
    let mut keys = vec![blank_key; chunk];
    let mut values = vec![blank_value; chunk];
    // The batch cursor is opaque to userspace; the kernel's generic implementation stores a key.
    let mut cursor = [0u8; 256];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { cursor.as_ptr() as u64 },
            out_batch: cursor.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk).expect("chunk fits in u32"),
            map_fd: fd,
            ..Default::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let got = attr.count as usize;
        out.extend(
            keys[..got]
                .iter()
                .copied()
                .zip(values[..got].iter().copied()),
        );
        match result {
            Ok(()) => first = false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

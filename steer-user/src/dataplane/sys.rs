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
    // SAFETY: passed on from the caller.
    unsafe { lookup_batches(map, None, chunk, usize::MAX) }
}

/// Reads elements `first .. first + count` of an array map, in one syscall where the kernel can.
///
/// # Safety
/// `V` must be exactly the array's value layout: the kernel writes `value_size` bytes per
/// element.
pub unsafe fn lookup_array<V: Pod>(map: impl AsFd, first: u32, count: usize) -> io::Result<Vec<V>> {
    // The generic batch cursor is the last key read, and an array's next key is the index after
    // it; no cursor starts at index 0.
    let resume_after = first.checked_sub(1);
    // SAFETY: arrays have u32 keys; `V` is passed on from the caller.
    let read = unsafe { lookup_batches::<u32, V>(map, resume_after, count, count) }?;
    if read.len() != count
        || read
            .iter()
            .zip(first..)
            .any(|((index, _), want)| *index != want)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("array batch read from {first}: expected {count} consecutive elements"),
        ));
    }
    Ok(read.into_iter().map(|(_, value)| value).collect())
}

/// Reads up to `limit` elements, `chunk` per syscall, starting after the key `resume_after` (from
/// the first key when `None`).
///
/// # Safety
/// As [`lookup_all`].
unsafe fn lookup_batches<K: Pod, V: Pod>(
    map: impl AsFd,
    resume_after: Option<K>,
    chunk: usize,
    limit: usize,
) -> io::Result<Vec<(K, V)>> {
    let fd = map.as_fd().as_raw_fd() as u32;
    let mut out = Vec::new();
    // SAFETY: `Pod` types are valid for any bytes, zeroes included.
    let (blank_key, blank_value) = unsafe { (std::mem::zeroed::<K>(), std::mem::zeroed::<V>()) };
    let mut keys = vec![blank_key; chunk];
    let mut values = vec![blank_value; chunk];
    // The batch cursor is opaque to userspace in general; the kernel's generic implementation
    // (arrays, LPM tries) stores the last key read in it.
    let mut cursor = [0u8; 256];
    const { assert!(size_of::<K>() <= 256) };
    let mut resume = resume_after.is_some();
    if let Some(key) = resume_after {
        // SAFETY: the cursor holds at least size_of::<K>() bytes (checked above); unaligned
        // because a byte array has no alignment.
        unsafe { cursor.as_mut_ptr().cast::<K>().write_unaligned(key) };
    }
    while out.len() < limit {
        let mut attr = BatchAttr {
            in_batch: if resume { cursor.as_ptr() as u64 } else { 0 },
            out_batch: cursor.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk.min(limit - out.len())).expect("chunk fits in u32"),
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
            Ok(()) => resume = true,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// The `obj_pin` member of `union bpf_attr`, for `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

const _: () = assert!(size_of::<ObjGetAttr>() == 24);

/// The `get_id` member of `union bpf_attr` (`link_id` in its first word), for
/// `BPF_LINK_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

const _: () = assert!(size_of::<GetIdAttr>() == 12);

/// The `info` member of `union bpf_attr`, for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

const _: () = assert!(size_of::<InfoAttr>() == 16);

/// The head of `struct bpf_link_info`: type, id and program id, then the 8-aligned union whose
/// `xdp` and `tcx` members both start with the interface index.
#[repr(C)]
#[derive(Default)]
struct LinkInfoHead {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    attach_type: u32,
    _rest: [u64; 4],
}

const _: () = assert!(size_of::<LinkInfoHead>() == 56);

fn bpf_raw<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised member of bpf_attr for `cmd`, of the size passed;
    // any buffer it points at is alive and as large as the attribute says.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The interface index of the XDP or TCX link pinned at `path`: a pin is named after the
/// interface it was made for, but a renamed device keeps its links.
pub fn pinned_link_ifindex(path: &std::path::Path) -> io::Result<u32> {
    pinned_link_info(path).map(|info| info.ifindex)
}

/// The id of the program the link pinned at `path` runs.
pub fn pinned_link_program(path: &std::path::Path) -> io::Result<u32> {
    pinned_link_info(path).map(|info| info.prog_id)
}

/// The interface index the XDP or TCX link with id `id` is attached to now: 0 once it is
/// detached (`BPF_LINK_DETACH`, what `bpftool link detach` does) or its device was deleted.
/// The link stays a kernel object, with its id, as long as a descriptor or pin holds it, so
/// the id of a link this process holds names that link and no other.
pub fn link_ifindex(id: u32) -> io::Result<u32> {
    let mut get = GetIdAttr {
        id,
        ..GetIdAttr::default()
    };
    let fd = bpf_raw(BPF_LINK_GET_FD_BY_ID, &mut get)?;
    // SAFETY: BPF_LINK_GET_FD_BY_ID returned a new descriptor that nothing else owns.
    let fd = unsafe { owned(fd) };
    link_info(&fd).map(|info| info.ifindex)
}

/// Takes ownership of a descriptor a bpf command returned.
///
/// # Safety
/// `fd` must be a new descriptor that nothing else owns or closes.
unsafe fn owned(fd: libc::c_long) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: passed on from the caller.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

fn pinned_link_info(path: &std::path::Path) -> io::Result<LinkInfoHead> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut get = ObjGetAttr {
        pathname: name.as_ptr() as u64,
        ..ObjGetAttr::default()
    };
    let fd = bpf_raw(BPF_OBJ_GET, &mut get)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    let fd = unsafe { owned(fd) };
    link_info(&fd)
}

fn link_info(fd: &std::os::fd::OwnedFd) -> io::Result<LinkInfoHead> {
    let mut info = LinkInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<LinkInfoHead>() as u32,
        info: &raw mut info as u64,
    };
    bpf_raw(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

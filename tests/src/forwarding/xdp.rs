//! Two tiny XDP programs of the lab's plumbing, written as raw instructions so the lab needs no
//! object file of its own: a redirect (the generator's hand-off to a router) and a drop (the
//! sinks). Attached through BPF links whose descriptors this process holds, so they go away
//! with it, also when it crashes.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// Native (driver) mode only: generic XDP would run after the skb exists, which is exactly what
/// the plumbing must avoid.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_DROP: i32 = 1;
const BPF_FUNC_REDIRECT: i32 = 23;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn mov64_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: dst,
        off: 0,
        imm,
    }
}

const fn call(helper: i32) -> Insn {
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: helper,
    }
}

const EXIT: Insn = Insn {
    code: 0x95,
    regs: 0,
    off: 0,
    imm: 0,
};

/// An XDP program attached to an interface; detached when dropped (the link closes).
#[derive(Debug)]
pub struct XdpLink {
    _prog: OwnedFd,
    _link: OwnedFd,
}

/// `XDP_DROP` on `iface` (in the calling thread's namespace).
pub fn attach_drop(iface: &str) -> io::Result<XdpLink> {
    attach(iface, &[mov64_imm(0, XDP_DROP), EXIT])
}

/// `bpf_redirect(to_ifindex)` on `iface`: every frame arriving there leaves through the other
/// interface's `ndo_xdp_xmit`, never becoming an skb on the way.
pub fn attach_redirect(iface: &str, to_ifindex: u32) -> io::Result<XdpLink> {
    let to = i32::try_from(to_ifindex).map_err(io::Error::other)?;
    attach(
        iface,
        &[
            mov64_imm(1, to),
            mov64_imm(2, 0),
            call(BPF_FUNC_REDIRECT),
            EXIT,
        ],
    )
}

fn attach(iface: &str, insns: &[Insn]) -> io::Result<XdpLink> {
    let ifindex = steer::dataplane::ifindex(iface).map_err(io::Error::other)?;
    let prog = load(insns)?;
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&fd_u32(&prog).to_ne_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
    attr[12..16].copy_from_slice(&XDP_FLAGS_DRV_MODE.to_ne_bytes());
    let link = bpf(BPF_LINK_CREATE, &mut attr)
        .map_err(|e| io::Error::new(e.kind(), format!("attach XDP to {iface}: {e}")))?;
    Ok(XdpLink {
        _prog: prog,
        _link: link,
    })
}

fn load(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..58].copy_from_slice(b"fwd_bench\0");
    attr[68..72].copy_from_slice(&BPF_XDP.to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut attr)
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd() as u32
}

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` of the size passed; the pointers inside it
    // (instructions, license) outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

//! Running the loaded programs on synthetic frames through `BPF_PROG_TEST_RUN`: the kernel runs
//! the real program against the live maps. `steer explain`, the tests and the benchmarks all
//! classify through here.

use std::time::Duration;

use aya::programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp};
use steer_common::{TC_CB_MAGIC, TC_CB_RULE, XDP_META_MAGIC, XdpMeta};

/// Offset of `mark` in `struct __sk_buff` (uapi: `len`, `pkt_type`, then `mark`).
const SKB_MARK_OFFSET: usize = 8;
/// The prefix of `struct __sk_buff` passed in: up to and including `mark`. The kernel accepts
/// a shorter context and requires `len` and `pkt_type` to be zero.
const SKB_CTX_IN_LEN: usize = SKB_MARK_OFFSET + 4;
/// Room for the whole `struct __sk_buff` on the way out (the kernel refuses a shorter buffer
/// with ENOSPC); 192 bytes on 6.x kernels.
const SKB_CTX_OUT_LEN: usize = 512;
/// Room for the largest frame plus metadata the programs may add.
const OUT_LEN: usize = 2048;

/// What the TC program did to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcOutcome {
    /// The program's return value (`TC_ACT_UNSPEC`, -1, means "continue").
    pub verdict: i32,
    /// skb->mark after the program ran.
    pub mark: u32,
    /// The rule the program applied (`LOCAL_RULE` for a local destination), when it
    /// classified the frame.
    pub rule: Option<u32>,
}

/// Runs the TC program once on `frame`, arriving with `mark_in` already in skb->mark.
pub fn run_tc(
    prog: &SchedClassifier,
    frame: &[u8],
    mark_in: u32,
) -> Result<TcOutcome, ProgramError> {
    let mut ctx_in = [0u8; SKB_CTX_IN_LEN];
    ctx_in[SKB_MARK_OFFSET..].copy_from_slice(&mark_in.to_ne_bytes());
    let (verdict, ctx_out) = test_run(prog, frame, &ctx_in)?;
    Ok(outcome(verdict, &ctx_out))
}

/// [`run_tc`] for a frame that came in on device `ifindex` (it must exist in this network
/// namespace): what `in` conditions see.
pub fn run_tc_from(
    prog: &SchedClassifier,
    frame: &[u8],
    ifindex: u32,
) -> Result<TcOutcome, ProgramError> {
    let mut ctx_in = [0u8; SKB_IFINDEX_OFFSET + 4];
    ctx_in[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
    let (verdict, ctx_out) = test_run(prog, frame, &ctx_in)?;
    Ok(outcome(verdict, &ctx_out))
}

fn outcome(verdict: i32, ctx_out: &[u8]) -> TcOutcome {
    let word = |offset: usize| {
        u32::from_ne_bytes(ctx_out[offset..offset + 4].try_into().expect("4 bytes"))
    };
    let cb = |i: usize| word(SKB_CB_OFFSET + 4 * i);
    TcOutcome {
        verdict,
        mark: word(SKB_MARK_OFFSET),
        rule: (cb(TC_CB_MAGIC) == XDP_META_MAGIC).then(|| cb(TC_CB_RULE)),
    }
}

/// One run of `prog` on `frame` with the `struct __sk_buff` prefix `ctx_in`: its return
/// value and the context after it.
fn test_run(
    prog: &SchedClassifier,
    frame: &[u8],
    ctx_in: &[u8],
) -> Result<(i32, [u8; SKB_CTX_OUT_LEN]), ProgramError> {
    let mut ctx_out = [0u8; SKB_CTX_OUT_LEN];
    let mut data_out = vec![0u8; OUT_LEN.max(frame.len())];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut data_out),
        ctx_in: Some(ctx_in),
        ctx_out: Some(&mut ctx_out),
        ..TestRunOptions::new()
    })?;
    Ok((result.return_value as i32, ctx_out))
}

/// Offsets in `struct __sk_buff` of `ingress_ifindex`, `ifindex` and `cb` (`mark`: above).
const SKB_INGRESS_IFINDEX_OFFSET: usize = 36;
const SKB_IFINDEX_OFFSET: usize = 40;
const SKB_CB_OFFSET: usize = 48;

/// What a test run's packet carries besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbMeta {
    /// The device it passes (it must exist in this network namespace; 1, loopback, always
    /// does).
    pub ifindex: u32,
    /// The device it came in on; 0: sent by this host.
    pub ingress_ifindex: u32,
    pub mark: u32,
}

/// Runs a TC program once on `frame` as if it passed device `ifindex` (which must exist in
/// this network namespace; 1, loopback, always does). Returns the program's return value.
pub fn run_tc_on(prog: &SchedClassifier, frame: &[u8], ifindex: u32) -> Result<i32, ProgramError> {
    run_tc_with(
        prog,
        frame,
        SkbMeta {
            ifindex,
            ..SkbMeta::default()
        },
    )
}

/// [`run_tc_on`] with the packet's input device and mark too.
pub fn run_tc_with(
    prog: &SchedClassifier,
    frame: &[u8],
    meta: SkbMeta,
) -> Result<i32, ProgramError> {
    let mut ctx_in = [0u8; SKB_IFINDEX_OFFSET + 4];
    for (offset, value) in [
        (SKB_MARK_OFFSET, meta.mark),
        (SKB_INGRESS_IFINDEX_OFFSET, meta.ingress_ifindex),
        (SKB_IFINDEX_OFFSET, meta.ifindex),
    ] {
        ctx_in[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }
    test_run(prog, frame, &ctx_in).map(|(verdict, _)| verdict)
}

/// What the XDP program did to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpOutcome {
    /// The program's return value (`XDP_PASS` is 2).
    pub verdict: u32,
    /// steer's metadata in front of the packet, when the program wrote it.
    pub meta: Option<XdpMeta>,
}

/// Runs the XDP program once on `frame` and reads back the metadata it left.
pub fn run_xdp(prog: &Xdp, frame: &[u8]) -> Result<XdpOutcome, ProgramError> {
    let mut data_out = vec![0u8; OUT_LEN.max(frame.len() + 64)];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut data_out),
        ..TestRunOptions::new()
    })?;
    // data_out starts at the metadata: whatever precedes the unchanged frame is metadata.
    let meta_len = (result.data_size_out as usize).saturating_sub(frame.len());
    let meta = (meta_len == size_of::<XdpMeta>())
        .then(|| bytemuck::pod_read_unaligned::<XdpMeta>(&data_out[..meta_len]));
    Ok(XdpOutcome {
        verdict: result.return_value,
        meta: meta.filter(|m| m.magic == XDP_META_MAGIC),
    })
}

/// Average time per run of a program over `repeat` kernel-side repetitions (the kernel's own
/// measurement, which excludes the syscall).
pub fn time_per_run<P>(prog: &P, frame: &[u8], repeat: u32) -> Result<Duration, ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    })?;
    Ok(result.duration)
}

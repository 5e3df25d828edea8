//! The range table (`steer_common::range`) and the kernel's LPM trie side by side, in the
//! testkit's programs: the same prefixes in both, addresses answered in batches by
//! `testkit_ranges_v4` and `testkit_lpm_v4` (and by `testkit_echo_v4`, which only copies
//! them: the floor). The differential test and the classifier benchmark use this.

use std::{
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{
        Array, ArrayOfMaps, IterableMap, MapData,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use steer::{
    dataplane::range_map::{KernelTable, KernelTable6},
    model::{
        range::{PrefixV4, RangeTable},
        range6::{PrefixV6, RangeTable6},
    },
    prefix::Prefix,
};
use steer_common::range::Block;

/// Addresses one program run answers (`BATCH` in the testkit).
pub const BATCH: usize = 64;

/// The three programs, loaded, over the testkit's two maps.
#[allow(missing_debug_implementations)] // aya's Ebpf is not Debug
pub struct Pair {
    testkit: Ebpf,
    /// The published tables (the kernel frees one once no slot and no handle refers to it).
    table: Option<KernelTable>,
    table6: Option<KernelTable6>,
}

/// Which answer a run gives.
#[derive(Clone, Copy, Debug)]
pub enum Program {
    Ranges,
    Lpm,
    Echo,
    RangesV6,
    LpmV6,
    EchoV6,
}

impl Program {
    const ALL: [Program; 6] = [
        Program::Ranges,
        Program::Lpm,
        Program::Echo,
        Program::RangesV6,
        Program::LpmV6,
        Program::EchoV6,
    ];

    fn name(self) -> &'static str {
        match self {
            Program::Ranges => "testkit_ranges_v4",
            Program::Lpm => "testkit_lpm_v4",
            Program::Echo => "testkit_echo_v4",
            Program::RangesV6 => "testkit_ranges_v6",
            Program::LpmV6 => "testkit_lpm_v6",
            Program::EchoV6 => "testkit_echo_v6",
        }
    }
}

impl Pair {
    pub fn load() -> Pair {
        let mut testkit = Ebpf::load(steer::objects::TESTKIT).expect("testkit loads");
        for program in Program::ALL {
            let xdp: &mut Xdp = testkit
                .program_mut(program.name())
                .expect("a testkit program")
                .try_into()
                .expect("an XDP program");
            xdp.load().expect("the verifier accepts it");
        }
        Pair {
            testkit,
            table: None,
            table6: None,
        }
    }

    fn program(&self, program: Program) -> &Xdp {
        self.testkit
            .program(program.name())
            .expect("a testkit program")
            .try_into()
            .expect("an XDP program")
    }

    /// The testkit's trie of `N`-byte addresses.
    fn trie<const N: usize>(&mut self) -> LpmTrie<&mut MapData, [u8; N], u32> {
        let name = if N == 4 {
            "TESTKIT_LPM_V4"
        } else {
            "TESTKIT_LPM_V6"
        };
        self.testkit
            .map_mut(name)
            .expect("the testkit's trie")
            .try_into()
            .expect("an LPM trie")
    }

    fn lpm(&mut self) -> LpmTrie<&mut MapData, [u8; 4], u32> {
        self.trie()
    }

    /// Puts `(prefix length, address, value)` into the trie of their address width.
    fn trie_insert<const N: usize>(&mut self, set: impl Iterator<Item = (u8, [u8; N], u32)>) {
        let mut lpm = self.trie::<N>();
        for (len, addr, value) in set {
            lpm.insert(&Key::new(u32::from(len), addr), value, 0)
                .expect("LPM insert");
        }
    }

    /// Takes `(prefix length, address)` out of the trie of their address width.
    fn trie_remove<const N: usize>(&mut self, prefixes: impl Iterator<Item = (u8, [u8; N])>) {
        let mut lpm = self.trie::<N>();
        for (len, addr) in prefixes {
            lpm.remove(&Key::new(u32::from(len), addr))
                .expect("LPM remove");
        }
    }

    /// Puts `(prefix, value)` into the LPM trie.
    pub fn lpm_insert(&mut self, set: &[(PrefixV4, u32)]) {
        self.trie_insert(set.iter().map(|((a, l), v)| (*l, a.to_be_bytes(), *v)));
    }

    /// Puts `(prefix, value)` into the LPM trie with `BPF_MAP_UPDATE_BATCH`, 16k per call.
    pub fn lpm_insert_batched(&mut self, set: &[(PrefixV4, u32)]) {
        let lpm = self.lpm();
        let fd = lpm.map().fd().as_fd();
        for chunk in set.chunks(16 * 1024) {
            let keys: Vec<Key<[u8; 4]>> = chunk
                .iter()
                .map(|((addr, len), _)| Key::new(u32::from(*len), addr.to_be_bytes()))
                .collect();
            let values: Vec<u32> = chunk.iter().map(|(_, v)| *v).collect();
            // SAFETY: the trie's key is the kernel's packed LPM key of 4 address bytes (aya's
            // Key<[u8; 4]>), its value a u32.
            unsafe { steer::dataplane::sys::update(fd, &keys, &values) }
                .map_err(|(_, e)| e)
                .expect("batched LPM insert");
        }
    }

    /// Takes `prefixes` out of the LPM trie.
    pub fn lpm_remove(&mut self, prefixes: &[PrefixV4]) {
        self.trie_remove(prefixes.iter().map(|(a, l)| (*l, a.to_be_bytes())));
    }

    /// The testkit's outer array of a family's range table.
    fn slot(&mut self, name: &'static str) -> ArrayOfMaps<&mut MapData, Array<MapData, Block>> {
        self.testkit
            .map_mut(name)
            .expect("the testkit's range slot")
            .try_into()
            .expect("an array of maps")
    }

    /// Builds `set`'s range table and publishes it; returns its array's size in bytes.
    pub fn publish(&mut self, table: &RangeTable) -> usize {
        let kernel = KernelTable::create(table, 0).expect("range table created");
        kernel
            .publish(&mut self.slot("TESTKIT_RANGES_V4"), 0)
            .expect("range table published");
        let bytes = kernel.elements() * 8;
        self.table = Some(kernel);
        bytes
    }

    /// Puts `(prefix, value)` into the IPv6 LPM trie.
    pub fn lpm6_insert(&mut self, set: &[(PrefixV6, u32)]) {
        self.trie_insert(set.iter().map(|((a, l), v)| (*l, a.to_be_bytes(), *v)));
    }

    /// Takes `prefixes` out of the IPv6 LPM trie.
    pub fn lpm6_remove(&mut self, prefixes: &[PrefixV6]) {
        self.trie_remove(prefixes.iter().map(|(a, l)| (*l, a.to_be_bytes())));
    }

    /// Publishes an IPv6 range table; returns its array's size in bytes.
    pub fn publish6(&mut self, table: &RangeTable6) -> usize {
        let kernel = KernelTable6::create(table, 0).expect("range table created");
        kernel
            .publish(&mut self.slot("TESTKIT_RANGES_V6"), 0)
            .expect("range table published");
        let bytes = kernel.elements() * 8;
        self.table6 = Some(kernel);
        bytes
    }

    /// The kernel's account of the memory of the IPv6 LPM trie and range table.
    pub fn kernel_bytes6(&self) -> (u64, u64) {
        let lpm = match self.testkit.map("TESTKIT_LPM_V6") {
            Some(aya::maps::Map::LpmTrie(data)) => memlock(data.fd().as_fd()),
            _ => panic!("TESTKIT_LPM_V6 is not an LPM trie"),
        };
        let table = self.table6.as_ref().map_or(0, |t| memlock(t.fd()));
        (lpm, table)
    }

    /// The answers of an IPv6 `program` for `addrs`, in order.
    pub fn answers6(&self, program: Program, addrs: &[u128]) -> Vec<u32> {
        self.answers_of(program, addrs, BATCH_V6, frame6)
    }

    /// The kernel's account of the memory of the LPM trie and of the published range table
    /// (`memlock` of their descriptors: what each map holds, nodes and all).
    pub fn kernel_bytes(&self) -> (u64, u64) {
        let lpm = self
            .testkit
            .map("TESTKIT_LPM_V4")
            .expect("the testkit's trie");
        let lpm = match lpm {
            aya::maps::Map::LpmTrie(data) => memlock(data.fd().as_fd()),
            _ => panic!("TESTKIT_LPM_V4 is not an LPM trie"),
        };
        let table = self.table.as_ref().map_or(0, |t| memlock(t.fd()));
        (lpm, table)
    }

    /// The answers of `program` for `addrs`, in order.
    pub fn answers(&self, program: Program, addrs: &[u32]) -> Vec<u32> {
        self.answers_of(program, addrs, BATCH, frame)
    }

    /// The answers of `program` for `addrs`, run `batch` at a time in the frames `frame`
    /// makes: each answer is in the first four bytes of its address.
    fn answers_of<A>(
        &self,
        program: Program,
        addrs: &[A],
        batch: usize,
        frame: fn(&[A]) -> Vec<u8>,
    ) -> Vec<u32> {
        let width = size_of::<A>();
        let prog = self.program(program);
        let mut out = Vec::with_capacity(addrs.len());
        let mut data_out = vec![0u8; 4 + width * batch];
        for batch in addrs.chunks(batch) {
            let frame = frame(batch);
            let result = prog
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    data_out: Some(&mut data_out),
                    ..TestRunOptions::new()
                })
                .expect("test run");
            assert_eq!(
                result.return_value as usize,
                batch.len(),
                "{program:?} answered"
            );
            out.extend(
                data_out[4..4 + size_of_val(batch)]
                    .chunks(width)
                    .map(|b| u32::from_ne_bytes(b[..4].try_into().expect("4 bytes"))),
            );
        }
        out
    }

    /// Kernel-measured time of one run of `program` on `frame` (see [`frame`]).
    pub fn time(&self, program: Program, frame: &[u8]) -> Result<Duration, ProgramError> {
        let result = self.program(program).test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        })?;
        Ok(result.duration)
    }
}

/// `memlock:` of a BPF map's descriptor in `/proc/self/fdinfo`.
fn memlock(fd: BorrowedFd<'_>) -> u64 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .expect("fdinfo of a map");
    crate::bench::memory::fdinfo_field(&info, "memlock:").expect("memlock in a map's fdinfo")
}

/// The frame the testkit's batch programs read: the count, then the addresses (network
/// order). At least 16 bytes, the least a test run of XDP takes.
pub fn frame(addrs: &[u32]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + 4 * addrs.len().max(3));
    frame.extend((addrs.len() as u32).to_ne_bytes());
    frame.extend(addrs.iter().flat_map(|a| a.to_be_bytes()));
    frame.resize(frame.len().max(16), 0);
    frame
}

/// IPv6 addresses one program run answers (`BATCH_V6` in the testkit).
pub const BATCH_V6: usize = 32;

/// The frame the testkit's IPv6 batch programs read: the count, then the addresses.
pub fn frame6(addrs: &[u128]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + 16 * addrs.len());
    frame.extend((addrs.len() as u32).to_ne_bytes());
    frame.extend(addrs.iter().flat_map(|a| a.to_be_bytes()));
    frame.resize(frame.len().max(16), 0);
    frame
}

/// An IPv6 prefix as the range table takes it.
pub fn v6(p: &Prefix) -> PrefixV6 {
    match p.addr() {
        IpAddr::V6(a) => (u128::from(a), p.len()),
        IpAddr::V4(_) => panic!("{p} is not IPv6"),
    }
}

/// An IPv4 prefix as the range table takes it.
pub fn v4(p: &Prefix) -> PrefixV4 {
    match p.addr() {
        IpAddr::V4(a) => (u32::from(a), p.len()),
        IpAddr::V6(_) => panic!("{p} is not IPv4"),
    }
}

/// The first and last address of a prefix.
pub fn ends((addr, len): PrefixV4) -> (u32, u32) {
    (
        addr,
        addr | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0),
    )
}

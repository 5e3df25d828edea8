//! The testkit's witness program: attached after steer on the same tc hook, it counts packets
//! UDP packets per skb->mark. Packets reaching it prove steer returned "continue"; the marks it sees are the
//! marks steer wrote.

use aya::{
    Ebpf,
    maps::HashMap,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
};

#[derive(Debug)]
pub struct Witness {
    ebpf: Ebpf,
}

impl Witness {
    pub fn load() -> Self {
        let mut ebpf = Ebpf::load(steer::objects::TESTKIT).expect("testkit object loads");
        let prog: &mut SchedClassifier = ebpf
            .program_mut("testkit_witness")
            .expect("witness program")
            .try_into()
            .expect("tc program");
        prog.load().expect("witness passes the verifier");
        Witness { ebpf }
    }

    /// Attaches to the ingress of `iface` at `order` in its tcx chain (call inside the
    /// namespace): `LinkOrder::after_program(steer)` right behind steer, or `LinkOrder::last()`,
    /// which stays behind steer's link even when a restarted daemon swaps the program in it.
    pub fn attach(&mut self, iface: &str, order: LinkOrder) {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut("testkit_witness")
            .expect("witness program")
            .try_into()
            .expect("tc program");
        prog.attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(order),
        )
        .unwrap_or_else(|e| panic!("attach witness to {iface}: {e}"));
    }

    /// Packets the witness saw, per mark.
    pub fn all(&self) -> std::collections::BTreeMap<u32, u64> {
        let map: HashMap<_, u32, u64> =
            HashMap::try_from(self.ebpf.map("WITNESS").expect("WITNESS map")).expect("hash map");
        map.iter().filter_map(Result::ok).collect()
    }

    /// Packets the witness saw carrying exactly `mark`.
    pub fn seen(&self, mark: u32) -> u64 {
        let map: HashMap<_, u32, u64> =
            HashMap::try_from(self.ebpf.map("WITNESS").expect("WITNESS map")).expect("hash map");
        map.get(&mark, 0).unwrap_or(0)
    }
}

//! Any bytes as a DNS message (a query, an upstream's answer, a snooped packet): the parser,
//! the answer reader and the snoop packet reader never panic, loop or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steer::dns::{
    answer::learnable,
    matcher::{DomainSet, Matcher},
    snoop::dns_packet,
    wire,
};

fuzz_target!(|data: &[u8]| {
    let matcher = Matcher::new(vec![DomainSet {
        rule: 1,
        name: "fuzz".into(),
        domains: vec!["example".into(), "a.b".into()],
        filter_aaaa: data.first().is_some_and(|b| b & 1 == 1),
    }]);
    if let Ok(m) = wire::parse(data) {
        for r in &m.answers {
            let _ = r.address();
            let _ = r.cname_target(data);
            let _ = r.svc_hints();
        }
        let _ = learnable(data, &m, &matcher);
    }
    let _ = wire::question(data);
    let _ = wire::reply(data, wire::rcode::SERVFAIL);
    let _ = dns_packet(data);
});

//! What an answer teaches: the addresses of the names on the CNAME chain that starts at the
//! question (A and AAAA records, and the address hints of SVCB/HTTPS records), for the set of
//! the first name on the chain that a set matches. Nothing else in the answer counts: records
//! of other names, the authority and additional sections, answers that are not NOERROR or were
//! cut (TC).

use std::net::IpAddr;

use super::{
    matcher::Matcher,
    wire::{self, CLASS_IN, Message, Record},
};

/// CNAME hops followed from the question.
pub const MAX_CHAIN: usize = 16;

/// Addresses one answer teaches, for one set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learnable {
    pub rule: u32,
    /// The set's position in the configuration.
    pub rank: usize,
    pub set: String,
    /// The name on the chain that matched the set.
    pub name: String,
    /// Each address once, with the longest TTL it was given.
    pub addrs: Vec<(IpAddr, u32)>,
    /// IPv6 addresses left out because the set filters AAAA.
    pub filtered_v6: usize,
}

/// What `msg` (the bytes of `parsed`) teaches; `None` when it matches no set or is not an
/// answer to learn from.
pub fn learnable(msg: &[u8], parsed: &Message<'_>, matcher: &Matcher) -> Option<Learnable> {
    let h = &parsed.header;
    if !h.is_response() || h.opcode() != 0 || h.rcode() != wire::rcode::NOERROR || h.truncated() {
        return None;
    }
    let q = parsed.question.as_ref()?;
    if q.qclass != CLASS_IN {
        return None;
    }
    let chain = chain(msg, parsed)?;
    let (found, name) = chain.iter().find_map(|n| Some((matcher.find(n)?, n)))?;
    let filter_v6 = filters_v6(&chain, matcher);
    let mut out = Learnable {
        rule: found.set.rule,
        rank: found.rank,
        set: found.set.name.clone(),
        name: name.clone(),
        addrs: Vec::new(),
        filtered_v6: 0,
    };
    for r in parsed
        .answers
        .iter()
        .filter(|r| r.class == CLASS_IN && chain.contains(&r.name))
    {
        let addrs = match r.address() {
            Some(a) => vec![a],
            None => r.svc_hints(),
        };
        for a in addrs {
            if a.is_ipv6() && filter_v6 {
                out.filtered_v6 += 1;
                continue;
            }
            match out.addrs.iter_mut().find(|(x, _)| *x == a) {
                Some((_, ttl)) => *ttl = (*ttl).max(r.ttl),
                None => out.addrs.push((a, r.ttl)),
            }
        }
    }
    Some(out)
}

/// The CNAME chain of `parsed` (the bytes `msg`) from its question: the question's name, then
/// each target in turn (at most [`MAX_CHAIN`] hops, never a name twice). `None` without a
/// question.
pub fn chain(msg: &[u8], parsed: &Message<'_>) -> Option<Vec<String>> {
    let mut chain = vec![parsed.question.as_ref()?.name.clone()];
    for _ in 0..MAX_CHAIN {
        let last = chain.last().expect("never empty");
        let next = parsed
            .answers
            .iter()
            .filter(|r| r.class == CLASS_IN && r.name == *last)
            .find_map(|r| r.cname_target(msg));
        match next {
            Some(t) if !chain.contains(&t) => chain.push(t),
            _ => break,
        }
    }
    Some(chain)
}

/// Whether IPv6 addresses of `chain` are kept out: any name of it is in a set that asks so,
/// not only the first (`www.shop.test` (set A) -> `edge.cdn.test` (set B, filter_aaaa) is B's
/// address).
pub fn filters_v6(chain: &[String], matcher: &Matcher) -> bool {
    chain
        .iter()
        .any(|n| matcher.find(n).is_some_and(|m| m.set.filter_aaaa))
}

/// Whether a client must not see record `r` of an answer (in any section) because a set that
/// filters AAAA keeps IPv6 from its names: an AAAA record, or an SVCB/HTTPS record with an
/// ipv6hint, of a name of such a set, or of any name of the question's `chain` when
/// `chain_filtered` ([`filters_v6`]). Answers to AAAA, SVCB and HTTPS questions are emptied
/// whole ([`crate::dns::Outcome::filter_aaaa`]); this is for the others: ANY, and the
/// additional records of any answer.
pub fn hides_v6(r: &Record<'_>, chain: &[String], chain_filtered: bool, matcher: &Matcher) -> bool {
    let v6 = match r.rtype {
        wire::rtype::AAAA => true,
        wire::rtype::SVCB | wire::rtype::HTTPS => r.svc_hints().iter().any(IpAddr::is_ipv6),
        _ => false,
    };
    v6 && r.class == CLASS_IN
        && ((chain_filtered && chain.contains(&r.name))
            || matcher.find(&r.name).is_some_and(|m| m.set.filter_aaaa))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{
        matcher::DomainSet,
        wire::{
            parse, query, rtype,
            tests::{answer, encode_name},
        },
    };

    fn matcher(filter_aaaa: bool) -> Matcher {
        Matcher::new(vec![DomainSet {
            rule: 4,
            name: "video".into(),
            domains: vec!["video.example".into()],
            filter_aaaa,
        }])
    }

    fn teach(msg: &[u8], m: &Matcher) -> Option<Learnable> {
        learnable(msg, &parse(msg).unwrap(), m)
    }

    #[test]
    fn the_chain_from_the_question_is_followed_and_nothing_else_is_learned() {
        let q = query(1, "WWW.Video.Example", rtype::A);
        let a = answer(
            &q,
            &[
                (
                    "www.video.example",
                    rtype::CNAME,
                    300,
                    encode_name("edge.cdn.test"),
                ),
                (
                    "edge.cdn.test",
                    rtype::CNAME,
                    300,
                    encode_name("e1.cdn.test"),
                ),
                ("e1.cdn.test", rtype::A, 20, vec![198, 51, 100, 1]),
                ("e1.cdn.test", rtype::A, 40, vec![198, 51, 100, 2]),
                ("unrelated.test", rtype::A, 40, vec![198, 51, 100, 3]),
            ],
        );
        let l = teach(&a, &matcher(false)).unwrap();
        assert_eq!((l.rule, l.name.as_str()), (4, "www.video.example"));
        assert_eq!(
            l.addrs,
            [
                ("198.51.100.1".parse().unwrap(), 20),
                ("198.51.100.2".parse().unwrap(), 40)
            ]
        );
    }

    #[test]
    fn a_cname_into_a_set_counts_and_aaaa_can_be_filtered() {
        let q = query(1, "alias.other.test", rtype::AAAA);
        let v6: std::net::Ipv6Addr = "2001:db8::5".parse().unwrap();
        let a = answer(
            &q,
            &[
                (
                    "alias.other.test",
                    rtype::CNAME,
                    60,
                    encode_name("a.video.example"),
                ),
                ("a.video.example", rtype::AAAA, 60, v6.octets().to_vec()),
            ],
        );
        let l = teach(&a, &matcher(false)).unwrap();
        assert_eq!(l.name, "a.video.example");
        assert_eq!(l.addrs, [(v6.into(), 60)]);
        let filtered = teach(&a, &matcher(true)).unwrap();
        assert!(filtered.addrs.is_empty());
        assert_eq!(filtered.filtered_v6, 1);
    }

    /// The chain starts in a set without the filter and ends in one with it: the address is
    /// the filtered set's, and stays out (the first set's choice let it through).
    #[test]
    fn a_chain_into_a_filtered_set_is_filtered_whatever_set_it_starts_in() {
        let m = Matcher::new(vec![
            DomainSet {
                rule: 4,
                name: "shop".into(),
                domains: vec!["shop.test".into()],
                filter_aaaa: false,
            },
            DomainSet {
                rule: 5,
                name: "cdn".into(),
                domains: vec!["cdnprov.test".into()],
                filter_aaaa: true,
            },
        ]);
        let v6: std::net::Ipv6Addr = "2001:db8::20".parse().unwrap();
        let q = query(1, "www.shop.test", rtype::AAAA);
        let a = answer(
            &q,
            &[
                (
                    "www.shop.test",
                    rtype::CNAME,
                    60,
                    encode_name("edge.cdnprov.test"),
                ),
                ("edge.cdnprov.test", rtype::AAAA, 60, v6.octets().to_vec()),
            ],
        );
        let l = teach(&a, &m).unwrap();
        assert!(l.addrs.is_empty(), "{:?}", l.addrs);
        assert_eq!(l.filtered_v6, 1);
    }

    #[test]
    fn cname_loops_end_and_failed_or_cut_answers_teach_nothing() {
        let q = query(1, "a.video.example", rtype::A);
        let looped = answer(
            &q,
            &[
                (
                    "a.video.example",
                    rtype::CNAME,
                    60,
                    encode_name("b.video.example"),
                ),
                (
                    "b.video.example",
                    rtype::CNAME,
                    60,
                    encode_name("a.video.example"),
                ),
            ],
        );
        assert!(teach(&looped, &matcher(false)).unwrap().addrs.is_empty());
        let mut cut = answer(&q, &[("a.video.example", rtype::A, 60, vec![192, 0, 2, 9])]);
        cut[2] |= 0x02; // TC
        assert_eq!(teach(&cut, &matcher(false)), None);
        let mut nx = answer(&q, &[("a.video.example", rtype::A, 60, vec![192, 0, 2, 9])]);
        nx[3] |= 3;
        assert_eq!(teach(&nx, &matcher(false)), None);
        let other = answer(
            &query(1, "x.test", rtype::A),
            &[("x.test", rtype::A, 60, vec![192, 0, 2, 9])],
        );
        assert_eq!(teach(&other, &matcher(false)), None);
    }
}

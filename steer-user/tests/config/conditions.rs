//! `[[set]]` conditions (`proto`, `sports`, `dports`, `src_macs`, `in`, `src_prefixes`): each
//! bad value located and explained; what they make of a set.

use super::*;
use steer::model::Family;

const P: &str = "prefixes = [\"10.0.0.0/8\"]";

const CASES: &[Case] = &[
    case(
        P,
        "proto = [\"facebook\"]",
        "\"facebook\"",
        "set[s].proto[0]",
        "use tcp, udp, icmp, any",
    ),
    case(
        P,
        "dports = [\"0\"]",
        "\"0\"",
        "set[s].dports[0]",
        "ports are 1-65535",
    ),
    case(
        P,
        "dports = [\"443\", \"2000-1000\"]",
        "\"2000-1000\"",
        "set[s].dports[1]",
        "write it \"1000-2000\"",
    ),
    case(
        P,
        "sports = [\"http\"]",
        "\"http\"",
        "set[s].sports[0]",
        "is not a port",
    ),
    case(
        P,
        "src_macs = [\"aa:bb:cc\"]",
        "\"aa:bb:cc\"",
        "set[s].src_macs[0]",
        "six hex bytes",
    ),
    case(
        P,
        "in = [\"eth9\"]",
        "\"eth9\"",
        "set[s].in[0]",
        "add it there first",
    ),
    case(
        P,
        "src_prefixes = [\"10.1.2.3/8\"]",
        "\"10.1.2.3/8\"",
        "set[s].src_prefixes[0]",
        "the network is 10.0.0.0/8",
    ),
    case(
        P,
        "match = \"src\"\nprefixes = [\"10.0.0.0/8\"]\nsrc_prefixes = [\"10.9.0.0/16\"]",
        "[\"10.9.0.0/16\"]",
        "set[s].src_prefixes",
        "only work in sets with match = \"dst\"",
    ),
    case(
        P,
        "proto = [\"tcp\"]\ndomains = [\"example.com\"]",
        "[\"example.com\"]",
        "set[s].domains",
        "cannot have domains",
    ),
    case(
        P,
        "dports = 443",
        "443",
        "set[s].dports",
        "dports = [\"443\", \"10000-20000\"]",
    ),
];

#[test]
fn each_bad_condition_has_its_own_located_message() {
    check_cases(CASES);
}

#[test]
fn a_set_with_conditions_needs_no_prefixes_and_may_repeat_another_sets() {
    let text = format!(
        "{MIN}\n[[set]]\nname = \"voip\"\npolicy = \"p\"\nproto = [\"udp\", \"any\"]\n\
         dports = [\"5060-5061\"]\nsrc_macs = [\"AA-bb-cc-dd-ee-ff\"]\nin = [\"br-lan\"]\n\
         \n[[set]]\nname = \"web\"\npolicy = \"p\"\nprefixes = [\"10.0.0.0/8\"]\n\
         src_prefixes = [\"192.168.1.0/24\"]\nproto = [\"tcp\", \"icmp\", \"47\"]\n"
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.sets[0].conditions.is_none(), "a plain prefix set");
    let voip = c.sets[1].conditions.as_ref().expect("conditions");
    assert!(
        voip.protos.is_empty(),
        "`any` among them: no protocol condition"
    );
    assert_eq!(
        voip.dports,
        vec![PortRange {
            first: 5060,
            last: 5061
        }]
    );
    assert_eq!(voip.src_macs, vec![[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]]);
    assert_eq!(voip.ins, vec!["br-lan".to_string()]);
    assert!(c.sets[1].prefixes.is_empty(), "every address");
    let web = c.sets[2].conditions.as_ref().expect("conditions");
    assert_eq!(
        web.protos,
        vec![Proto::Icmp, Proto::Number(6), Proto::Number(47)]
    );
    assert_eq!(
        c.sets[2].prefixes.len(),
        1,
        "10.0.0.0/8 is also set s's: both keep it"
    );
}

#[test]
fn more_than_64_sets_with_conditions_are_refused() {
    let mut text = MIN.to_string();
    for i in 0..65 {
        text.push_str(&format!(
            "\n[[set]]\nname = \"r{i}\"\npolicy = \"p\"\ndports = [\"{}\"]\n",
            1000 + i
        ));
    }
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].field, "set[r64]");
    assert!(e.errors[0].message.contains("at most 64"), "{e}");
}

#[test]
fn a_set_with_conditions_whose_list_files_are_empty_matches_nothing_and_check_says_so() {
    let text = format!(
        "{MIN}\n[[set]]\nname = \"nightly\"\npolicy = \"p\"\nfiles = [\"lists/empty.txt\"]\n\
         dports = [\"443\"]\n\n[[set]]\nname = \"web\"\npolicy = \"p\"\ndports = [\"80\"]\n"
    );
    let c = parse_in_fixtures(&text).unwrap_or_else(|e| panic!("{e}"));
    let nightly = c.sets[1].ordered_rule(1).expect("an ordered rule");
    assert_eq!(
        nightly.prefixes,
        Some(Vec::new()),
        "no address, not every address"
    );
    assert!(!nightly.fits(Family::V4) && !nightly.fits(Family::V6));
    let web = c.sets[2].ordered_rule(2).expect("an ordered rule");
    assert_eq!(web.prefixes, None, "no files, no prefixes: every address");
    let notes: Vec<String> = config::notes(&c)
        .into_iter()
        .filter(|n| n.starts_with("set "))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("set `nightly` has conditions but matches no packet")
            && notes[0].contains("list files hold no prefix"),
        "{}",
        notes[0]
    );
}

#[test]
fn more_mac_addresses_than_the_kernel_map_holds_are_refused() {
    let macs: Vec<String> = (0..1025u32)
        .map(|i| format!("\"02:00:00:00:{:02x}:{:02x}\"", i >> 8, i & 0xff))
        .collect();
    let text = format!(
        "{MIN}\n[[set]]\nname = \"devices\"\npolicy = \"p\"\nsrc_macs = [{}]\n",
        macs.join(", ")
    );
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].field, "set[devices]");
    assert!(
        e.errors[0].message.contains("1025 distinct MAC addresses")
            && e.errors[0].message.contains("at most 1024"),
        "{e}"
    );
    let fits = text.replacen(&format!(", {}", macs[1024]), "", 1);
    parse_in_fixtures(&fits).unwrap_or_else(|e| panic!("1024 fit: {e}"));
}

//! `[[policy]]`.

use super::*;

const CASES: &[Case] = &[
    case(
        "metric = 2 }]",
        "metric = 2 }]\nhash = \"port\"",
        "\"port\"",
        "policy[p].hash",
        "use one of `flow`, `src`",
    ),
    case(
        "metric = 2 }]",
        "metric = 2 }]\nfailback = \"now\"",
        "\"now\"",
        "policy[p].failback",
        "use one of `keep`, `move`",
    ),
    // The set that names `p` reports it missing too.
    Case {
        count: 2,
        ..case(
            "[[policy]]\nname = \"p\"",
            "[[policy]]\nname = \"main\"",
            "\"main\"",
            "policy[main].name",
            "built-in policy",
        )
    },
    case(
        "[[set]]",
        "[[policy]]\nname = \"p\"\nmembers = [{ wan = \"wan1\" }]\n\n[[set]]",
        "\"p\"\nmembers = [{ wan = \"wan1\" }]\n\n",
        "policy[p].name",
        "already used by the policy at line 21",
    ),
    case(
        "{ wan = \"wan2\", metric = 2 }",
        "{ wan = \"wan3\", metric = 2 }",
        "\"wan3\"",
        "policy[p].members[1].wan",
        "WAN `wan3` is not defined",
    ),
    case(
        "{ wan = \"wan2\", metric = 2 }",
        "{ wan = \"wan3\", metric = 2 }",
        "\"wan3\"",
        "policy[p].members[1].wan",
        "defined WANs: `wan1`, `wan2`",
    ),
    case(
        "{ wan = \"wan2\", metric = 2 }",
        "{ wan = \"wan1\", metric = 2 }",
        "\"wan1\", metric",
        "policy[p].members[1].wan",
        "already a member of this policy (members[0])",
    ),
    case(
        "members = [{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }]",
        "members = []",
        "[]",
        "policy[p].members",
        "no members",
    ),
    case(
        "metric = 2",
        "metric = 256",
        "256",
        "policy[p].members[1].metric",
        "from 1 to 255",
    ),
    case(
        "metric = 2",
        "weight = 0",
        "0 }",
        "policy[p].members[1].weight",
        "from 1 to 64",
    ),
    case(
        "{ wan = \"wan1\" }",
        "{ wan = \"wan1\", weigth = 2 }",
        "weigth",
        "policy[p].members[0].weigth",
        "did you mean `weight`?",
    ),
    case(
        "{ wan = \"wan1\" }",
        "{ metric = 1 }",
        "{ metric",
        "policy[p].members[0].wan",
        "required key `wan` is missing",
    ),
    case(
        "metric = 2 }]",
        "metric = 2 }]\nlast_resort = \"drop\"",
        "\"drop\"",
        "policy[p].last_resort",
        "use one of `default`, `unreachable`, `blackhole`",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}

#[test]
fn the_main_policy_is_built_in_and_the_new_keys_have_defaults() {
    let text = MIN.replace("policy = \"p\"\nprefixes", "policy = \"main\"\nprefixes")
        + "\n[[set]]\nname = \"lan-hosts\"\npolicy = \"p\"\nmatch = \"src\"\nprefixes = [\"192.168.1.0/24\"]\n";
    let c = parse_in_fixtures(&text).expect("a set may name the built-in `main` policy");
    assert_eq!(c.sets[0].policy, "main");
    let p = c.policy("p").unwrap();
    assert_eq!(
        (p.hash, p.failback),
        (config::HashBy::Flow, config::Failback::Keep)
    );
    assert_eq!(c.general.local, config::LocalScope::Routes);
    assert!(c.general.local_prefixes.is_empty());
    let tuned = MIN.replace(
        "members = [{ wan = \"wan1\" }, { wan = \"wan2\", metric = 2 }]",
        "members = [{ wan = \"wan1\" }, { wan = \"wan2\" }]\nhash = \"src\"\nfailback = \"move\"",
    )
    .replace("lan = [\"br-lan\"]", "lan = [\"br-lan\"]\nlocal = \"connected\"\nlocal_prefixes = [\"172.16.0.0/12\", \"fd00::/8\"]");
    let c = parse_in_fixtures(&tuned).expect("valid");
    let p = c.policy("p").unwrap();
    assert_eq!(
        (p.hash, p.failback),
        (config::HashBy::Src, config::Failback::Move)
    );
    assert_eq!(c.general.local, config::LocalScope::Connected);
    assert_eq!(c.general.local_prefixes.len(), 2);
}

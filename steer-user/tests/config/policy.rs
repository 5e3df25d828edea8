//! `[[policy]]`.

use super::*;

const CASES: &[Case] = &[
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

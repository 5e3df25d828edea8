//! `[default]`.

use super::*;

const CASES: &[Case] = &[
    case(
        "",
        "[default]\npolicy = \"balanced\"\n",
        "\"balanced\"",
        "default.policy",
        "policy `balanced` is not defined",
    ),
    case(
        "",
        "[default]\n",
        "[default]",
        "default.policy",
        "required key `policy` is missing",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}

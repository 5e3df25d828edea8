//! `[control]`.

use super::*;

const CASES: &[Case] = &[
    case(
        "",
        "[control]\nsocket = \"steer.sock\"\n",
        "\"steer.sock\"",
        "control.socket",
        "absolute path",
    ),
    case(
        "",
        "[control]\nmetrics = \"127.0.0.1\"\n",
        "\"127.0.0.1\"",
        "control.metrics",
        "add the port, e.g. 127.0.0.1:443",
    ),
    case(
        "",
        "[control]\nmetrics = \"[::1]:0\"\n",
        "\"[::1]:0\"",
        "control.metrics",
        "not a valid port",
    ),
];

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}

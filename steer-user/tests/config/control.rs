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
    case(
        "",
        "[control]\nmetrics = \"0.0.0.0:9464\"\n",
        "\"0.0.0.0:9464\"",
        "control.metrics",
        "is not a loopback address",
    ),
];

#[test]
fn metrics_on_another_address_need_the_opt_in() {
    let c = parse_in_fixtures(&format!(
        "{MIN}\n[control]\nmetrics = \"0.0.0.0:9464\"\nmetrics_public = true\n"
    ))
    .expect("valid with the opt-in");
    assert_eq!(c.control.metrics, Some("0.0.0.0:9464".parse().unwrap()));
    assert!(c.control.metrics_public);
}

#[test]
fn each_class_of_error_has_its_own_located_message() {
    check_cases(CASES);
}

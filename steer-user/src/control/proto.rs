//! The wire protocol: one JSON object per line in each direction, one request per connection.
//!
//! Requests are tagged by `cmd` (`{"cmd":"status"}`, `{"cmd":"wan","name":"wan1","mode":"down"}`)
//! and unknown commands or fields are rejected. Responses carry `ok`, an optional `error` and an
//! optional command-specific `body`; unknown response fields are ignored so that an older CLI can
//! read a newer daemon's answer.

use serde::{Deserialize, Serialize};

/// A command sent by the CLI to the daemon.
///
/// Deserialization goes through a JSON object and [`WireRequest`], because serde alone would
/// ignore `deny_unknown_fields` for the unit variants of an internally tagged enum (accepting
/// `{"cmd":"status","x":1}`) and would accept the sequence form `["status"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "cmd",
    rename_all = "kebab-case",
    deny_unknown_fields,
    try_from = "serde_json::Map<String, serde_json::Value>"
)]
pub enum Request {
    /// `{"cmd":"status"}`: the daemon's status document.
    Status,
    /// `{"cmd":"reload"}`: re-read the configuration and apply it.
    Reload,
    /// `{"cmd":"stop"}`: stop the daemon.
    Stop,
    /// `{"cmd":"wan","name":"wan1","mode":"down"}`: force a WAN up or down, or back to automatic.
    Wan { name: String, mode: WanMode },
    /// `{"cmd":"gateway","name":"wan1","gateway":"100.64.1.1"}`: the gateway a DHCP client
    /// hook hands in for a WAN (`null`: back to what the system says, for both families or
    /// only for `"family":"ipv4"` or `"ipv6"`).
    Gateway {
        name: String,
        gateway: Option<std::net::IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<String>,
    },
    /// `{"cmd":"prefix6","name":"wan1","prefix":"2001:db8:1::/56"}`: the delegated prefix a
    /// DHCPv6 client hook hands in for a WAN (`null`: back to what the system says).
    Prefix6 {
        name: String,
        prefix: Option<String>,
    },
    /// `{"cmd":"set","name":"bypass","op":"add","prefixes":["192.0.2.0/24"],"timeout":600}`:
    /// a runtime edit of a set (`steer set`). A long edit comes in several requests of one
    /// `batch` (same id, the last one marked): nothing is applied before the last.
    Set {
        name: String,
        op: SetOp,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prefixes: Vec<String>,
        /// Seconds an added entry lives (none: until deleted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<Batch>,
    },
}

/// What `steer set NAME OP` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetOp {
    /// Add prefixes (or give runtime entries a new timeout).
    Add,
    /// Delete runtime entries.
    Del,
    /// Delete every runtime entry of the set.
    Flush,
    /// The set's runtime entries.
    List,
}

/// One request of a multi-request edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Chosen by the client; the same for every request of the edit.
    pub id: u64,
    /// The edit is complete: check everything and apply it.
    pub last: bool,
}

/// [`Request`] as read from the wire: struct variants, so that unknown fields are refused for
/// every command.
#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
enum WireRequest {
    Status {},
    Reload {},
    Stop {},
    Wan {
        name: String,
        mode: WanMode,
    },
    Gateway {
        name: String,
        gateway: Option<std::net::IpAddr>,
        #[serde(default)]
        family: Option<String>,
    },
    Prefix6 {
        name: String,
        prefix: Option<String>,
    },
    Set {
        name: String,
        op: SetOp,
        #[serde(default)]
        prefixes: Vec<String>,
        #[serde(default)]
        timeout: Option<u64>,
        #[serde(default)]
        batch: Option<Batch>,
    },
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for Request {
    type Error = serde_json::Error;

    fn try_from(object: serde_json::Map<String, serde_json::Value>) -> Result<Self, Self::Error> {
        Ok(
            match serde_json::from_value(serde_json::Value::Object(object))? {
                WireRequest::Status {} => Self::Status,
                WireRequest::Reload {} => Self::Reload,
                WireRequest::Stop {} => Self::Stop,
                WireRequest::Wan { name, mode } => Self::Wan { name, mode },
                WireRequest::Gateway {
                    name,
                    gateway,
                    family,
                } => Self::Gateway {
                    name,
                    gateway,
                    family,
                },
                WireRequest::Prefix6 { name, prefix } => Self::Prefix6 { name, prefix },
                WireRequest::Set {
                    name,
                    op,
                    prefixes,
                    timeout,
                    batch,
                } => Self::Set {
                    name,
                    op,
                    prefixes,
                    timeout,
                    batch,
                },
            },
        )
    }
}

/// The administrative mode of a WAN set with `steer wan NAME up|down|auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WanMode {
    /// Forced up, whatever the health checks say.
    Up,
    /// Forced down (drained), whatever the health checks say.
    Down,
    /// Up or down as the health checks decide.
    Auto,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Command-specific result (the daemon fills it; e.g. the status document).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub body: serde_json::Value,
}

impl Response {
    /// A successful answer; pass `serde_json::Value::Null` for "no body".
    pub fn ok(body: serde_json::Value) -> Self {
        Self {
            ok: true,
            error: None,
            body,
        }
    }

    /// A failed answer with a message for the operator.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            body: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(request: &Request) -> String {
        serde_json::to_string(request).unwrap()
    }

    #[test]
    fn requests_serialize_exactly() {
        assert_eq!(wire(&Request::Status), r#"{"cmd":"status"}"#);
        assert_eq!(wire(&Request::Reload), r#"{"cmd":"reload"}"#);
        assert_eq!(wire(&Request::Stop), r#"{"cmd":"stop"}"#);
        let wan = Request::Wan {
            name: "wan1".into(),
            mode: WanMode::Down,
        };
        assert_eq!(wire(&wan), r#"{"cmd":"wan","name":"wan1","mode":"down"}"#);
        let gateway = Request::Gateway {
            name: "wan1".into(),
            gateway: Some("100.64.1.1".parse().unwrap()),
            family: None,
        };
        let line = wire(&gateway);
        assert_eq!(
            line,
            r#"{"cmd":"gateway","name":"wan1","gateway":"100.64.1.1"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), gateway);
        let auto = Request::Gateway {
            name: "wan1".into(),
            gateway: None,
            family: None,
        };
        assert_eq!(
            wire(&auto),
            r#"{"cmd":"gateway","name":"wan1","gateway":null}"#
        );
        let auto4 = Request::Gateway {
            name: "wan1".into(),
            gateway: None,
            family: Some("ipv4".into()),
        };
        let line = wire(&auto4);
        assert_eq!(
            line,
            r#"{"cmd":"gateway","name":"wan1","gateway":null,"family":"ipv4"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), auto4);
        for (mode, text) in [
            (WanMode::Up, "up"),
            (WanMode::Down, "down"),
            (WanMode::Auto, "auto"),
        ] {
            let request = Request::Wan {
                name: "x".into(),
                mode,
            };
            let line = wire(&request);
            assert!(line.contains(&format!(r#""mode":"{text}""#)), "{line}");
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
        }
    }

    #[test]
    fn requests_parse_with_any_field_order_and_whitespace() {
        let parsed: Request =
            serde_json::from_str(" {\"mode\" : \"auto\", \"name\":\"wan2\", \"cmd\":\"wan\"} \r\n")
                .unwrap();
        assert_eq!(
            parsed,
            Request::Wan {
                name: "wan2".into(),
                mode: WanMode::Auto
            }
        );
    }

    #[test]
    fn bad_requests_are_rejected() {
        for bad in [
            "",
            "garbage",
            "{}",
            r#"{"cmd":"nope"}"#,
            r#"{"cmd":"Status"}"#,
            r#"{"cmd":"status","x":1}"#,
            r#"{"cmd":"stop","force":true}"#,
            r#"{"cmd":"wan","name":1,"mode":"up"}"#,
            r#"{"cmd":"wan","name":"wan1"}"#,
            r#"{"cmd":"wan","name":"wan1","mode":"sideways"}"#,
            r#"{"cmd":"wan","name":"wan1","mode":"up","extra":0}"#,
            r#"["status"]"#,
            r#"{"cmd":"status"} {"cmd":"stop"}"#,
        ] {
            assert!(
                serde_json::from_str::<Request>(bad).is_err(),
                "accepted {bad:?}"
            );
        }
        assert!(serde_json::from_slice::<Request>(b"{\"cmd\":\"st\xffatus\"}").is_err());
    }

    #[test]
    fn error_messages_are_serde_messages() {
        let message = |text: &str| {
            serde_json::from_str::<Request>(text)
                .unwrap_err()
                .to_string()
        };
        assert!(message("garbage").starts_with("expected value"));
        assert!(message(r#"{"cmd":"nope"}"#).starts_with(
            "unknown variant `nope`, expected one of `status`, `reload`, `stop`, `wan`, `gateway`"
        ));
        assert!(message(r#"{"cmd":"status","x":1}"#).starts_with("unknown field `x`"));
        assert!(message("{}").starts_with("missing field `cmd`"));
        assert!(
            message(r#"{"cmd":"wan","name":1,"mode":"up"}"#)
                .starts_with("invalid type: integer `1`, expected a string")
        );
        assert!(message(r#"["status"]"#).starts_with("invalid type: sequence, expected a map"));
    }

    #[test]
    fn responses_skip_empty_fields() {
        assert_eq!(
            serde_json::to_string(&Response::ok(serde_json::Value::Null)).unwrap(),
            r#"{"ok":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::error("no")).unwrap(),
            r#"{"ok":false,"error":"no"}"#
        );
        let with_body = Response::ok(json!({"wans": 2}));
        let line = serde_json::to_string(&with_body).unwrap();
        assert_eq!(line, r#"{"ok":true,"body":{"wans":2}}"#);
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), with_body);
        // A newer daemon may add fields; an older CLI still reads the answer.
        let newer: Response = serde_json::from_str(r#"{"ok":true,"version":3}"#).unwrap();
        assert_eq!(newer, Response::ok(serde_json::Value::Null));
        assert!(serde_json::from_str::<Response>(r#"{"error":"x"}"#).is_err());
    }

    #[test]
    fn set_edits_go_on_the_wire_compactly_and_unknown_fields_are_refused() {
        let add = Request::Set {
            name: "bypass".into(),
            op: SetOp::Add,
            prefixes: vec!["192.0.2.0/24".into()],
            timeout: Some(600),
            batch: Some(Batch { id: 7, last: true }),
        };
        let line = wire(&add);
        assert_eq!(
            line,
            r#"{"cmd":"set","name":"bypass","op":"add","prefixes":["192.0.2.0/24"],"timeout":600,"batch":{"id":7,"last":true}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), add);
        let flush: Request =
            serde_json::from_str(r#"{"cmd":"set","name":"bypass","op":"flush"}"#).unwrap();
        assert_eq!(
            wire(&flush),
            r#"{"cmd":"set","name":"bypass","op":"flush"}"#
        );
        for bad in [
            r#"{"cmd":"set","name":"bypass","op":"add","ttl":5}"#,
            r#"{"cmd":"set","name":"bypass","op":"swap"}"#,
            r#"{"cmd":"set","name":"bypass","op":"add","batch":{"id":1,"last":true,"x":0}}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }
}

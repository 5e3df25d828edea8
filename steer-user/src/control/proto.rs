//! The wire protocol: one JSON object per line in each direction, one request per connection.
//!
//! Requests are tagged by `cmd` (`{"cmd":"status"}`, `{"cmd":"wan","name":"wan1","mode":"down"}`)
//! and unknown commands or fields are rejected. Responses carry `ok`, an optional `error` and an
//! optional command-specific `body`; unknown response fields are ignored so that an older CLI can
//! read a newer daemon's answer.

use serde::{Deserialize, Serialize};

/// A command sent by the CLI to the daemon.
///
/// Deserialization goes through a JSON object ([`Object`]) and [`WireRequest`], because serde
/// alone would ignore `deny_unknown_fields` for the unit variants of an internally tagged enum
/// (accepting `{"cmd":"status","x":1}`) and would accept the sequence form `["status"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "cmd",
    rename_all = "kebab-case",
    deny_unknown_fields,
    try_from = "Object"
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

impl Request {
    /// The command as a user typed it, short (no prefixes): for the log.
    pub fn command(&self) -> String {
        let shown = |name: &str| crate::shown::shown(name).to_string();
        let lower = |x: &dyn std::fmt::Debug| format!("{x:?}").to_lowercase();
        match self {
            Request::Status => "status".into(),
            Request::Reload => "reload".into(),
            Request::Stop => "stop".into(),
            Request::Wan { name, mode } => format!("wan {} {}", shown(name), lower(mode)),
            Request::Gateway { name, gateway, .. } => match gateway {
                Some(a) => format!("wan {} gateway {a}", shown(name)),
                None => format!("wan {} gateway auto", shown(name)),
            },
            Request::Prefix6 { name, .. } => format!("wan {} prefix6", shown(name)),
            Request::Set { name, op, .. } => format!("set {} {}", shown(name), lower(op)),
        }
    }
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

/// The longest timeout of a runtime set entry, in seconds: a year. An entry meant to stay has
/// no timeout; a bigger number is a mistake (`100000000d`, `u64::MAX`) that would be shown as
/// expiring in 213503982334600d.
pub const MAX_SET_TIMEOUT_SECS: u64 = 365 * 86_400;

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

/// A request's JSON object, refused when it names a key twice, at any depth. serde_json's own
/// map keeps the last of duplicate keys, so `{"cmd":"status","cmd":"stop"}` would be read as a
/// stop: whatever checked or logged the first key would not see what is acted on.
struct Object(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_map(UniqueKeys)? {
            serde_json::Value::Object(map) => Ok(Object(map)),
            // serde_json reads only an object as a map; another deserializer may not.
            _ => Err(serde::de::Error::invalid_type(
                serde::de::Unexpected::Other("a value that is not an object"),
                &"a map",
            )),
        }
    }
}

/// Any JSON value whose objects name each key once.
struct UniqueValue(serde_json::Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys).map(UniqueValue)
    }
}

/// Reads a JSON value as serde_json does, except that an object naming a key twice is an
/// error that names the key.
struct UniqueKeys;

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{}`: name each key once",
                    crate::shown::Shown(&key)
                )));
            }
            let UniqueValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

impl TryFrom<Object> for Request {
    type Error = serde_json::Error;

    fn try_from(Object(object): Object) -> Result<Self, Self::Error> {
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
                    timeout: Some(t), ..
                } if t > MAX_SET_TIMEOUT_SECS => {
                    return Err(serde::de::Error::custom(format!(
                        "timeout {t} s is more than a year ({MAX_SET_TIMEOUT_SECS} s); leave \
                         it out for an entry that stays until deleted"
                    )));
                }
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
    fn a_key_named_twice_is_refused_naming_it() {
        let message = |text: &str| {
            serde_json::from_str::<Request>(text)
                .unwrap_err()
                .to_string()
        };
        // serde_json alone keeps the last one: this was a stop.
        assert_eq!(
            message(r#"{"cmd":"status","cmd":"stop"}"#),
            "duplicate key `cmd`: name each key once at line 1 column 21"
        );
        for (text, key) in [
            (
                r#"{"cmd":"wan","name":"wan1","mode":"up","mode":"down"}"#,
                "mode",
            ),
            (r#"{"name":"a","cmd":"wan","name":"b","mode":"up"}"#, "name"),
            (
                r#"{"cmd":"set","name":"s","op":"add","prefixes":["192.0.2.0/24"],"batch":{"id":1,"last":false,"last":true}}"#,
                "last",
            ),
            (r#"{"cmd":"set","name":"s","op":"list","op":"flush"}"#, "op"),
            (
                r#"{"cmd":"stop","\u001b[2J":1,"\u001b[2J":2}"#,
                "\\u{1b}[2J",
            ),
        ] {
            let e = message(text);
            assert!(
                e.starts_with(&format!("duplicate key `{key}`: name each key once")),
                "{text}: {e}"
            );
        }
        // The same keys in different objects are fine.
        let set: Request = serde_json::from_str(
            r#"{"cmd":"set","name":"s","op":"add","prefixes":["192.0.2.0/24"],"batch":{"id":1,"last":true}}"#,
        )
        .unwrap();
        assert!(matches!(
            set,
            Request::Set {
                batch: Some(Batch { id: 1, last: true }),
                ..
            }
        ));
        // Values of every JSON type still read as before.
        let gateway: Request =
            serde_json::from_str(r#"{"cmd":"gateway","name":"w","gateway":null}"#).unwrap();
        assert!(matches!(gateway, Request::Gateway { gateway: None, .. }));
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"set","name":"s","op":"add","timeout":1.5}"#)
                .is_err()
        );
        let e = serde_json::from_str::<Request>(
            r#"{"cmd":"set","name":"s","op":"add","timeout":18446744073709551615}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("is more than a year (31536000 s)"),
            "{e}"
        );
        assert!(
            serde_json::from_str::<Request>(
                r#"{"cmd":"set","name":"s","op":"add","timeout":31536000}"#
            )
            .is_ok()
        );
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

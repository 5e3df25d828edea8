//! `[control]`: the control socket and the metrics listener — their keys, their raw form and
//! their checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    Control, DEFAULT_SOCKET, check,
    diag::Ctx,
    schema::{
        Example, Field,
        Kind::{Str, Table},
        S, opt, opt_shown,
    },
    targets::parse_socket_addr,
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawControl {
    pub socket: Option<S<String>>,
    pub metrics: Option<S<String>>,
}

pub(super) const EXAMPLE: Example =
    Example::Pieces(&["[control] with socket = \"", DEFAULT_SOCKET, "\""]);

pub(super) const FIELD: Field = opt_shown("control", Table(FIELDS), EXAMPLE);

const FIELDS: &[Field] = &[SOCKET, opt("metrics", Str, "metrics = \"127.0.0.1:9464\"")];

pub(super) const SOCKET: Field = opt_shown(
    "socket",
    Str,
    Example::Pieces(&["socket = \"", DEFAULT_SOCKET, "\""]),
);

pub(super) fn build(cx: &mut Ctx<'_>, raw: Option<S<RawControl>>) -> Control {
    let Some(c) = raw.map(S::into_inner) else {
        return Control::default();
    };
    let socket = match &c.socket {
        Some(v) => check::absolute(cx, v, "control.socket", &format!("e.g. {DEFAULT_SOCKET}")),
        None => PathBuf::from(DEFAULT_SOCKET),
    };
    let metrics = c
        .metrics
        .as_ref()
        .and_then(|v| match parse_socket_addr(v.get_ref()) {
            Ok(a) => Some(a),
            Err((m, h)) => {
                cx.err(&v.span(), "control.metrics", m, h);
                None
            }
        });
    Control { socket, metrics }
}

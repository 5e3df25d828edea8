//! `[control]`: the control socket and the metrics listener — their keys, their raw form and
//! their checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    Control, DEFAULT_SOCKET, check,
    diag::Ctx,
    schema::{
        Example, Field,
        Kind::{Bool, Str, Table},
        S, opt, opt_shown,
    },
    targets::parse_socket_addr,
};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawControl {
    pub socket: Option<S<String>>,
    pub metrics: Option<S<String>>,
    pub metrics_public: Option<S<bool>>,
}

pub(super) const EXAMPLE: Example =
    Example::Pieces(&["[control] with socket = \"", DEFAULT_SOCKET, "\""]);

pub(super) const FIELD: Field = opt_shown("control", Table(FIELDS), EXAMPLE);

const FIELDS: &[Field] = &[
    SOCKET,
    opt("metrics", Str, "metrics = \"127.0.0.1:9464\""),
    opt("metrics_public", Bool, "metrics_public = true"),
];

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
    let metrics_public = c.metrics_public.as_ref().is_some_and(|v| *v.get_ref());
    let metrics = c
        .metrics
        .as_ref()
        .and_then(|v| match parse_socket_addr(v.get_ref()) {
            Ok(a) if !a.ip().is_loopback() && !metrics_public => {
                cx.err(
                    &v.span(),
                    "control.metrics",
                    format!(
                        "{a} is not a loopback address: every host that reaches it would read \
                         the router's WAN states and traffic counters"
                    ),
                    "serve the metrics on 127.0.0.1 or [::1] (a local Prometheus or an SSH \
                     tunnel reaches them), or add `metrics_public = true` to [control] and \
                     firewall the port",
                );
                None
            }
            Ok(a) => Some(a),
            Err((m, h)) => {
                cx.err(&v.span(), "control.metrics", m, h);
                None
            }
        });
    Control {
        socket,
        metrics,
        metrics_public,
    }
}

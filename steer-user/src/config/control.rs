//! `[control]`: the control socket and the metrics listener — their keys, their raw form and
//! their checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    Control, DEFAULT_SOCKET, Written, check,
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

/// The longest path a Unix socket can have: `sun_path` holds 108 bytes with the closing NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Refuses a socket path the kernel cannot bind: otherwise it passes check and fails only when
/// the daemon starts.
fn socket_length(cx: &mut Ctx<'_>, v: &S<String>) {
    let len = v.get_ref().len();
    if len > MAX_SOCKET_PATH {
        cx.err(
            &v.span(),
            "control.socket",
            format!(
                "the path is {len} bytes long; a Unix socket's path is at most \
                 {MAX_SOCKET_PATH} bytes"
            ),
            format!("use a shorter path, e.g. {DEFAULT_SOCKET}"),
        );
    }
}

pub(super) fn build(cx: &mut Ctx<'_>, raw: Option<S<RawControl>>) -> Control {
    let Some(c) = raw.map(S::into_inner) else {
        return Control::default();
    };
    let socket = match &c.socket {
        Some(v) => {
            let path = check::absolute(cx, v, "control.socket", &format!("e.g. {DEFAULT_SOCKET}"));
            socket_length(cx, v);
            path
        }
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
    let place = |v: &Option<S<String>>| Written(v.as_ref().map(|v| cx.src.locate(v.span().start)));
    Control {
        socket,
        metrics,
        socket_place: place(&c.socket),
        metrics_place: place(&c.metrics),
        metrics_public,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{BASE, errors_in};

    #[test]
    fn a_socket_path_too_long_to_bind_is_refused() {
        let fits = format!("/{}", "s".repeat(super::MAX_SOCKET_PATH - 1));
        let text = format!("{BASE}\n[control]\nsocket = \"{fits}\"\n");
        assert!(crate::config::parse(&text, std::path::Path::new("s.toml")).is_ok());
        let long = format!("/{}", "s".repeat(super::MAX_SOCKET_PATH));
        let text = format!("{BASE}\n[control]\nsocket = \"{long}\"\n");
        assert_eq!(
            errors_in(&text),
            [
                "control.socket: the path is 108 bytes long; a Unix socket's path is at most 107 \
              bytes"
            ]
        );
    }
}

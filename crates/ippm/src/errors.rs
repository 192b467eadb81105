//! How `main` says what went wrong: the error chain once, and what to do about it.

use std::io::ErrorKind;

use ippm_net::twamp_client::TwpingError;
use ippm_proto::codepoints::Accept;
use ippm_proto::session::Error as ControlError;

/// The chain of `e` on one line, each cause once, then what to try, if anything is known.
pub(crate) fn explain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Many errors write their source into their own message ("...: {0}") and give it as
        // `source()` as well: printing both says everything twice.
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    match hint(e) {
        Some(h) => format!("{line}\n  {h}"),
        None => line,
    }
}

/// What to try for the first cause in `e`'s chain that has an answer.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    e.chain().find_map(|cause| {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io_hint(io.kind());
        }
        if let Some(t) = cause.downcast_ref::<TwpingError>() {
            return match t {
                TwpingError::Timeout(_) => Some(
                    "is the host up, and does its firewall let the control port through? \
                     (a server that drops connections looks the same)",
                ),
                TwpingError::SessionRefused(a)
                | TwpingError::Control(ControlError::Rejected(a)) => refusal_hint(*a),
                // Transparent: the io::Error is not a cause of its own in the chain.
                TwpingError::Io(io) => io_hint(io.kind()),
                _ => None,
            };
        }
        if let Some(ControlError::Rejected(a)) = cause.downcast_ref::<ControlError>() {
            return refusal_hint(*a);
        }
        None
    })
}

fn io_hint(kind: ErrorKind) -> Option<&'static str> {
    Some(match kind {
        ErrorKind::ConnectionRefused => {
            "nothing listens there: is `ippm serve` (or another server) listening on that port?"
        }
        ErrorKind::TimedOut => {
            "no answer in time: is the host up, and does a firewall let it through?"
        }
        ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root, or use a port \
             above 1023 (e.g. 127.0.0.1:8620)"
        }
        ErrorKind::AddrInUse => {
            "another process listens on that address (`ss -ltnup` shows which): stop it or pick \
             another port"
        }
        ErrorKind::AddrNotAvailable => "that address is not one of this host's (see `ip addr`)",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            "no route to that address: check the address and this host's routes"
        }
        ErrorKind::ConnectionReset => {
            "the server hung up: its log says why (limits, policy, a crash)"
        }
        _ => return None,
    })
}

/// Accept values: RFC 4656 §3.3 gives a server one answer (1) for every refusal, so the
/// client cannot tell a wrong passphrase from an unknown identity or a policy refusal.
fn refusal_hint(a: Accept) -> Option<&'static str> {
    match a {
        Accept::Failure => Some(
            "the server gives the same refusal for an unknown identity, a wrong pass-phrase \
             and a mode or session its policy does not allow: check that -u names an identity \
             the server knows, that -k holds the same pass-phrase as the server's key file, and \
             that the server's policy lets that identity use the mode (-A) and this many sessions",
        ),
        Accept::TemporaryResourceLimitation => {
            Some("the server is at a limit for now (sessions, connections): try again later")
        }
        Accept::PermanentResourceLimitation => Some(
            "the server can never grant this (its limits are below what was asked: fewer \
             packets, -c, or a shorter session)",
        ),
        Accept::NotSupported => Some(
            "the server does not support what was asked (a mode, an extension, or this much padding: -s)",
        ),
        _ => None,
    }
}

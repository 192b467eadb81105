//! A live status line on a terminal while a test runs: packets sent and received, loss so
//! far, median delay. Nothing when stderr is not a terminal (piped, logged, scripted).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(250);

/// What one event contributes.
pub(crate) enum Tick {
    /// A packet left.
    Sent,
    /// A packet (or reply) arrived with this delay.
    Received(f64),
}

/// Whether a status line should be shown (stderr is a terminal, and the caller is not
/// producing machine output on it).
pub(crate) fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// Draws the status line from `rx` until it closes, then clears it. `total`: packets planned;
/// `what`: the delay's name ("RTT", "delay").
pub(crate) async fn show<T>(
    mut rx: UnboundedReceiver<T>,
    total: u64,
    what: &'static str,
    tick: impl Fn(&T) -> Option<Tick>,
) {
    let (mut sent, mut received) = (0u64, 0u64);
    let mut delays: Vec<f64> = Vec::new();
    let mut every = tokio::time::interval(EVERY);
    let mut drawn = false;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => match tick(&ev) {
                    Some(Tick::Sent) => sent += 1,
                    Some(Tick::Received(d)) => {
                        received += 1;
                        delays.push(d);
                    }
                    None => {}
                },
                None => break,
            },
            _ = every.tick() => {
                let median = median_ms(&mut delays);
                let loss = if sent > 0 {
                    100.0 * sent.saturating_sub(received) as f64 / sent as f64
                } else {
                    0.0
                };
                let median = median.map_or_else(|| "-".into(), |m| format!("{m:.3} ms"));
                let mut e = std::io::stderr().lock();
                let _ = if sent > 0 {
                    write!(
                        e,
                        "\r\x1b[2K{sent}/{total} sent, {received} received, {loss:.1}% not back yet, median {what} {median}"
                    )
                } else {
                    write!(e, "\r\x1b[2K{received}/{total} received, median {what} {median}")
                };
                let _ = e.flush();
                drawn = true;
            }
        }
    }
    if drawn {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K");
        let _ = e.flush();
    }
}

/// What a two-way test's event (twping's, stamp's) adds to the line: the round trip
/// (T4 - T1) - (T3 - T2) of a reply.
pub(crate) fn two_way_tick(p: &ippm_net::twamp_client::Progress) -> Option<Tick> {
    use ippm_net::twamp_client::Progress;
    match p {
        Progress::Sent(_) => Some(Tick::Sent),
        Progress::Reply(r) => {
            let f = &r.reflector;
            let rtt = r.recv_time.nanos_since(f.sender_timestamp)
                - f.timestamp.nanos_since(f.receive_timestamp);
            Some(Tick::Received(rtt as f64 / 1e6))
        }
        Progress::Started { .. } => None,
    }
}

fn median_ms(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median() {
        assert_eq!(median_ms(&mut []), None);
        assert_eq!(median_ms(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_ms(&mut [4.0, 1.0, 3.0, 2.0]), Some(3.0));
    }
}

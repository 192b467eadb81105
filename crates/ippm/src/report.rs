//! Turning a run's records into statistics and printing them.

use std::fmt::Write;

use ippm_net::twamp_client::{Sent, TwpingResult};
use ippm_net::twoway::{TwoWayResult, stats_reply, stats_sent};
use ippm_proto::Timestamp;
use ippm_stats::{TwoWayReport, two_way};
use serde::Serialize;

/// A two-way report and the base time its nanoseconds count from.
pub(crate) struct TwoWay {
    report: TwoWayReport,
}

/// A reply's T1: the kernel's transmit stamp of its packet where it gave one (packets are sent
/// in sequence from 0, so a packet's record is at its seq), else the packet's own timestamp.
fn t1_of(sent: &[Sent], f: &ippm_proto::wire::test::ReflectorRepr) -> Timestamp {
    sent.get(f.sender_seq as usize)
        .filter(|s| s.seq == f.sender_seq)
        .map_or(f.sender_timestamp, |s| s.t1())
}

/// The run's statistics, as accumulated while it ran.
pub(crate) fn twoway(r: &impl TwoWayResult) -> TwoWay {
    TwoWay {
        report: r.report().clone(),
    }
}

/// The statistics of a run from its records alone (a run in progress, as the continuous
/// runner keeps it).
pub(crate) fn twoway_from_records(r: &impl TwoWayResult) -> TwoWay {
    let base = r.sent().first().map(|s| s.time).unwrap_or(Timestamp::ZERO);
    let sent: Vec<_> = r.sent().iter().map(|s| stats_sent(s, base)).collect();
    let replies: Vec<_> = r
        .replies()
        .iter()
        .map(|p| stats_reply(p, t1_of(r.sent(), &p.reflector), base))
        .collect();
    TwoWay {
        report: two_way(&sent, &replies),
    }
}

fn ms(ns: f64) -> String {
    let v = ns / 1e6;
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

pub(crate) fn utc(t: Timestamp) -> String {
    let Some(d) = t.to_unix() else {
        return "-".into();
    };
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn hops(v: &[u8]) -> String {
    match v {
        [] => "unknown".into(),
        [h] => format!("{h} (consistently)"),
        _ => format!("takes {} values: {:?}", v.len(), v),
    }
}

impl TwoWay {
    /// The statistics.
    pub(crate) fn report(&self) -> &TwoWayReport {
        &self.report
    }

    pub(crate) fn text(&self, r: &TwpingResult) -> String {
        let l = &self.report.loss;
        let mut s = self.title("twping", r);
        let _ = writeln!(s, "SID:\t{}", hexs(&r.sid));
        let _ = writeln!(s, "mode:\t{}", r.mode);
        if !r.extensions.is_empty() {
            let _ = writeln!(s, "extensions:\t{}", extensions(r.extensions));
        }
        if r.reflect_mismatches > 0 {
            let _ = writeln!(
                s,
                "reflected padding differed in {} replies",
                r.reflect_mismatches
            );
        }
        s + &self.body(r, Some((l.forward_lost, l.backward_lost)))
    }

    /// The report's first line.
    pub(crate) fn title(&self, what: &str, r: &impl TwoWayResult) -> String {
        format!(
            "\n--- ippm {what} statistics from {} to {} ---\n",
            r.local(),
            r.reflector()
        )
    }

    /// What every two-way report says: times, loss (per direction when `direction` is
    /// known), delays, hops, reordering.
    pub(crate) fn body(&self, r: &impl TwoWayResult, direction: Option<(usize, usize)>) -> String {
        let x = &self.report;
        let mut s = String::new();
        if let (Some(a), Some(b)) = (r.first_sent(), r.last_sent()) {
            let _ = writeln!(s, "first:\t{}\nlast:\t{}", utc(a), utc(b));
        }
        let _ = writeln!(
            s,
            "timestamps:\tsent {}, received by the kernel; reflector's own (T2, T3) as it sends them",
            match (r.kernel_tx_stamps() as usize, self.report.loss.sent) {
                (_, 0) => "-".to_string(),
                (k, n) if k == n => "by the kernel (transmit stamps)".to_string(),
                (0, _) => "in user space (no kernel transmit stamps)".to_string(),
                (k, n) => format!("by the kernel for {k} of {n} packets, the rest in user space"),
            }
        );
        let l = &x.loss;
        let split = match direction {
            Some((out, back)) => format!("{out} on the way out, {back} on the way back"),
            None => "stateless reflector: loss per direction unknown".into(),
        };
        let _ = writeln!(
            s,
            "{} sent, {} lost ({:.3}%: {split}), {} duplicates",
            l.sent,
            l.lost,
            l.loss_ratio * 100.0,
            x.duplicates
        );
        match &x.round_trip {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "round-trip time min/median/max = {}/{}/{} ms",
                    ms(d.min_ns as f64),
                    ms(d.median_ns),
                    ms(d.max_ns as f64)
                );
                let ps: Vec<String> = d
                    .percentiles
                    .iter()
                    .map(|p| format!("P{} {}", p.percentile, ms(p.value_ns)))
                    .collect();
                let _ = writeln!(s, "round-trip time percentiles: {} ms", ps.join(", "));
            }
            None => {
                let _ = writeln!(s, "round-trip time: no replies");
            }
        }
        let flag = if x.one_way_synchronized {
            format!("(err={} ms)", ms(x.one_way_error_ns))
        } else {
            "(clocks unsynchronized)".to_owned()
        };
        for (name, d) in [("send", &x.forward), ("reflect", &x.backward)] {
            if let Some(d) = d {
                let _ = writeln!(
                    s,
                    "{name} time min/median/max = {}/{}/{} ms, {flag}",
                    ms(d.min_ns as f64),
                    ms(d.median_ns),
                    ms(d.max_ns as f64)
                );
            }
        }
        if let Some(d) = &x.reflector_processing {
            let _ = writeln!(
                s,
                "reflector processing time min/max = {}/{} ms",
                ms(d.min_ns as f64),
                ms(d.max_ns as f64)
            );
        }
        if let Some(j) = x.round_trip_jitter_ns {
            let _ = writeln!(s, "two-way jitter = {} ms (P95-P50)", ms(j));
        }
        let _ = writeln!(s, "send hops = {}", hops(&x.forward_hops));
        let _ = writeln!(s, "reflect hops = {}", hops(&x.backward_hops));
        let o = &x.round_trip_reordering;
        if o.reordered == 0 {
            let _ = writeln!(s, "no reordering");
        } else {
            let _ = writeln!(
                s,
                "reordering: {:.3}% of packets (max extent {}, n-reordering 1/2/3 = {}/{}/{})",
                o.reordered_ratio * 100.0,
                o.max_extent,
                o.n_reordered[0],
                o.n_reordered[1],
                o.n_reordered[2]
            );
        }
        s
    }

    pub(crate) fn json<'a>(&'a self, r: &TwpingResult, records: bool) -> impl Serialize + 'a {
        let records = records.then(|| json_records(r));
        #[derive(Serialize)]
        struct Out<'a> {
            protocol: &'static str,
            mode: String,
            sid: String,
            local: String,
            reflector: String,
            padding: u32,
            setup_time_ns: u128,
            kernel_tx_stamps: u32,
            #[serde(flatten)]
            report: &'a TwoWayReport,
            #[serde(skip_serializing_if = "Option::is_none")]
            records: Option<Vec<Record>>,
        }
        Out {
            protocol: "twamp",
            mode: r.mode.to_string(),
            sid: hexs(&r.sid),
            local: r.local.to_string(),
            reflector: r.reflector.to_string(),
            padding: r.padding,
            setup_time_ns: r.setup_time.as_nanos(),
            kernel_tx_stamps: r.kernel_tx_stamps,
            report: &self.report,
            records,
        }
    }
}

/// One reply in the JSON `records` array.
#[derive(Serialize)]
pub(crate) struct Record {
    sender_seq: u32,
    reflector_seq: u32,
    t1_unix_ns: Option<u128>,
    t1_user_unix_ns: Option<u128>,
    t2_unix_ns: Option<u128>,
    t3_unix_ns: Option<u128>,
    t4_unix_ns: Option<u128>,
    sender_ttl: u8,
    reply_ttl: Option<u8>,
}

/// Every reply of a run as a JSON record.
pub(crate) fn json_records(r: &impl TwoWayResult) -> Vec<Record> {
    let unix = |t: Timestamp| t.to_unix().map(|d| d.as_nanos());
    r.replies()
        .iter()
        .map(|p| {
            let f = &p.reflector;
            Record {
                sender_seq: f.sender_seq,
                reflector_seq: f.seq,
                t1_unix_ns: unix(t1_of(r.sent(), f)),
                t1_user_unix_ns: unix(f.sender_timestamp),
                t2_unix_ns: unix(f.receive_timestamp),
                t3_unix_ns: unix(f.timestamp),
                t4_unix_ns: unix(p.recv_time),
                sender_ttl: f.sender_ttl,
                reply_ttl: p.ttl,
            }
        })
        .collect()
}

pub(crate) fn raw(r: &impl TwoWayResult) -> String {
    let mut s = String::from("seq rseq t1 t2 t3 t4 sender_ttl reply_ttl\n");
    for p in r.replies() {
        let f = &p.reflector;
        let _ = writeln!(
            s,
            "{} {} {:.9} {:.9} {:.9} {:.9} {} {}",
            f.sender_seq,
            f.seq,
            t1_of(r.sent(), f).as_secs_f64(),
            f.receive_timestamp.as_secs_f64(),
            f.timestamp.as_secs_f64(),
            p.recv_time.as_secs_f64(),
            f.sender_ttl,
            p.ttl.map_or_else(|| "-".into(), |t| t.to_string())
        );
    }
    s
}

fn extensions(m: ippm_proto::Modes) -> String {
    use ippm_proto::Modes;
    let mut v = Vec::new();
    if m.contains(Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL) {
        v.push("individual session control");
    }
    if m.contains(Modes::TWAMP_REFLECT_OCTETS) {
        v.push("reflect octets");
    }
    if m.contains(Modes::TWAMP_SYMMETRICAL_SIZE) {
        v.push("symmetrical size");
    }
    v.join(", ")
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_of_a_capture_timestamp() {
        // twamp-auth.pcap Start-Time: 2026-11-23T01:33:18.630820Z
        assert_eq!(
            utc(Timestamp::from_bits(0xeeae_165e_a17d_6b65)),
            "2026-11-23T01:33:18.630Z"
        );
        assert_eq!(ms(123_456.0), "0.1235");
        assert_eq!(ms(1_234_567.0), "1.235");
        assert_eq!(hops(&[0]), "0 (consistently)");
    }
}

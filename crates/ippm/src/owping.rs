//! `ippm owping`: an OWAMP test with a server, each way, with perfSONAR owping's options.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::owamp_client::{OneWay, OwpingOptions, owping};
use ippm_net::twamp_client::modes_from_letters;
use ippm_proto::{SecurityMode, Timestamp};
use ippm_stats::oneway::{OneWayReport, Record, one_way};
use serde::Serialize;

use crate::twping::{load_identity, parse_interval, resolve};

/// Options of `ippm owping`.
#[derive(Debug, Args)]
pub(crate) struct OwpingArgs {
    /// The server: HOST or HOST:PORT (default port 861).
    host: String,
    /// Only client to server.
    #[arg(short = 't', conflicts_with = "from")]
    to: bool,
    /// Only server to client.
    #[arg(short = 'f')]
    from: bool,
    /// Number of test packets each way.
    #[arg(short = 'c', default_value_t = 100)]
    count: u32,
    /// Mean time between packets in seconds; `f` for a fixed interval, `e` (default)
    /// exponential (RFC 4656 §5 schedule).
    #[arg(short = 'i', default_value = "0.1e")]
    interval: String,
    /// Padding octets per packet.
    #[arg(short = 's', default_value_t = 0)]
    padding: u32,
    /// DSCP of the test packets.
    #[arg(short = 'D', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..64))]
    dscp: u8,
    /// Seconds after its scheduled time that a packet still counts.
    #[arg(short = 'L', default_value_t = 2.0)]
    loss_timeout: f64,
    /// Acceptable modes, letters O, A, E (default: AEO with -u, else O).
    #[arg(short = 'A')]
    modes: Option<String>,
    /// Identity for the authenticated and encrypted modes.
    #[arg(short = 'u')]
    user: Option<String>,
    /// Pass-phrase file holding the identity's passphrase.
    #[arg(short = 'k')]
    keyfile: Option<PathBuf>,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// Local address for the test packets.
    #[arg(short = 'S')]
    source: Option<IpAddr>,
    /// Local UDP port range, LOW-HIGH.
    #[arg(short = 'P')]
    ports: Option<String>,
    /// Print every packet record (with --json: `records` arrays).
    #[arg(short = 'R')]
    raw: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Highest PBKDF2 Count to accept from the server.
    #[arg(long, default_value_t = ippm_proto::crypto::DEFAULT_MAX_COUNT)]
    max_count: u32,
}

fn records(w: &OneWay) -> (Vec<Record>, Timestamp) {
    let base = w
        .records
        .iter()
        .map(|r| r.send_time)
        .min()
        .unwrap_or(Timestamp::ZERO);
    let recs = w
        .records
        .iter()
        .map(|r| Record {
            seq: r.seq,
            send_ns: r.send_time.nanos_since(base),
            recv_ns: (!r.is_lost()).then(|| r.recv_time.nanos_since(base)),
            synchronized: r.send_error.synchronized() && r.recv_error.synchronized(),
            error_ns: (r.send_error.seconds() + r.recv_error.seconds()) * 1e9,
            ttl: Some(r.ttl),
        })
        .collect();
    (recs, base)
}

fn report(w: &OneWay) -> OneWayReport {
    let skips: Vec<(u32, u32)> = w.skip_ranges.iter().map(|s| (s.first, s.last)).collect();
    one_way(w.next_seqno, &skips, &records(w).0)
}

fn ms(ns: f64) -> String {
    let v = ns / 1e6;
    if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

fn text(name: &str, w: &OneWay, r: &OneWayReport, raw: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n--- ippm owping statistics {name} ---");
    let _ = writeln!(
        s,
        "SID:\t{}",
        w.sid.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let l = &r.loss;
    let _ = writeln!(
        s,
        "{} sent, {} lost ({:.3}%), {} duplicates",
        l.sent,
        l.lost,
        l.loss_ratio * 100.0,
        r.duplicates
    );
    match &r.delay {
        Some(d) => {
            let sync = if r.synchronized {
                format!("(err={} ms)", ms(r.max_error_ns))
            } else {
                "(clocks unsynchronized)".into()
            };
            let _ = writeln!(
                s,
                "one-way delay min/median/max = {}/{}/{} ms, {sync}",
                ms(d.min_ns as f64),
                ms(d.median_ns),
                ms(d.max_ns as f64)
            );
            let ps: Vec<String> = d
                .percentiles
                .iter()
                .map(|p| format!("P{} {}", p.percentile, ms(p.value_ns)))
                .collect();
            let _ = writeln!(s, "one-way delay percentiles: {} ms", ps.join(", "));
        }
        None => {
            let _ = writeln!(s, "one-way delay: no packets received");
        }
    }
    if let Some(j) = r.jitter_ns {
        let _ = writeln!(s, "one-way jitter = {} ms (P95-P50)", ms(j));
    }
    if let Some(i) = &r.ipdv {
        let _ = writeln!(
            s,
            "IPDV min/median/max = {}/{}/{} ms",
            ms(i.min_ns as f64),
            ms(i.median_ns),
            ms(i.max_ns as f64)
        );
    }
    match r.hops.as_slice() {
        [] => {}
        [h] => {
            let _ = writeln!(s, "hops = {h} (consistently)");
        }
        v => {
            let _ = writeln!(s, "hops takes {} values: {v:?}", v.len());
        }
    }
    let o = &r.reordering;
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
    if raw {
        let _ = writeln!(s, "seq send recv ttl");
        for x in &w.records {
            let _ = writeln!(
                s,
                "{} {:.9} {:.9} {}",
                x.seq,
                x.send_time.as_secs_f64(),
                x.recv_time.as_secs_f64(),
                x.ttl
            );
        }
    }
    s
}

#[derive(Serialize)]
struct DirOut {
    sid: String,
    #[serde(flatten)]
    report: OneWayReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecOut>>,
}

#[derive(Serialize)]
struct RecOut {
    seq: u32,
    send_unix_ns: Option<u128>,
    recv_unix_ns: Option<u128>,
    ttl: u8,
}

fn dir_out(w: &OneWay, raw: bool) -> DirOut {
    DirOut {
        sid: w.sid.iter().map(|b| format!("{b:02x}")).collect(),
        report: report(w),
        records: raw.then(|| {
            w.records
                .iter()
                .map(|r| RecOut {
                    seq: r.seq,
                    send_unix_ns: r.send_time.to_unix().map(|d| d.as_nanos()),
                    recv_unix_ns: (!r.is_lost())
                        .then(|| r.recv_time.to_unix().map(|d| d.as_nanos()))
                        .flatten(),
                    ttl: r.ttl,
                })
                .collect()
        }),
    }
}

pub(crate) async fn run(a: OwpingArgs) -> anyhow::Result<ExitCode> {
    let server = resolve(&a.host, a.ipv4, a.ipv6, 861)?;
    let letters = a.modes.clone().unwrap_or_else(|| {
        if a.user.is_some() {
            "AEO".into()
        } else {
            "O".into()
        }
    });
    let Some(modes) = modes_from_letters(&letters) else {
        bail!("-A takes letters O, A, E (got {letters:?})");
    };
    if modes.contains(&SecurityMode::Mixed) && modes.len() == 1 {
        bail!("OWAMP has no mixed mode (-A M)");
    }
    let opts = OwpingOptions {
        server,
        modes,
        identity: load_identity(&a.user, &a.keyfile)?,
        count: a.count,
        interval: parse_interval(&a.interval)?,
        padding: a.padding,
        dscp: a.dscp,
        loss_timeout: Duration::from_secs_f64(a.loss_timeout.clamp(0.0, 3600.0)),
        local: a.source,
        ports: a
            .ports
            .as_deref()
            .map(crate::serve::parse_port_range)
            .transpose()?,
        max_count: a.max_count,
        control_timeout: Duration::from_secs(10),
        to_server: !a.from,
        from_server: !a.to,
    };
    let r = owping(&opts)
        .await
        .with_context(|| format!("owping {server}"))?;
    if a.json {
        #[derive(Serialize)]
        struct Out {
            protocol: &'static str,
            mode: String,
            setup_time_ns: u128,
            #[serde(skip_serializing_if = "Option::is_none")]
            to_server: Option<DirOut>,
            #[serde(skip_serializing_if = "Option::is_none")]
            from_server: Option<DirOut>,
        }
        let out = Out {
            protocol: "owamp",
            mode: r.mode.to_string(),
            setup_time_ns: r.setup_time.as_nanos(),
            to_server: r.to_server.as_ref().map(|w| dir_out(w, a.raw)),
            from_server: r.from_server.as_ref().map(|w| dir_out(w, a.raw)),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("mode:\t{}", r.mode);
        if let Some(w) = &r.to_server {
            print!("{}", text(&format!("to {server}"), w, &report(w), a.raw));
        }
        if let Some(w) = &r.from_server {
            print!("{}", text(&format!("from {server}"), w, &report(w), a.raw));
        }
    }
    Ok(ExitCode::SUCCESS)
}

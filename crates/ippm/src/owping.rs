//! `ippm owping`: an OWAMP test with a server, each way, with perfSONAR owping's options.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use ippm_net::owamp_client::{OneWay, OwpingOptions, owping};
use ippm_proto::{SecurityMode, Timestamp};
use ippm_stats::oneway::{OneWayReport, Record, one_way};
use serde::Serialize;

use crate::plot;
use crate::test_args::TestArgs;

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
    #[command(flatten)]
    t: TestArgs,
    /// Padding octets per packet.
    #[arg(short = 's', default_value_t = 0)]
    padding: u32,
    /// Also draw the delays (over time, and their distribution) to FILE: .svg or .png.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
}

fn records(w: &OneWay) -> (Vec<Record>, Timestamp) {
    let base = w
        .records
        .iter()
        .map(|r| w.send_time(r))
        .min()
        .unwrap_or(Timestamp::ZERO);
    let recs = w
        .records
        .iter()
        .map(|r| Record {
            seq: r.seq,
            send_ns: w.send_time(r).nanos_since(base),
            recv_ns: (!r.is_lost()).then(|| r.recv_time.nanos_since(base)),
            synchronized: r.send_error.synchronized() && r.recv_error.synchronized(),
            error_ns: (r.send_error.seconds() + r.recv_error.seconds()) * 1e9,
            ttl: Some(r.ttl),
        })
        .collect();
    (recs, base)
}

pub(crate) fn report(w: &OneWay) -> OneWayReport {
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
    let sent = match (w.kernel_tx.is_empty(), w.kernel_stamped(), w.records.len()) {
        (true, _, _) => "as the sender stamped them".to_string(),
        (false, 0, _) => "in user space (no kernel transmit stamps)".to_string(),
        (false, k, n) if k >= n => "by the kernel (transmit stamps)".to_string(),
        (false, k, _) => format!("by the kernel for {k} packets, the rest in user space"),
    };
    let _ = writeln!(
        s,
        "timestamps:\tsent {sent}; received by the receiver's kernel"
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
    if r.unknown_records > 0 {
        // Listed by -R, but not packets the sender counted: said, so the figures add up.
        let _ = writeln!(
            s,
            "{} records for packets the sender did not count as sent (at or past its Next \
             Seqno), not counted",
            r.unknown_records
        );
    }
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
                w.send_time(x).as_secs_f64(),
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
    kernel_tx_stamps: usize,
    #[serde(flatten)]
    report: OneWayReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<Vec<RecOut>>,
}

#[derive(Serialize)]
struct RecOut {
    seq: u32,
    /// The kernel's transmit stamp where we sent it and the kernel said, else the packet's.
    send_unix_ns: Option<u128>,
    /// The send time the packet carried (stamped in user space by its sender).
    send_user_unix_ns: Option<u128>,
    recv_unix_ns: Option<u128>,
    ttl: u8,
}

fn dir_out(w: &OneWay, raw: bool) -> DirOut {
    DirOut {
        sid: w.sid.iter().map(|b| format!("{b:02x}")).collect(),
        kernel_tx_stamps: w.kernel_stamped(),
        report: report(w),
        records: raw.then(|| {
            w.records
                .iter()
                .map(|r| RecOut {
                    seq: r.seq,
                    send_unix_ns: w.send_time(r).to_unix().map(|d| d.as_nanos()),
                    send_user_unix_ns: r.send_time.to_unix().map(|d| d.as_nanos()),
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
    if let Some(path) = &a.plot {
        plot::check_format(path)?;
    }
    let server = a.t.server(&a.host, 861)?;
    let modes = a.t.modes(a.t.ike_required())?;
    crate::test_args::check_padding(a.padding, a.t.largest_header(&modes, false), server)?;
    if modes == [SecurityMode::Mixed] {
        bail!("OWAMP has no mixed mode (-A M)");
    }
    let (ike, keeper) = a.t.ike_credential(server.ip()).await?;
    let modes = if ike.is_some() {
        a.t.modes(true)?
    } else {
        modes
    };
    let (progress, status) = if crate::progress::wanted() && !a.t.json && !a.to {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let total = u64::from(a.t.count);
        let status = tokio::spawn(crate::progress::show(
            rx,
            total,
            "delay from the server",
            |r: &ippm_proto::wire::owamp::DataRecord| {
                Some(crate::progress::Tick::Received(
                    r.recv_time.nanos_since(r.send_time) as f64 / 1e6,
                ))
            },
        ));
        (Some(tx), Some(status))
    } else {
        (None, None)
    };
    let opts = OwpingOptions {
        server,
        modes,
        identity: if a.t.ike_required() {
            None
        } else {
            a.t.identity()?
        },
        ike,
        progress,
        count: a.t.count,
        interval: a.t.interval()?,
        padding: a.padding,
        dscp: a.t.dscp,
        loss_timeout: a.t.loss_timeout(),
        local: a.t.source,
        ports: a.t.ports()?,
        max_count: a.t.max_count,
        control_timeout: std::time::Duration::from_secs(10),
        rng: ippm_net::rng::os(),
        to_server: !a.from,
        from_server: !a.to,
    };
    let r = owping(&opts).await;
    drop(opts);
    let r = a.t.finish(r, status, keeper, "owping", server).await?;
    if a.t.json {
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
            to_server: r.to_server.as_ref().map(|w| dir_out(w, a.t.raw)),
            from_server: r.from_server.as_ref().map(|w| dir_out(w, a.t.raw)),
        };
        crate::out::outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        crate::out::outln!("mode:\t{}", r.mode)?;
        if let Some(w) = &r.to_server {
            crate::out::out!("{}", text(&format!("to {server}"), w, &report(w), a.t.raw))?;
        }
        if let Some(w) = &r.from_server {
            crate::out::out!(
                "{}",
                text(&format!("from {server}"), w, &report(w), a.t.raw)
            )?;
        }
    }
    if let Some(path) = &a.plot {
        let mut data = plot::from_owping(&r);
        for s in &mut data.series {
            s.label = s.label.replace("server", &server.to_string());
        }
        plot::render(&data, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `ippm stamp`: a STAMP test (RFC 8762, with RFC 8972's TLVs) to one Session-Reflector, with
//! twping's options where they apply and its report, JSON and plots.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::stamp_client::{
    AccessId, AccessReport, CosRequest, DEFAULT_PORT, ReturnCode, StampClientError, StampKey,
    StampMode, StampOptions, StampResult, TlvReport, TlvSelection, stamp, tlv_name,
};
use serde::Serialize;

use crate::ike_args::{IkeArgs, IkeKeeper, IkeUse};
use crate::test_args::CommonArgs;
use crate::{plot, report};

/// Options of `ippm stamp`.
#[derive(Debug, Args)]
pub(crate) struct StampArgs {
    /// The Session-Reflector: HOST or HOST:PORT (default port 862).
    host: String,
    #[command(flatten)]
    t: CommonArgs,
    /// Mode: O (unauthenticated) or A (authenticated: HMAC-SHA-256 over each packet, needs
    /// --hmac-key-file or a key from IKE). Default: A with a key from IKE, else O.
    #[arg(short = 'A')]
    mode: Option<String>,
    /// A file (mode 600) holding the HMAC key in hex. It protects the TLVs with an HMAC TLV
    /// whenever TLVs other than Extra Padding are sent, in either mode.
    #[arg(long, value_name = "FILE")]
    hmac_key_file: Option<PathBuf>,
    /// Session Identifier, 1-65535 (RFC 8972 §3; default: random).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    ssid: Option<u16>,
    /// Padding octets per packet, carried in an Extra Padding TLV (RFC 8972 §4.1: the packet
    /// grows by N + 4).
    #[arg(short = 's', long = "tlv-padding", value_name = "N")]
    padding: Option<u32>,
    /// Location TLV: ask where our packets reached the reflector (ports, addresses, MAC).
    #[arg(long)]
    location: bool,
    /// Timestamp Information TLV: ask how the reflector's clock is synchronized and stamps.
    #[arg(long)]
    timestamp_info: bool,
    /// Class of Service TLV: ask for the replies to be sent with DSCP; send our packets with
    /// ECN (0-3, default 0); reports the DSCP and ECN our packets reached the reflector with.
    #[arg(long, value_name = "DSCP[:ECN]")]
    cos: Option<String>,
    /// Direct Measurement TLV: packet counters of both ends, loss per direction from them.
    #[arg(long)]
    direct_measurement: bool,
    /// Access Report TLV: access ID (1 or 3gpp, 2 or non-3gpp) and return code (1:
    /// available, 2: unavailable), carried by every packet.
    #[arg(long, value_name = "ID:RC")]
    access_report: Option<String>,
    /// Follow-Up Telemetry TLV: the real send time of the reflector's previous reply,
    /// reported as a corrected reflector time.
    #[arg(long)]
    follow_up: bool,
    /// Also draw the delays (over time, and their distribution) to FILE: .svg or .png.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// The HMAC key from an IKEv2 SA with the reflector instead of --hmac-key-file (ippm's
    /// extension of RFC 7717 to STAMP; the reflector must take IKE keys from us: `[stamp]
    /// ike = true`). See docs/stamp.md.
    #[command(flatten)]
    ike: IkeArgs,
}

fn mode_of(letters: &str) -> anyhow::Result<StampMode> {
    match letters {
        "O" | "o" => Ok(StampMode::Unauthenticated),
        "A" | "a" => Ok(StampMode::Authenticated),
        _ => bail!(
            "-A {letters:?}: STAMP has two modes, O (unauthenticated) or A (authenticated); \
             E and M are TWAMP's"
        ),
    }
}

fn cos_of(s: &str) -> anyhow::Result<CosRequest> {
    let (d, e) = s.split_once(':').unwrap_or((s, "0"));
    let dscp: u8 = d
        .parse()
        .ok()
        .filter(|d| *d < 64)
        .with_context(|| format!("--cos {s:?}: DSCP 0-63, then optionally :ECN (0-3)"))?;
    let ecn: u8 = e
        .parse()
        .ok()
        .filter(|e| *e < 4)
        .with_context(|| format!("--cos {s:?}: ECN 0-3 after the colon"))?;
    Ok(CosRequest { dscp, ecn })
}

fn access_report_of(s: &str) -> anyhow::Result<AccessReport> {
    let usage = || format!("--access-report {s:?}: ID:RC, ID 1 (3gpp) or 2 (non-3gpp), RC 0-255");
    let (id, rc) = s.split_once(':').with_context(usage)?;
    let id = match id.to_ascii_lowercase().as_str() {
        "1" | "3gpp" => AccessId::ThreeGpp,
        "2" | "non-3gpp" => AccessId::NonThreeGpp,
        _ => bail!(usage()),
    };
    let rc: u8 = rc.parse().ok().with_context(usage)?;
    Ok(AccessReport {
        id,
        return_code: ReturnCode(rc),
    })
}

impl StampArgs {
    /// The run's options, every input checked; no network work yet.
    fn options(&self) -> anyhow::Result<StampOptions> {
        if self.t.count == 0 {
            bail!("-c 0: nothing to send; ask for at least one packet");
        }
        if let Some(path) = &self.plot {
            plot::check_format(path)?;
        }
        let mode = mode_of(self.mode.as_deref().unwrap_or("O"))?;
        let ike = self.ike_wanted();
        let key = match &self.hmac_key_file {
            Some(_) if ike => bail!(
                "--hmac-key-file and {}: give one source of the key",
                self.ike.flag(IkeUse::Off)
            ),
            Some(p) => Some(ippm_net::keyfile::stamp_key(p).context("--hmac-key-file")?),
            None if mode == StampMode::Authenticated && !ike => bail!(
                "-A A (authenticated mode) needs the HMAC key: --hmac-key-file FILE, or --ike \
                 for a key from an IKE SA with the reflector"
            ),
            None => None,
        };
        let reflector = self.t.server(&self.host, DEFAULT_PORT)?;
        let padding = self
            .padding
            .map(|n| {
                // Checked here, before any packet: the TLV's 4-octet header and the base
                // packet share the datagram with the padding.
                let max = ippm_net::stamp_client::max_payload(&reflector) - mode.base_len() - 4;
                match u16::try_from(n) {
                    Ok(p) if usize::from(p) <= max => Ok(p),
                    _ => Err(anyhow::anyhow!(
                        "-s {n}: a UDP datagram has room for at most {max} octets of padding"
                    )),
                }
            })
            .transpose()?;
        let tlvs = TlvSelection {
            padding,
            location: self.location,
            timestamp_info: self.timestamp_info,
            class_of_service: self.cos.as_deref().map(cos_of).transpose()?,
            direct_measurement: self.direct_measurement,
            access_report: self
                .access_report
                .as_deref()
                .map(access_report_of)
                .transpose()?,
            follow_up: self.follow_up,
        };
        let rng = ippm_net::rng::os();
        let ssid = match self.ssid {
            Some(s) => s,
            None => loop {
                let s = u16::from_be_bytes(ippm_net::rng::array(rng.as_ref())?);
                if s != 0 {
                    break s;
                }
            },
        };
        let opts = StampOptions {
            reflector,
            count: self.t.count,
            interval: self.t.interval()?,
            dscp: self.t.dscp,
            loss_timeout: self.t.loss_timeout(),
            local: self.t.source,
            ports: self.t.ports()?,
            mode,
            key,
            ssid,
            tlvs,
            // Records only for what prints or draws them: otherwise memory does not grow with -c.
            keep_records: self.t.raw || self.plot.is_some(),
            progress: None,
            rng,
        };
        if !ike {
            check_len(&opts)?;
        }
        Ok(opts)
    }

    /// Whether the key may come from IKE (--ike other than off, or --ike-spi).
    fn ike_wanted(&self) -> bool {
        self.ike.use_(IkeUse::Off) != IkeUse::Off || self.ike.required(IkeUse::Off)
    }

    /// The key from IKE, as --ike says, into `opts` (authenticated unless -A O was given);
    /// what keeps an inline SA up.
    async fn ike_key(&self, opts: &mut StampOptions) -> anyhow::Result<IkeKeeper> {
        if !self.ike_wanted() {
            return Ok(IkeKeeper::none());
        }
        let (cred, keeper) = self
            .ike
            .credential(opts.reflector.ip(), IkeUse::Off)
            .await?;
        match cred {
            Some(c) => {
                opts.key = Some(
                    StampKey::from_ike(c.secret.expose(), c.spi_i, c.spi_r)
                        .context("the IKE SA's secret")?,
                );
                if self.mode.is_none() {
                    opts.mode = StampMode::Authenticated;
                }
                tracing::info!(
                    spi_i = %hex::encode(c.spi_i),
                    spi_r = %hex::encode(c.spi_r),
                    "STAMP key from the IKE SA with {}",
                    opts.reflector.ip()
                );
            }
            // --ike fallback without an SA: as if --ike were not given.
            None if opts.mode == StampMode::Authenticated => bail!(
                "no IKE SA with {} ({}) and no --hmac-key-file: no key for -A A",
                opts.reflector.ip(),
                self.ike.flag(IkeUse::Off)
            ),
            None => {}
        }
        check_len(opts)?;
        Ok(keeper)
    }
}

/// The test packet fits a UDP datagram and its mode has its key.
fn check_len(opts: &StampOptions) -> anyhow::Result<()> {
    match opts.packet_len() {
        Err(StampClientError::TooLarge { len, max }) => bail!(
            "a {len}-octet test packet does not fit a UDP datagram (at most {max} octets): use \
             a smaller -s"
        ),
        r => r.map(drop).map_err(Into::into),
    }
}

pub(crate) async fn run(a: StampArgs) -> anyhow::Result<ExitCode> {
    let mut opts = a.options()?;
    let keeper = a.ike_key(&mut opts).await?;
    let (progress, status) = if crate::progress::wanted() && !a.t.json {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let status = tokio::spawn(crate::progress::show(
            rx,
            u64::from(a.t.count),
            "RTT",
            crate::progress::two_way_tick,
        ));
        (Some(tx), Some(status))
    } else {
        (None, None)
    };
    opts.progress = progress;
    let result = stamp(&opts).await;
    keeper.finish().await;
    let reflector = opts.reflector;
    drop(opts);
    if let Some(s) = status {
        let _ = s.await;
    }
    let r = result.with_context(|| format!("stamp {reflector}"))?;
    if r.report.loss.received == 0 {
        if r.bad.bad_hmac > 0 {
            bail!(
                "no reply from {reflector} accepted: {} replies failed their HMAC check (does \
                 the reflector use this key and mode? -A, --hmac-key-file)",
                r.bad.bad_hmac
            );
        }
        bail!("no reply from {reflector}: is a STAMP reflector listening there?");
    }
    let out = report::twoway(&r);
    if a.t.json {
        crate::out::outln!("{}", serde_json::to_string_pretty(&json(&r, a.t.raw)?)?)?;
    } else {
        if a.t.raw {
            crate::out::out!("{}", report::raw(&r))?;
        }
        crate::out::out!("{}", text(&out, &r))?;
    }
    if let Some(path) = &a.plot {
        let title = format!("STAMP delay, {} (reflector {})", r.mode.name(), r.reflector);
        plot::render(&plot::from_two_way(&r, title), path)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn stateful_text(r: &StampResult) -> &'static str {
    match r.reflector_stateful {
        Some(true) => "stateful (numbers its replies itself: loss per direction known)",
        Some(false) if r.report.loss.lost == 0 => {
            "stateless, or stateful with no loss on the way in"
        }
        Some(false) => "stateless (copies our sequence numbers): loss per direction unknown",
        None => "unknown (no reply)",
    }
}

fn spans(v: &Option<[f64; 3]>) -> String {
    v.map_or_else(
        || "-".into(),
        |[lo, mean, hi]| format!("{:.4}/{:.4}/{:.4} ms", lo / 1e6, mean / 1e6, hi / 1e6),
    )
}

/// The text report: twping's, with a STAMP header and the TLV answers.
fn text(out: &report::TwoWay, r: &StampResult) -> String {
    let mut s = out.title("stamp", r);
    let _ = writeln!(s, "mode:\t{} (RFC 8762), SSID {}", r.mode.name(), r.ssid);
    let _ = writeln!(s, "reflector:\t{}", stateful_text(r));
    let tlvs: Vec<&str> = r.tlvs_sent.iter().map(|&t| tlv_name(t)).collect();
    let _ = writeln!(
        s,
        "packets:\t{} octets; TLVs: {}",
        r.packet_len,
        if tlvs.is_empty() {
            "none".into()
        } else {
            tlvs.join(", ")
        }
    );
    if r.ssid_not_echoed > 0 {
        let _ = writeln!(
            s,
            "{} replies had SSID 0: the reflector does not implement RFC 8972's SSID",
            r.ssid_not_echoed
        );
    }
    let b = &r.bad;
    if r.bad_replies() > 0 {
        let _ = writeln!(
            s,
            "dropped replies: {} failed their HMAC check (wrong key or mode?), {} malformed, {} \
             of another session (SSID)",
            b.bad_hmac, b.malformed, b.other_ssid
        );
    }
    s += &out.body(r, r.direction_loss());
    s += &tlv_text(&r.tlvs);
    s
}

fn tlv_text(t: &TlvReport) -> String {
    let mut s = String::new();
    if t.flags.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "TLV answers ({} replies with TLVs):",
        t.replies_with_tlvs
    );
    let i = &t.integrity;
    if i.failed_at_reflector > 0 {
        let _ = writeln!(
            s,
            "  I flag in {} replies: the reflector could not verify our TLVs (its key differs, \
             or it has none); their answers are not used",
            i.failed_at_reflector
        );
    }
    if i.failed > 0 {
        let _ = writeln!(
            s,
            "  {} replies' HMAC TLV did not verify here: their TLVs are not used",
            i.failed
        );
    }
    if i.verified > 0 {
        let _ = writeln!(s, "  HMAC TLV verified in {} replies", i.verified);
    }
    for c in &t.flags {
        let mut bad = Vec::new();
        if c.unrecognized > 0 {
            bad.push(format!("U (not understood) in {}", c.unrecognized));
        }
        if c.malformed > 0 {
            bad.push(format!("M (malformed) in {}", c.malformed));
        }
        if c.integrity_failed > 0 {
            bad.push(format!("I (integrity) in {}", c.integrity_failed));
        }
        if c.absent > 0 {
            bad.push(format!("missing from {}", c.absent));
        }
        if !bad.is_empty() {
            let _ = writeln!(
                s,
                "  {}: answered in {}, {}",
                c.tlv,
                c.answered,
                bad.join(", ")
            );
        }
    }
    if let Some(l) = &t.location {
        let addr = |a: Option<std::net::IpAddr>| a.map_or_else(|| "-".into(), |a| a.to_string());
        let _ = writeln!(
            s,
            "  location: our packets reached {} port {} from {} port {}; source MAC {}{}",
            addr(l.dst_addr),
            l.dst_port,
            addr(l.src_addr),
            l.src_port,
            l.src_mac.as_deref().unwrap_or("-"),
            if t.location_changes > 0 {
                format!("; changed {} times", t.location_changes)
            } else {
                String::new()
            }
        );
    }
    if let Some(ti) = &t.timestamp_info {
        let _ = writeln!(
            s,
            "  timestamp info: T2 {} synchronized by {}, T3 {} synchronized by {}",
            ti.method_in, ti.sync_in, ti.method_out, ti.sync_out
        );
    }
    if let Some(c) = &t.class_of_service {
        let seen = |v: &[ippm_net::stamp_client::DscpEcnCount]| -> String {
            if v.is_empty() {
                return "- (not known)".into();
            }
            v.iter()
                .map(|d| format!("DSCP {} ECN {} ({} replies)", d.dscp, d.ecn, d.replies))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "  class of service: DSCP {} asked for the replies: used in {}, refused in {} (sent \
             with the DSCP our packet arrived with); our packets reached the reflector with {}; \
             the replies arrived with {}",
            c.requested_dscp,
            c.accepted,
            c.refused,
            seen(&c.received_at_reflector),
            seen(&c.replies_arrived_with)
        );
    }
    if let Some(d) = &t.direct_measurement {
        if let (Some(fwd), Some(back)) = (d.forward_lost, d.backward_lost) {
            let _ = writeln!(
                s,
                "  direct measurement: S_TxC {}, R_RxC {}, R_TxC {}, {} replies received: {fwd} \
                 lost on the way out, {back} on the way back (by the counters)",
                d.s_txc, d.r_rxc, d.r_txc, d.received
            );
        } else {
            let _ = writeln!(
                s,
                "  direct measurement: S_TxC {} echoed; the reflector does not fill its counters",
                d.s_txc
            );
        }
    }
    if let Some(a) = &t.access_report {
        let _ = writeln!(
            s,
            "  access report: {} return code {} acknowledged by {} replies",
            a.id, a.return_code, a.acknowledged
        );
    }
    if let Some(f) = &t.follow_up {
        if f.reported == 0 {
            let _ = writeln!(
                s,
                "  follow-up telemetry: no real send times (a stateless reflector, or one that \
                 does not know them)"
            );
        } else {
            let _ = writeln!(
                s,
                "  follow-up telemetry: real send times of {} replies ({}), {} matched; they \
                 left {} after their T3 (min/mean/max); corrected with them: reflector time \
                 {}, round trip {}",
                f.reported,
                f.method.as_deref().unwrap_or("-"),
                f.matched,
                spans(&f.send_delay_ns),
                spans(&f.corrected_reflector_ns),
                spans(&f.corrected_round_trip_ns)
            );
        }
    }
    s
}

/// The JSON document: twping's fields where they mean the same, STAMP's besides.
fn json(r: &StampResult, records: bool) -> anyhow::Result<serde_json::Value> {
    json_with(r, &r.report, r.reflector_stateful, records)
}

/// [`json`] with the statistics and the reflector's statefulness given: a running session's
/// summary in the archive (`measure`) is the same document, from the statistics so far.
pub(crate) fn json_with(
    r: &StampResult,
    report: &ippm_stats::TwoWayReport,
    stateful: Option<bool>,
    records: bool,
) -> anyhow::Result<serde_json::Value> {
    #[derive(Serialize)]
    struct Out<'a> {
        protocol: &'static str,
        mode: &'static str,
        ssid: u16,
        local: String,
        reflector: String,
        packet_len: usize,
        kernel_tx_stamps: u32,
        reflector_stateful: Option<bool>,
        loss_per_direction_known: bool,
        tlvs_sent: Vec<&'static str>,
        hmac_tlv: bool,
        bad_replies: &'a ippm_net::stamp_client::BadReplies,
        ssid_not_echoed: u64,
        tlvs: &'a TlvReport,
        #[serde(flatten)]
        report: &'a ippm_stats::TwoWayReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        records: Option<Vec<report::Record>>,
    }
    // The split by the reflector's numbers holds with no loss, or for a stateful reflector.
    let known = report.loss.lost == 0 || stateful == Some(true);
    let mut v = serde_json::to_value(Out {
        protocol: "stamp",
        mode: r.mode.name(),
        ssid: r.ssid,
        local: r.local.to_string(),
        reflector: r.reflector.to_string(),
        packet_len: r.packet_len,
        kernel_tx_stamps: r.kernel_tx_stamps,
        reflector_stateful: stateful,
        loss_per_direction_known: known,
        tlvs_sent: r.tlvs_sent.iter().map(|&t| tlv_name(t)).collect(),
        hmac_tlv: r.hmac_tlv,
        bad_replies: &r.bad,
        ssid_not_echoed: r.ssid_not_echoed,
        tlvs: &r.tlvs,
        report,
        records: records.then(|| report::json_records(r)),
    })?;
    if !known {
        // The reflector-sequence split assumes a stateful reflector: not given as a number.
        if let Some(l) = v.get_mut("loss") {
            l["forward_lost"] = serde_json::Value::Null;
            l["backward_lost"] = serde_json::Value::Null;
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        assert_eq!(mode_of("a").unwrap(), StampMode::Authenticated);
        assert!(mode_of("E").unwrap_err().to_string().contains("TWAMP"));
        assert_eq!(cos_of("46").unwrap(), CosRequest { dscp: 46, ecn: 0 });
        assert_eq!(cos_of("10:3").unwrap(), CosRequest { dscp: 10, ecn: 3 });
        assert!(cos_of("64").is_err() && cos_of("1:4").is_err());
        let a = access_report_of("non-3gpp:2").unwrap();
        assert_eq!((a.id, a.return_code.0), (AccessId::NonThreeGpp, 2));
        assert_eq!(access_report_of("1:1").unwrap().id, AccessId::ThreeGpp);
        assert!(access_report_of("3:1").is_err() && access_report_of("1").is_err());
    }
}

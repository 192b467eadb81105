//! `ippm twping`: a TWAMP test to one server, with perfSONAR twping's options.

use std::process::ExitCode;

use clap::Args;
use ippm_net::twamp_client::{TwpingOptions, twping};

use crate::test_args::TestArgs;
use crate::{plot, report};

/// Options of `ippm twping`.
#[derive(Debug, Args)]
pub(crate) struct TwpingArgs {
    /// The server: HOST or HOST:PORT (default port 862).
    host: String,
    #[command(flatten)]
    t: TestArgs,
    /// Padding octets per packet (default: enough for equal-size replies).
    #[arg(short = 's')]
    padding: Option<u32>,
    /// RFC 5938: start and stop the session with Start-N-Sessions / Stop-N-Sessions.
    #[arg(long)]
    session_control: bool,
    /// RFC 6038: have the reflector return this many octets of the padding unchanged.
    #[arg(long, value_name = "OCTETS")]
    reflect: Option<u16>,
    /// RFC 6038: use the symmetrical-size sender packet format.
    #[arg(long)]
    symmetrical: bool,
    /// Also draw the delays (over time, and their distribution) to FILE: .svg or .png.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
}

pub(crate) async fn run(a: TwpingArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.plot {
        plot::check_format(path)?;
    }
    let server = a.t.server(&a.host, 862)?;
    if let Some(p) = a.padding {
        let modes = a.t.modes(a.t.ike_required())?;
        let header = a.t.largest_header(&modes, a.symmetrical);
        crate::test_args::check_padding(p, header, server)?;
    }
    let (ike, keeper) = a.t.ike_credential(server.ip()).await?;
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
    let opts = TwpingOptions {
        server,
        modes: a.t.modes(ike.is_some())?,
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
        session_control: a.session_control,
        reflect: a.reflect,
        symmetrical: a.symmetrical,
        // Records only for what prints or draws them: otherwise memory does not grow with -c.
        keep_records: a.t.raw || a.plot.is_some(),
    };
    let result = twping(&opts).await;
    drop(opts);
    let result = a.t.finish(result, status, keeper, "twping", server).await?;
    let out = report::twoway(&result);
    if a.t.json {
        crate::out::outln!(
            "{}",
            serde_json::to_string_pretty(&out.json(&result, a.t.raw))?
        )?;
    } else {
        if a.t.raw {
            crate::out::out!("{}", report::raw(&result))?;
        }
        crate::out::out!("{}", out.text(&result))?;
    }
    if let Some(path) = &a.plot {
        plot::render(&plot::from_twping(&result), path)?;
    }
    Ok(ExitCode::SUCCESS)
}

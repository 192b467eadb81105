//! `ippm results` (list and export what the daemon archived) and `ippm report` (plots of an
//! archived session).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use ippm_archive::{Archive, Direction, Filter, Protocol, Record, Status};

/// Where `ippm serve` keeps its archive unless told otherwise.
pub(crate) const DEFAULT_ARCHIVE: &str = "/var/lib/ippm/archive.db";

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Options of `ippm results`.
#[derive(Debug, Args)]
pub(crate) struct ResultsArgs {
    /// The archive (`[archive] path` of the daemon).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_ARCHIVE, global = true)]
    archive: PathBuf,
    #[command(subcommand)]
    command: ResultsCommand,
}

#[derive(Debug, Args)]
struct Select {
    /// Only this peer (host:port, as the daemon's `[[measure]] peer` resolved).
    #[arg(long)]
    peer: Option<String>,
    /// Only this protocol.
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// Only sessions started within this long (e.g. 30m, 6h, 2d) ...
    #[arg(long, value_name = "AGE")]
    since: Option<String>,
    /// ... and at least this long ago.
    #[arg(long, value_name = "AGE")]
    until: Option<String>,
    /// Only sessions with this status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// At most this many sessions (newest first).
    #[arg(long, short = 'n')]
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Twamp,
    Owamp,
    Stamp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Running,
    Complete,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum ResultsCommand {
    /// List sessions: when, peer, protocol, mode, status, packets and loss.
    List {
        #[command(flatten)]
        select: Select,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export sessions (JSON or CSV) to stdout or a file.
    Export {
        #[command(flatten)]
        select: Select,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// With every packet (JSON; for CSV use --session).
        #[arg(long)]
        records: bool,
        /// One session's packets as CSV.
        #[arg(long, value_name = "ID")]
        session: Option<i64>,
        /// Write here instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `30m`, `6h`, `2d`, `90s` as nanoseconds.
fn age_ns(s: &str) -> anyhow::Result<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?}: a number and a unit (s, m, h, d)"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => bail!("{s:?}: the unit is s, m, h or d"),
    };
    if !(0.0..=3.2e9).contains(&secs) {
        bail!("{s:?}: out of range");
    }
    Ok((secs * 1e9) as i64)
}

impl Select {
    fn filter(&self) -> anyhow::Result<Filter> {
        let now = now_ns();
        Ok(Filter {
            peer: self.peer.clone(),
            protocol: self.protocol.map(|p| match p {
                ProtocolArg::Twamp => Protocol::Twamp,
                ProtocolArg::Owamp => Protocol::Owamp,
                ProtocolArg::Stamp => Protocol::Stamp,
            }),
            since_unix_ns: self
                .since
                .as_deref()
                .map(age_ns)
                .transpose()
                .context("--since")?
                .map(|a| now - a),
            until_unix_ns: self
                .until
                .as_deref()
                .map(age_ns)
                .transpose()
                .context("--until")?
                .map(|a| now - a),
            status: self.status.map(|s| match s {
                StatusArg::Running => Status::Running,
                StatusArg::Complete => Status::Complete,
                StatusArg::Failed => Status::Failed,
                StatusArg::Interrupted => Status::Interrupted,
            }),
            limit: self.limit,
        })
    }
}

fn open(path: &Path) -> anyhow::Result<Archive> {
    if !path.exists() {
        bail!(
            "no archive at {} (set [archive] path for `ippm serve`, or --archive FILE)",
            path.display()
        );
    }
    Archive::open(path).with_context(|| format!("cannot open the archive {}", path.display()))
}

fn time(ns: i64) -> String {
    let t = ippm_proto::Timestamp::from_unix(std::time::Duration::from_nanos(ns.max(0) as u64));
    crate::report::utc(t)
}

/// The packets and loss of a session's summary, for the list.
fn packets(summary: Option<&serde_json::Value>) -> String {
    let Some(s) = summary else {
        return "-".into();
    };
    let one = |l: &serde_json::Value| {
        let (sent, lost) = (l["sent"].as_u64(), l["lost"].as_u64());
        match (sent, lost) {
            (Some(s), Some(l)) if s > 0 => {
                format!("{s} sent {l} lost ({:.2}%)", 100.0 * l as f64 / s as f64)
            }
            (Some(s), Some(l)) => format!("{s} sent {l} lost"),
            _ => "-".into(),
        }
    };
    if s.get("loss").is_some() {
        one(&s["loss"])
    } else {
        ["to_server", "from_server"]
            .iter()
            .filter(|d| s.get(**d).is_some())
            .map(|d| format!("{}: {}", d.replace('_', " "), one(&s[*d]["loss"])))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(crate) fn run(a: ResultsArgs) -> anyhow::Result<ExitCode> {
    let archive = open(&a.archive)?;
    match a.command {
        ResultsCommand::List { select, json } => {
            let rows = archive.sessions(&select.filter()?)?;
            if json {
                crate::out::outln!("{}", serde_json::to_string_pretty(&rows)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            if rows.is_empty() {
                crate::out::outln!("no sessions")?;
            }
            for r in &rows {
                let status = match (&r.status, &r.reason) {
                    (s, Some(why)) => format!("{} ({why})", status_name(s)),
                    (s, None) => status_name(s).to_owned(),
                };
                crate::out::outln!(
                    "{:>6}  {}  {} {:<5} {:<13} {:<11} {}",
                    r.id,
                    time(r.started_unix_ns),
                    r.peer,
                    protocol_name(r.protocol),
                    r.mode,
                    status,
                    packets(r.summary.as_ref()),
                )?;
            }
        }
        ResultsCommand::Export {
            select,
            format,
            records,
            session,
            output,
        } => {
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot write {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(crate::out::Stdout)),
            };
            match (format, session) {
                (Format::Csv, Some(id)) => archive.export_records_csv(id, &mut out)?,
                (Format::Csv, None) => archive.export_csv(&select.filter()?, &mut out)?,
                (Format::Json, Some(id)) => {
                    let session = archive
                        .session(id)?
                        .with_context(|| format!("no session {id}"))?;
                    let records = Some(archive.records(id)?);
                    serde_json::to_writer_pretty(
                        &mut out,
                        &ippm_archive::Export {
                            sessions: vec![ippm_archive::ExportedSession { session, records }],
                        },
                    )?;
                }
                (Format::Json, None) => {
                    archive.export_json(&select.filter()?, records, &mut out)?
                }
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Running => "running",
        Status::Complete => "complete",
        Status::Failed => "failed",
        Status::Interrupted => "interrupted",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Twamp => "twamp",
        Protocol::Owamp => "owamp",
        Protocol::Stamp => "stamp",
    }
}

/// Options of `ippm report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The archive.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_ARCHIVE)]
    archive: PathBuf,
    /// The session (an id from `ippm results list`; default: the newest).
    #[arg(long, value_name = "ID")]
    session: Option<i64>,
    /// Render delay over time and its distribution here (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: PathBuf,
}

/// A session's records as plot series, per direction.
pub(crate) fn plot_data(title: String, peer: &str, records: &[Record]) -> crate::plot::PlotData {
    let t0 = records
        .iter()
        .map(|r| r.t1_unix_ns)
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(0);
    let mut series = Vec::new();
    for (dir, label) in [
        (Direction::RoundTrip, "round trip".to_owned()),
        (Direction::ToServer, format!("to {peer}")),
        (Direction::FromServer, format!("from {peer}")),
    ] {
        let mut points: Vec<(f64, Option<f64>)> = records
            .iter()
            .filter(|r| r.direction == dir)
            .map(|r| {
                let x = if r.t1_unix_ns > 0 {
                    (r.t1_unix_ns - t0) as f64 / 1e9
                } else {
                    f64::NAN
                };
                let delay = r.t4_unix_ns.map(|t4| {
                    let inner = match (r.t2_unix_ns, r.t3_unix_ns) {
                        (Some(t2), Some(t3)) => t3 - t2,
                        _ => 0,
                    };
                    (t4 - r.t1_unix_ns - inner) as f64 / 1e6
                });
                (x, delay)
            })
            .collect();
        // Lost OWAMP packets carry no send time: place them by sequence order.
        let known: Vec<f64> = points
            .iter()
            .map(|p| p.0)
            .filter(|x| x.is_finite())
            .collect();
        let last = known.iter().copied().fold(0.0f64, f64::max);
        for p in &mut points {
            if !p.0.is_finite() {
                p.0 = last;
            }
        }
        if !points.is_empty() {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(crate::plot::Series { label, points });
        }
    }
    crate::plot::PlotData { title, series }
}

pub(crate) fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let archive = open(&a.archive)?;
    let row = match a.session {
        Some(id) => archive
            .session(id)?
            .with_context(|| format!("no session {id} in {}", a.archive.display()))?,
        None => archive
            .sessions(&Filter {
                limit: Some(1),
                ..Filter::default()
            })?
            .into_iter()
            .next()
            .context("the archive holds no sessions")?,
    };
    let records = archive.records(row.id)?;
    if records.is_empty() {
        bail!(
            "session {} has no per-packet records (pruned, or it never started)",
            row.id
        );
    }
    let title = format!(
        "{} {} {} {}",
        protocol_name(row.protocol),
        row.peer,
        row.mode,
        time(row.started_unix_ns)
    );
    crate::plot::render(&plot_data(title, &row.peer, &records), &a.plot)
        .with_context(|| format!("cannot render {}", a.plot.display()))?;
    crate::out::error(format_args!(
        "session {}: {} packets plotted to {}",
        row.id,
        records.len(),
        a.plot.display()
    ));
    Ok(ExitCode::SUCCESS)
}

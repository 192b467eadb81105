//! `ippm`: OWAMP, TWAMP and STAMP measurement, OWAMP and TWAMP with keys from IKEv2.

mod archiving;
mod errors;
mod figures;
mod ike;
mod ike_args;
mod measure;
mod out;
mod owping;
mod plot;
mod progress;
mod report;
mod results;
mod serve;
mod stamp;
mod test_args;
mod twping;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// IETF active measurement (OWAMP, TWAMP) with keys derived from IKEv2 SAs (RFC 7717).
#[derive(Debug, Parser)]
#[command(name = "ippm", version, about, propagate_version = true)]
struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: OWAMP and TWAMP servers, reflector, sender and receiver.
    Serve(serve::ServeArgs),
    /// Measure round-trip delay and loss to a TWAMP server (like perfSONAR's twping).
    Twping(twping::TwpingArgs),
    /// Measure one-way delay and loss to and from an OWAMP server (like perfSONAR's owping).
    Owping(owping::OwpingArgs),
    /// Measure round-trip delay and loss to a STAMP Session-Reflector (RFC 8762, RFC 8972).
    Stamp(stamp::StampArgs),
    /// Inspect and steer the daemon's IKE SAs (list, up, down, rekey).
    Ike(ike::IkeArgs),
    /// List and export what the daemon's continuous measurements archived.
    Results(results::ResultsArgs),
    /// Plot an archived session: delay over time and its distribution (SVG or PNG).
    Report(results::ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ippm.1, ippm-serve.1, ...) into a directory.
    Man {
        /// The directory.
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): what it wanted it has; end as a Unix
        // tool does, quietly and successfully.
        Err(_) if out::closed() => ExitCode::SUCCESS,
        Err(e) => {
            out::error(format_args!("ippm: {}", errors::explain(&e)));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Results(a) => return results::run(a),
        Command::Report(a) => return results::report(a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "ippm", &mut script);
            std::io::Write::write_all(&mut out::Stdout, &script)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Twping(a) => twping::run(a).await,
            Command::Owping(a) => owping::run(a).await,
            Command::Stamp(a) => stamp::run(a).await,
            Command::Ike(a) => ike::run(a).await,
            Command::Results(_)
            | Command::Report(_)
            | Command::Completions { .. }
            | Command::Man { .. } => Ok(ExitCode::SUCCESS),
        }
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

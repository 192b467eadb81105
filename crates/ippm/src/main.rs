//! `ippm`: OWAMP and TWAMP measurement with keys from IKEv2.

use std::process::ExitCode;

use clap::Parser;

/// IETF active measurement (OWAMP, TWAMP) with keys derived from IKEv2 SAs (RFC 7717).
#[derive(Debug, Parser)]
#[command(name = "ippm", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}

//! The `dmaspace` command.
//!
//! `dmaspace topology [--sysfs ROOT] [--allowlist linux-6.12|current] [--format table|json|dot]`
//! prints the P2PDMA verdict of every ordered pair of PCI functions found under ROOT.
//! `dmaspace demo [--sysfs ROOT] [--provider BDF] [--client BDF]` shows the matrix, then maps
//! one mixed I/O (host pages + P2P memory) for one client, segment by segment.
//! Exit status: 0 on success, 2 on bad input, 1 when the output cannot be written,
//! 70 on an internal error; every error is one line on stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo_cmd;
mod error;
mod reference;
mod topology_cmd;

/// DMA address spaces and the Linux P2PDMA rules.
#[derive(Debug, Parser)]
#[command(name = "dmaspace", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. Add a variant and a module to add one.
#[derive(Debug, Subcommand)]
enum Command {
    /// Show the P2PDMA verdict (map type, distance) of every pair of PCI functions.
    Topology(topology_cmd::Args),
    /// Show the P2P matrix of a machine, then map one mixed I/O for one client.
    Demo(demo_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Topology(args) => topology_cmd::run(&args),
        Command::Demo(args) => demo_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmaspace: error: {e}");
            ExitCode::from(e.kind().exit_code())
        }
    }
}

//! The `dmaspace` command.
//!
//! `dmaspace topology [--sysfs ROOT | --reference] [--kernel auto|6.12|7.3]
//! [--cpu as-read|amd-zen|intel|non-x86] [--format table|json|dot|svg|png] [--only LIST]
//! [-o FILE]` shows the P2PDMA verdicts of a PCI tree: a matrix, JSON, Graphviz, or a
//! picture of the tree with its P2P islands.
//! `dmaspace explain PROVIDER CLIENT [same options] [--format text|json]` tells the
//! kernel's reasoning for one pair, step by step, and the nearest fix.
//! `dmaspace demo [--sysfs ROOT] [--provider BDF] [--client BDF]` shows the matrix, then maps
//! one mixed I/O (host pages + P2P memory) for one client, segment by segment.
//! Exit status: 0 on success, 2 on bad input, 1 when the output cannot be written,
//! 70 on an internal error; every error is one line on stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
mod demo_cmd;
mod describe;
mod dot;
mod error;
mod explain_cmd;
mod json;
mod names;
mod picture;
mod reference;
mod source;
mod table;
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
    /// Show the P2PDMA verdicts of a PCI tree: matrix, JSON, DOT, or a picture (SVG/PNG).
    Topology(topology_cmd::Args),
    /// Explain the kernel's verdict for one pair, step by step, with the nearest fix.
    Explain(explain_cmd::Args),
    /// Show the P2P matrix of a machine, then map one mixed I/O for one client.
    #[cfg(feature = "demo")]
    Demo(demo_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Topology(args) => topology_cmd::run(&args),
        Command::Explain(args) => explain_cmd::run(&args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A reader that went away (`| head`) is not worth a message.
            if !e.is_broken_pipe() {
                eprintln!("dmaspace: error: {e}");
            }
            ExitCode::from(e.kind().exit_code())
        }
    }
}

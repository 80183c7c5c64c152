//! `dmaspace topology`: the verdict of every pair, as a table, JSON, DOT, SVG or PNG.
//!
//! The table, the JSON and the DOT are streamed through a `BufWriter` as they are
//! computed: memory does not grow with the number of pairs (2,000 functions are 4
//! million). The SVG is built whole (it grows with the functions, not the pairs), and
//! the PNG is refused above 100 megapixels.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::error::CliError;
use crate::source::Source;
use crate::{dot, json, picture, table};

/// Arguments of `dmaspace topology`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Source,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Functions of the matrix (table) or of the pairs (json): classes (gpu, nic, nvme,
    /// disk, accel, vga, bridge, vf, dev, all), short names (gpu0) or BDFs,
    /// comma-separated. Default: `dev` for the table (devices, no bridges or VFs), `all`
    /// for JSON.
    #[arg(long, value_name = "LIST")]
    only: Option<String>,
    /// Write to this file instead of stdout (for svg and png).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// PNG scale (1 = one pixel per SVG unit).
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The functions, the P2P islands and a matrix like `nvidia-smi topo -m`.
    Table,
    /// One JSON object: `{"devices": [...], "pairs": [...], "islands": [...]}`.
    Json,
    /// Graphviz: a cluster per host bridge and per P2P island.
    Dot,
    /// A picture of the tree with its P2P islands.
    Svg,
    /// The picture as PNG (rendered in-process).
    Png,
}

/// Runs the command.
pub fn run(args: &Args) -> Result<(), CliError> {
    if !(args.scale > 0.0 && args.scale <= 8.0) {
        return Err(CliError::Argument(format!(
            "--scale {} is out of range (0, 8]",
            args.scale
        )));
    }
    let loaded = args.source.load()?;
    let (topo, names, policy) = (&loaded.topo, &loaded.names, &loaded.policy);
    let unknown = topo
        .functions()
        .filter(|f| f.acs == dmaspace_pci::AcsState::Unknown)
        .count();
    if unknown > 0 {
        eprintln!(
            "dmaspace: warning: ACS of {unknown} function(s) could not be read (config space truncated; \
             run as root for the full picture); pairs depending on them are reported \
             not_supported with acs \"unknown\""
        );
    }
    // Every check that can refuse the arguments comes before the output is opened.
    let selected = match args.format {
        Format::Table => names.select(topo, args.only.as_deref().unwrap_or("dev"))?,
        Format::Json => names.select(topo, args.only.as_deref().unwrap_or("all"))?,
        Format::Dot | Format::Svg | Format::Png => Vec::new(),
    };
    let png = match args.format {
        Format::Png => Some(picture::png(
            &picture::svg(topo, names, policy, loaded.list_name, &loaded.origin)?,
            args.scale,
        )?),
        _ => None,
    };
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(fs::File::create(path).map_err(|e| write_error(path, e))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, sink);
    let written = match args.format {
        Format::Table => stream_fmt(&mut out, |w| {
            table::write_table(
                w,
                &table::TableView {
                    topo,
                    names,
                    policy,
                    list_name: loaded.list_name,
                    selected: &selected,
                    only: args.only.as_deref().unwrap_or("dev"),
                },
            )
        }),
        Format::Json => json::write_json(
            &mut out,
            &json::JsonView {
                topo,
                names,
                policy,
                selected: &selected,
                list_name: loaded.list_name,
            },
        ),
        Format::Dot => stream_fmt(&mut out, |w| {
            dot::write_dot(w, topo, names, policy, loaded.list_name)
        }),
        Format::Svg => picture::svg(topo, names, policy, loaded.list_name, &loaded.origin)
            .and_then(|svg| Ok(out.write_all(svg.as_bytes())?)),
        Format::Png => Ok(out.write_all(png.as_deref().unwrap_or_default())?),
    };
    let done = written.and_then(|()| Ok(out.flush()?));
    match (done, &args.output) {
        (Err(CliError::Write(e)), Some(path)) => Err(write_error(path, e)),
        (done, _) => done,
    }
}

/// A write error that names the `--output` file.
fn write_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Write(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Runs a writer of `fmt::Write` text straight into `out`: the text is never held
/// whole. An I/O error of `out` comes back as itself, not as a formatting error.
fn stream_fmt<W: Write>(
    out: &mut W,
    write: impl FnOnce(&mut IoText<'_, W>) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut text = IoText { out, error: None };
    let result = write(&mut text);
    match (result, text.error) {
        (Err(CliError::Format(_)), Some(e)) => Err(CliError::Write(e)),
        (result, _) => result,
    }
}

/// `fmt::Write` over an `io::Write`, keeping the I/O error `fmt::Error` cannot carry.
struct IoText<'a, W: Write> {
    out: &'a mut W,
    error: Option<std::io::Error>,
}

impl<W: Write> std::fmt::Write for IoText<'_, W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.out.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
    }
}

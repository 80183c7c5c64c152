//! `dmaspace explain PROVIDER CLIENT`: the kernel's reasoning for one pair, step by step,
//! and the nearest fix. The steps come from `Topology::explain`, the same walk as the
//! verdicts of `dmaspace topology`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;

use clap::ValueEnum;
use dmaspace_pci::{AcsState, Bdf, Explanation, Fix, FixAction, HostBridgeCheck, Step, Topology};
use serde_json::{Value, json};

use crate::describe::{acs_str, cpu_str};
use crate::error::CliError;
use crate::names::Names;
use crate::source::Source;

/// Arguments of `dmaspace explain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function whose memory is used: a BDF (0000:03:00.0) or a short name (gpu0).
    provider: String,
    /// The function that does the DMA: a BDF or a short name.
    client: String,
    #[command(flatten)]
    source: Source,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Numbered steps and the fixes, in words.
    Text,
    /// One JSON object: the verdict as `topology --format json` spells its pairs, the
    /// steps and the fixes.
    Json,
}

fn resolve(names: &Names, word: &str, what: &str) -> Result<Bdf, CliError> {
    names.resolve(word).ok_or_else(|| {
        CliError::Argument(format!(
            "{what} {word:?} is not a function of this topology (give a BDF or a short name \
             as `dmaspace topology` lists them)"
        ))
    })
}

/// Runs the command.
pub fn run(args: &Args) -> Result<(), CliError> {
    let loaded = args.source.load()?;
    let (topo, names) = (&loaded.topo, &loaded.names);
    let provider = resolve(names, &args.provider, "provider")?;
    let client = resolve(names, &args.client, "client")?;
    let why = topo.explain(provider, client, &loaded.policy)?;
    let mut s = String::new();
    match args.format {
        Format::Text => text(&mut s, topo, names, &why, loaded.list_name)?,
        Format::Json => {
            let doc = json_doc(topo, names, &why, loaded.list_name);
            writeln!(
                s,
                "{}",
                serde_json::to_string_pretty(&doc)
                    .map_err(|_| CliError::Format(std::fmt::Error))?
            )?;
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(s.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Every function the steps mention, in the order they first appear.
fn mentioned(why: &Explanation) -> Vec<Bdf> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut add = |b: Bdf| {
        if seen.insert(b) {
            out.push(b);
        }
    };
    add(why.verdict.provider);
    add(why.verdict.client);
    for s in &why.steps {
        match s {
            Step::Chain { nodes, physfn, .. } => {
                nodes.iter().copied().for_each(&mut add);
                physfn.iter().copied().for_each(&mut add);
            }
            Step::HostBridge(HostBridgeCheck {
                device,
                first_function,
                ..
            }) => {
                if let Some(d) = device.or(*first_function) {
                    add(d.bdf);
                }
            }
            _ => {}
        }
    }
    out
}

fn text(
    s: &mut String,
    topo: &Topology,
    names: &Names,
    why: &Explanation,
    list: &str,
) -> Result<(), CliError> {
    writeln!(s, "CPU: {}; allowlist: {list}", cpu_str(topo))?;
    writeln!(s, "functions involved:")?;
    for b in mentioned(why) {
        let role = if b == why.verdict.provider && b == why.verdict.client {
            "provider+client"
        } else if b == why.verdict.provider {
            "provider"
        } else if b == why.verdict.client {
            "client"
        } else {
            ""
        };
        let acs = topo.function(b).map_or(AcsState::Absent, |f| f.acs);
        writeln!(
            s,
            "  {:<15} {b}  {:<8} {}  (ACS {})",
            role,
            names.short(b),
            names.long(b),
            acs_str(acs)
        )?;
    }
    writeln!(s)?;
    write!(s, "{why}")?;
    Ok(())
}

fn step_json(step: &Step) -> Value {
    let text = step.to_string();
    match step {
        Step::Chain {
            side,
            nodes,
            physfn,
            host_bridge,
        } => json!({
            "step": "chain", "side": side.as_str(),
            "nodes": nodes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "physfn": physfn.map(|b| b.to_string()),
            "host_bridge": host_bridge.map(|h| h.to_string()),
            "text": text,
        }),
        Step::ProviderHop {
            hop,
            node,
            acs,
            in_client_chain,
        } => json!({
            "step": "provider_hop", "hop": hop, "node": node.to_string(), "acs": acs_str(*acs),
            "acs_redirect": acs.redirects(), "in_client_chain": in_client_chain, "text": text,
        }),
        Step::CommonUpstream {
            node,
            provider_hops,
            client_hops,
        } => json!({
            "step": "common_upstream", "node": node.to_string(),
            "provider_hops": provider_hops, "client_hops": client_hops, "text": text,
        }),
        Step::NoCommonUpstream {
            provider_hops,
            client_hops,
        } => json!({
            "step": "no_common_upstream", "provider_hops": provider_hops,
            "client_hops": client_hops, "text": text,
        }),
        Step::ClientHop { hop, node, acs } => json!({
            "step": "client_hop", "hop": hop, "node": node.to_string(), "acs": acs_str(*acs),
            "acs_redirect": acs.redirects(), "text": text,
        }),
        Step::NoAcsRedirect => json!({"step": "no_acs_redirect", "text": text}),
        Step::AcsRedirect { nodes } => json!({
            "step": "acs_redirect",
            "nodes": nodes.iter().map(|(b, c)| json!({"node": b.to_string(), "acs": format!("0x{:04x}", c.bits())})).collect::<Vec<_>>(),
            "text": text,
        }),
        Step::AcsUnreadable { node } => {
            json!({"step": "acs_unreadable", "node": node.to_string(), "text": text})
        }
        Step::CpuRule { cpu, allows } => json!({
            "step": "cpu_rule", "x86": cpu.x86, "vendor": format!("{:?}", cpu.vendor),
            "family": cpu.family, "allows": allows, "text": text,
        }),
        Step::HostBridge(c) => json!({
            "step": "host_bridge", "host_bridge": c.host_bridge.to_string(),
            "same_host_bridge": c.same_host_bridge,
            "device": c.device.map(|d| d.bdf.to_string()),
            "allowlist_entry": c.entry.map(|e| json!({
                "vendor": format!("0x{:04x}", e.vendor),
                "device": match e.device {
                    dmaspace_pci::DeviceMatch::Id(d) => format!("0x{d:04x}"),
                    dmaspace_pci::DeviceMatch::Any => "any".to_string(),
                },
                "req_same_host_bridge": e.flags.contains(dmaspace_pci::AllowFlags::REQ_SAME_HOST_BRIDGE),
            })),
            "allowed": c.allowed, "text": text,
        }),
        Step::Outcome { map_type, distance } => json!({
            "step": "outcome", "map_type": map_type.as_str(), "hops": distance, "text": text,
        }),
    }
}

fn fix_json(fix: &Fix) -> Value {
    let nodes: Vec<String> = match &fix.action {
        FixAction::ReadConfigSpace { nodes } | FixAction::DisableAcsRedirect { nodes } => {
            nodes.iter().map(ToString::to_string).collect()
        }
        FixAction::AllowHostBridge { devices } => {
            devices.iter().map(|(b, _, _)| b.to_string()).collect()
        }
        FixAction::CpuWithP2pdma => Vec::new(),
    };
    json!({
        "action": fix.action.as_str(),
        "nodes": nodes,
        "map_type": fix.would_be.map(|v| v.map_type.as_str()),
        "distance": fix.would_be.map(|v| v.kernel_distance()),
        "text": fix.to_string(),
    })
}

fn json_doc(topo: &Topology, names: &Names, why: &Explanation, list: &str) -> Value {
    let v = &why.verdict;
    let cpu = topo.cpu();
    json!({
        "provider": v.provider.to_string(),
        "client": v.client.to_string(),
        "provider_name": names.short(v.provider),
        "client_name": names.short(v.client),
        "map_type": v.map_type.as_str(),
        "distance": v.kernel_distance(),
        "hops": v.distance,
        "acs": v.acs.as_str(),
        "common_upstream": v.common_upstream.map(|b| b.to_string()),
        "acs_redirect_at": v.acs_redirect.map(|b| b.to_string()),
        "unknown_at": v.unknown_at.map(|b| b.to_string()),
        "steps": why.steps.iter().map(step_json).collect::<Vec<_>>(),
        "fixes": why.fixes.iter().map(fix_json).collect::<Vec<_>>(),
        "cpu": {
            "x86": cpu.x86,
            "vendor": format!("{:?}", cpu.vendor),
            "family": cpu.family,
            "supports_p2pdma": cpu.supports_p2pdma(),
        },
        "allowlist": list,
    })
}

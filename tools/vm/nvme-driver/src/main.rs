//! `nvme-e2e`: a small userspace NVMe driver over VFIO / iommufd (dmaspace's
//! `src/linux` layer), and the end-to-end scenarios of issue 10 that run it
//! inside the test VM (`tools/vm/e2e.sh`).
//!
//! ```text
//! nvme-e2e run SCENARIO BDF...   one line: `SCENARIO: ok` or `SCENARIO: FAILED why`
//!                                 (details on a `# SCENARIO: ...` line); exit 0 / 1
//! nvme-e2e open BDF               open the function through its VFIO group (a probe
//!                                 for bad-input): `ok ...` or one `error: ...` line, exit 2
//! nvme-e2e identify BDF           bring the controller up and print what it says
//! ```
//!
//! Every address the driver gives a controller is a [`seam::DevAddr`], made
//! from dmaspace's typed mappings (VFIO type1 / iommufd backends, or no-IOMMU
//! mode) and routes classified from the guest's sysfs; see that module.

mod classify;
mod dma;
mod dmabuf;
#[path = "../../guest/kmsg.rs"]
mod kmsg;
mod nvme;
mod prp;
mod scenarios;
mod seam;
mod sgl;
#[path = "../../guest/verdict.rs"]
mod verdict;

use std::process::ExitCode;

use dmaspace::pci::Bdf;

const SCENARIOS: &[(&str, usize)] = &[
    ("host-iova-type1", 1),
    ("host-iova-iommufd", 1),
    ("own-cmb", 1),
    ("iommu-contains", 1),
    ("bad-input", 3),
    ("p2p-refused", 2),
    ("p2p-iommufd-refused", 2),
    ("p2p-host-bridge", 2),
    ("p2p-bus-addr", 2),
    ("p2p-iommufd-dmabuf", 2),
    ("p2p-dmabuf-refused", 2),
    ("p2p-dmabuf-revoked", 2),
];

fn usage() -> ExitCode {
    eprintln!("usage: nvme-e2e run SCENARIO BDF... | open BDF | identify BDF");
    eprintln!("scenarios:");
    for (n, k) in SCENARIOS {
        eprintln!("  {n} ({k} BDF)");
    }
    ExitCode::from(2)
}

fn run(name: &str, args: &[String]) -> scenarios::Outcome {
    let want = SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .ok_or_else(|| format!("unknown scenario {name}"))?;
    if args.len() != want {
        return Err(format!("needs {want} BDF, got {}", args.len()));
    }
    let a: Vec<Bdf> = args
        .iter()
        .map(|s| s.parse().map_err(|e| format!("{s}: {e}")))
        .collect::<Result<_, _>>()?;
    match name {
        "host-iova-type1" => scenarios::host_iova_type1(a[0]),
        "host-iova-iommufd" => scenarios::host_iova_iommufd(a[0]),
        "own-cmb" => scenarios::own_cmb(a[0]),
        "iommu-contains" => scenarios::iommu_contains(a[0]),
        "bad-input" => scenarios::bad_input(a[0], a[1], a[2]),
        "p2p-refused" => scenarios::p2p_refused(a[0], a[1]),
        "p2p-iommufd-refused" => scenarios::p2p_iommufd_refused(a[0], a[1]),
        "p2p-host-bridge" => scenarios::p2p_host_bridge(a[0], a[1]),
        "p2p-bus-addr" => scenarios::p2p_bus_addr(a[0], a[1]),
        "p2p-iommufd-dmabuf" => dmabuf::p2p_iommufd_dmabuf(a[0], a[1]),
        "p2p-dmabuf-refused" => dmabuf::p2p_dmabuf_refused(a[0], a[1]),
        "p2p-dmabuf-revoked" => dmabuf::p2p_dmabuf_revoked(a[0], a[1]),
        _ => Err(format!("unknown scenario {name}")),
    }
}

fn open(arg: &str) -> Result<String, String> {
    let a: Bdf = arg
        .parse()
        .map_err(|e: dmaspace::pci::ParseBdfError| format!("{arg}: {e}"))?;
    let o = dma::open_vfio(&[a])?;
    let info = o.devices[0].info().map_err(|e| e.to_string())?;
    Ok(format!(
        "ok {a}: {} regions, reset {}, backend {}",
        info.num_regions,
        info.can_reset(),
        o.backend.name()
    ))
}

fn identify(arg: &str) -> Result<String, String> {
    let a: Bdf = arg
        .parse()
        .map_err(|e: dmaspace::pci::ParseBdfError| format!("{arg}: {e}"))?;
    let o = dma::open_vfio(&[a])?;
    let machine = classify::machine()?;
    let dev = machine
        .device::<dma::Nvme>(a, nvme::base_limits())
        .map_err(|e| e.to_string())?;
    with_mapper!(&o, &dev, |m| {
        let c = nvme::Controller::init(&o.devices[0], &m, o.backend.mode(), false)
            .map_err(|e| e.to_string())?;
        let ns = c.namespace().map_err(|e| e.to_string())?;
        Ok(format!(
            "{a}: {} / {}: namespace 1 {} blocks of {} bytes, MDTS {:?}",
            c.model,
            c.serial,
            ns.blocks,
            ns.lba_size,
            c.mdts_bytes()
        ))
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") if args.len() >= 2 => {
            let name = args[1].clone();
            let rest = args[2..].to_vec();
            verdict::report(&name, || run(&name, &rest))
        }
        Some("open") if args.len() == 2 => match open(&args[1]) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", e.replace('\n', " "));
                ExitCode::from(2)
            }
        },
        Some("identify") if args.len() == 2 => match identify(&args[1]) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", e.replace('\n', " "));
                ExitCode::from(2)
            }
        },
        _ => usage(),
    }
}

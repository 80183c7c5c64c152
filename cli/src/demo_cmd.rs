//! `dmaspace demo`: the P2P matrix of a machine, then one mixed I/O (host
//! pages + P2P memory of one provider) mapped for one client, segment by
//! segment.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use dmaspace::host::SimulatedRam;
use dmaspace::pci::{
    MapType, PciFunction, PcieKind, PciePortType, Policy, Topology, TopologyError, sysfs,
};
use dmaspace::prelude::*;
use dmaspace::route::RouteError;
use dmaspace::vec::{HostSeg, Unsynced};

use crate::error::CliError;
use crate::names::Names;
use crate::reference;
use crate::table::{TableView, write_table};

brand!(P2pMemory);
brand!(Client);
brand!(ClientDomain);

/// Arguments of `dmaspace demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read the machine from this sysfs root (`/` for this machine) instead
    /// of the embedded two-socket reference server.
    #[arg(long)]
    sysfs: Option<PathBuf>,
    /// The device whose BAR provides P2P memory (default: a GPU, or the
    /// first endpoint with a bus-address route).
    #[arg(long)]
    provider: Option<Bdf>,
    /// The device that issues the DMA (default: an NVMe drive, or the
    /// provider's nearest peer).
    #[arg(long)]
    client: Option<Bdf>,
}

/// Runs the demo; the error is one line for stderr.
pub fn run(args: &Args) -> Result<(), CliError> {
    let (topo, name) = match &args.sysfs {
        Some(root) => (sysfs::load(root)?, format!("sysfs at {}", root.display())),
        None => (
            reference::two_socket_server()?,
            "embedded reference: 2-socket Ice Lake-SP server, GPU + NIC + NVMe behind a PCIe switch per socket".to_string(),
        ),
    };
    let policy = Policy::default();
    let names = Names::new(
        &topo,
        crate::names::pci_ids_source("auto").as_deref(),
        false,
    )?;
    let selected = names.select(&topo, "dev")?;
    let mut out = String::new();
    writeln!(out, "Machine: {name}\n")?;
    write_table(
        &mut out,
        &TableView {
            topo: &topo,
            names: &names,
            policy: &policy,
            list_name: dmaspace_pci::KernelPolicy::current().name(),
            selected: &selected,
            only: "dev",
        },
    )?;

    let (provider, client) = pick_pair(&topo, &policy, args)?;
    writeln!(out)?;
    map_one_io(&topo, &policy, provider, client, &mut out)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn is_endpoint(f: &PciFunction) -> bool {
    matches!(
        f.pcie,
        PcieKind::Pcie(
            PciePortType::Endpoint | PciePortType::LegacyEndpoint | PciePortType::RcEndpoint
        ) | PcieKind::NotPcie
    ) && f.class >> 16 != 0x06
}

/// The provider and client the user named, else sensible defaults.
fn pick_pair(topo: &Topology, policy: &Policy, args: &Args) -> Result<(Bdf, Bdf), CliError> {
    let exists = |b: Bdf| {
        topo.function(b)
            .map(|_| b)
            .ok_or(CliError::Topology(TopologyError::UnknownFunction(b)))
    };
    if args.sysfs.is_none() {
        let p = args.provider.map_or(Ok(reference::GPU0), exists)?;
        let c = args.client.map_or(Ok(reference::NVME0), exists)?;
        return Ok((p, c));
    }
    let eps: Vec<Bdf> = topo
        .functions()
        .filter(|f| is_endpoint(f))
        .map(|f| f.bdf)
        .collect();
    if let (Some(p), Some(c)) = (args.provider, args.client) {
        return Ok((exists(p)?, exists(c)?));
    }
    // Best pair: shortest supported route between two distinct endpoints.
    let mut best: Option<(u32, Bdf, Bdf)> = None;
    for &p in eps
        .iter()
        .filter(|&&p| args.provider.is_none_or(|w| w == p))
    {
        for &c in eps
            .iter()
            .filter(|&&c| c != p && args.client.is_none_or(|w| w == c))
        {
            let v = topo.verdict(p, c, policy)?;
            let rank = match v.map_type {
                MapType::BusAddr => v.distance,
                MapType::ThruHostBridge => 1000 + v.distance,
                MapType::NotSupported => 1_000_000,
            };
            if best.is_none_or(|(r, _, _)| rank < r) {
                best = Some((rank, p, c));
            }
        }
    }
    best.map(|(_, p, c)| (p, c)).ok_or_else(|| {
        CliError::Argument("the topology has fewer than two endpoints to pair".into())
    })
}

/// Maps host page, host page, P2P page, host page, P2P page for `client`
/// through its own (software) IOMMU domain, and describes every step.
fn map_one_io(
    topo: &Topology,
    policy: &Policy,
    provider_bdf: Bdf,
    client_bdf: Bdf,
    out: &mut String,
) -> Result<(), CliError> {
    // SAFETY: the demo's machine is a simulation: its devices, memory and
    // IOMMU are software, and no address reaches hardware, so any topology
    // and any allowlist describe it.
    let machine = unsafe { Machine::assume(topo.clone()).with_custom_policy(policy.clone()) };
    // Simulated memory: 3 host pages and a 1 MiB BAR; x86, so bus = CPU address.
    // SAFETY: the addresses are simulated and reach only the software IOMMU.
    let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x1_2340_0000), 3) };
    // SAFETY: a simulated BAR of the simulated provider; nothing reaches hardware.
    let bar = unsafe {
        machine.provider::<P2pMemory>(
            provider_bdf,
            1,
            PhysAddr::new(0x38_0000_0000),
            BusAddr::new_unchecked(0x38_0000_0000),
            1 << 20,
        )
    }
    .map_err(CliError::dma)?;
    let client = machine
        .device::<Client>(client_bdf, DmaLimits::BITS_64)
        .map_err(CliError::dma)?;

    let verdict = topo.verdict(provider_bdf, client_bdf, policy)?;
    writeln!(
        out,
        "One I/O for client {client_bdf} (DMA_FROM_DEVICE, IOMMU on): 3 host pages + 2 pages of P2P memory of {provider_bdf}"
    )?;
    writeln!(
        out,
        "  kernel verdict {provider_bdf} -> {client_bdf}: {} distance {}",
        verdict.map_type.as_str(),
        verdict.kernel_distance()
    )?;
    let route = match P2pRoute::classify(&machine, &bar, &client) {
        Ok(r) => Some(r),
        Err(RouteError::NotSupported(_)) => None,
        Err(x) => return Err(CliError::dma(x)),
    };
    let route_name = match &route {
        Some(P2pRoute::ViaBusAddr(_)) => "ViaBusAddr: bus address, IOMMU bypassed",
        Some(P2pRoute::ViaHostBridge(_)) => {
            "ViaHostBridge: mapped like MMIO through the client's IOMMU"
        }
        Some(P2pRoute::SameDevice(_)) => "SameDevice: offset in the client's own BAR",
        None => "none: not supported, so the P2P pages are left out of the request",
    };
    writeln!(out, "  route witness: {route_name}\n")?;

    let alloc = bar.alloc(2 * 4096).map_err(CliError::dma)?;
    let mut pages: Vec<_> = ram.pages().collect();
    let mut bvec = BvecP2p::<P2pMemory>::new();
    writeln!(out, "  request (in order):")?;
    let mut host = pages.iter_mut();
    for i in 0..5 {
        let is_p2p = i == 2 || i == 4;
        if is_p2p && route.is_none() {
            continue;
        }
        if is_p2p {
            let seg = alloc
                .seg_range(if i == 2 { 0 } else { 4096 }, 4096)
                .map_err(CliError::dma)?;
            writeln!(
                out,
                "    [{}] P2P  {:?} + {:#x}",
                bvec.len(),
                seg.phys(),
                seg.len()
            )?;
            bvec.push(seg);
        } else if let Some(p) = host.next() {
            let seg = p.dma();
            writeln!(
                out,
                "    [{}] host {:?} + {:#x}",
                bvec.len(),
                seg.phys(),
                seg.len()
            )?;
            bvec.push(seg);
        }
    }

    // An aperture of exactly the request's IOMMU-bound pages (host pages,
    // and P2P pages through the host bridge): the run starts at its base.
    let linked = if matches!(route, Some(P2pRoute::ViaHostBridge(_))) {
        5
    } else {
        3
    };
    let domain =
        IommuDomain::<ClientDomain>::software(0xf000_0000, linked * 4096).map_err(CliError::dma)?;
    let mapper = Mapper::iommu(&client, &domain).map_err(CliError::dma)?;
    let mut slots = [SegSlot::EMPTY; 8];
    let id = client.id();
    let linked = || domain.reserved_granules();
    match &route {
        Some(r) => {
            mapper.map_bvec::<FromDevice, _, _>(&mut bvec, r, SegBuf::from_slots(&mut slots), |m| {
                describe(m, id, client_bdf, linked(), out)
            })
        }
        None => {
            let mut hosts: Vec<HostSeg<'_>> = bvec
                .into_iter()
                .filter_map(|s| match s {
                    dmaspace::vec::BvecSeg::Host(h) => Some(h),
                    dmaspace::vec::BvecSeg::P2p(_) => None,
                })
                .collect();
            mapper.map_host::<FromDevice, _>(&mut hosts, SegBuf::from_slots(&mut slots), |m| {
                describe(m, id, client_bdf, linked(), out)
            })
        }
    }
    .map_err(CliError::dma)?
}

/// Writes the device-visible segments of one mapping.
fn describe(
    mapped: DmaVec<'_, Client, FromDevice, Unsynced>,
    id: DeviceId,
    client_bdf: Bdf,
    linked_granules: usize,
    out: &mut String,
) -> Result<(), CliError> {
    let mapped = mapped.sync();
    writeln!(
        out,
        "\n  device-visible segments for {client_bdf} (what its descriptors get):"
    )?;
    for (i, s) in mapped
        .segments(id)
        .map_err(CliError::dma)?
        .iter()
        .enumerate()
    {
        let len = s.len();
        match (s.addr(), s.bar_offset()) {
            (Some(addr), _) => {
                let how = match s.via() {
                    Via::Iommu => "IOVA in the client's domain (host run merged)",
                    Via::Direct => "physical address (no IOMMU)",
                    Via::BusAddr => "PCI bus address, IOMMU bypassed",
                    Via::OwnBar => "offset in the client's own BAR",
                    Via::Platform => "address from the platform's DMA API",
                };
                writeln!(out, "    [{i}] {:#014x} + {len:#07x}  {how}", addr.as_u64())
            }
            (None, Some((bar, offset))) => writeln!(
                out,
                "    [{i}] BAR{bar} {:#x} + {len:#07x}  offset in the client's own BAR",
                offset.as_u64()
            ),
            (None, None) => Ok(()),
        }?;
    }
    writeln!(
        out,
        "\n  {linked_granules} IOVA granule(s) linked in one contiguous range; unmapping frees them all."
    )?;
    mapped.unmap();
    Ok(())
}

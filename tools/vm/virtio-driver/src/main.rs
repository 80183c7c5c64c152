//! `virtio-e2e`: virtio-drivers' `VirtIOBlk`, unmodified, driving QEMU's
//! virtio-blk-pci (`disable-legacy=on,iommu_platform=on`) through VFIO type1
//! or iommufd inside the e2e VM (`tools/vm/e2e.sh`), with `dmaspace-virtio`
//! as its `Hal`: every address the device is given is an IOVA of the
//! scenario's domain.
//!
//! ```text
//! virtio-e2e run SCENARIO BDF   SCENARIO: virtio-blk-type1, virtio-blk-iommufd,
//!                                virtio-blk-contains (type1, a stale IOVA); one line: `SCENARIO: ok` or `SCENARIO: FAILED why`
//!                                (details on a `# SCENARIO: ...` line); exit 0 / 1
//! ```
//!
//! The disk: the host seeds every 512-byte sector from its LBA ([`seed`]);
//! the scenarios write [`WRITTEN`] with [`fresh`], and the host checks the
//! whole image after the VM exits (`tools/vm/virtio-image.py`, which holds
//! the same two patterns and the same list).

mod cam;
#[path = "../../guest/kmsg.rs"]
mod kmsg;
mod stale;
#[path = "../../guest/verdict.rs"]
mod verdict;

use std::process::ExitCode;

use dmaspace::PhysAddr;
use dmaspace::backend::IommuBackend;
use dmaspace::iommu::IommuDomain;
use dmaspace::limits::DmaLimits;
use dmaspace::machine::Machine;
use dmaspace::pci::{Bdf, KernelPolicy};
use dmaspace_vfio::backend::iommufd::IommufdIoas;
use dmaspace_vfio::backend::vfio::VfioType1;
use dmaspace_vfio::{
    Iommufd, MappedBar, PinnedMemory, Sysfs, VfioContainer, VfioDevice, VfioGroup, VfioIommuType,
};
use dmaspace_virtio::{DmaHal, HalContext, MmioWindow, PagePool, PlatformTransport};
use virtio_drivers::Hal;
use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::PciRoot;

use crate::cam::VfioCam;

dmaspace::brand!(
    /// QEMU's virtio-blk-pci.
    pub VirtioBlk
);
dmaspace::brand!(
    /// The scenario's IOMMU domain (a type1 container or an iommufd IOAS).
    pub Dom
);
dmaspace_virtio::hal!(
    /// The Hal `VirtIOBlk` is instantiated with.
    pub Blk
);
type BlkHal = DmaHal<Blk>;

/// The image's size in sectors (`vm.sh` makes it 4 MiB).
const SECTORS: u64 = 8192;
/// The sectors the scenarios write: 8 from a page-aligned 4 KiB buffer
/// (mapped in place), 1 from a 512-byte heap buffer (bounced), and 3 from
/// a buffer that starts 512 bytes into a page (bounced). Keep in step with
/// `tools/vm/virtio-image.py`.
const WRITTEN: &[(u64, u64)] = &[(100, 8), (301, 1), (517, 3)];

/// Byte `i` of sector `lba` as the host seeded it: the LBA (little-endian
/// u64), then `(lba * 7 + i) % 251`.
pub(crate) fn seed(lba: u64) -> Vec<u8> {
    sector(lba, lba, 7, 251)
}

/// Byte `i` of sector `lba` as the scenarios write it: `!lba`, then
/// `(lba * 13 + i) % 241`.
fn fresh(lba: u64) -> Vec<u8> {
    sector(lba, !lba, 13, 241)
}

fn sector(lba: u64, head: u64, mul: u64, modulus: u64) -> Vec<u8> {
    let mut v = head.to_le_bytes().to_vec();
    v.extend((8..SECTOR_SIZE as u64).map(|i| ((lba * mul + i) % modulus) as u8));
    v
}

pub(crate) fn pattern(first: u64, n: u64, f: fn(u64) -> Vec<u8>) -> Vec<u8> {
    (first..first + n).flat_map(f).collect()
}

/// Page-aligned memory for buffers the Hal maps in place.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

pub(crate) fn pages(n: usize) -> Vec<Page> {
    (0..n).map(|_| Page([0xa5; 4096])).collect()
}

pub(crate) fn bytes_mut(p: &mut [Page]) -> &mut [u8] {
    // SAFETY: `Page` is `repr(C)` around one `[u8; 4096]`, so the pages are
    // `4096 * len` initialized bytes, borrowed from `p` for as long as it is.
    unsafe { std::slice::from_raw_parts_mut(p.as_mut_ptr().cast::<u8>(), p.len() * 4096) }
}

pub(crate) fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None if got.len() == want.len() => Ok(()),
        None => Err(format!("{what}: {} bytes, want {}", got.len(), want.len())),
        Some(i) => Err(format!(
            "{what}: {} of {} bytes differ, first at {i:#x} (got {:#04x}, want {:#04x})",
            got.iter().zip(want).filter(|(a, b)| a != b).count(),
            want.len(),
            got[i],
            want[i]
        )),
    }
}

fn s<E: std::fmt::Display>(ctx: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{ctx}: {e}")
}

/// The device's memory BARs mapped for the CPU, as MMIO windows at the
/// addresses config space gives them (where `PciTransport` looks).
fn bars(vdev: &VfioDevice) -> Vec<(MappedBar, PhysAddr)> {
    (0..6)
        .filter_map(|i| {
            let at = vdev.bar_bus_address(i).ok().filter(|&a| a != 0)?;
            let bar = vdev.map_bar(i).ok()?;
            Some((bar, PhysAddr::new(at)))
        })
        .collect()
}

/// Pinned memory for rings and bounce buffers: 32 chunks of 64 KiB.
fn pool() -> Result<PagePool<PinnedMemory>, String> {
    let chunks = (0..32)
        .map(|_| PinnedMemory::new(64 << 10))
        .collect::<Result<Vec<_>, _>>()
        .map_err(s("pinned memory"))?;
    Ok(PagePool::new(chunks))
}

/// The scenario on an opened device in `domain`: the Hal installed,
/// `VirtIOBlk` built on the PCI transport, reads and writes checked.
///
/// # Safety
/// `vdev`'s DMA is translated by `domain`'s backend while this runs (its
/// group is in the domain's container, or it is attached to its IOAS).
unsafe fn drive<H: Hal, B: IommuBackend + 'static>(
    vdev: &VfioDevice,
    domain: IommuDomain<Dom, B>,
    contains: bool,
) -> Result<String, String>
where
    HalContext<VirtioBlk, Dom, B, PagePool<PinnedMemory>>: Send + Sync,
{
    let machine: &'static Machine = Box::leak(Box::new(
        Machine::from_sysfs()
            .map_err(s("sysfs"))?
            .with_policy(KernelPolicy::linux_6_12()),
    ));
    let device = machine
        .device::<VirtioBlk>(vdev.address(), DmaLimits::BITS_64)
        .map_err(s("claim"))?;
    let aperture = domain.aperture();
    // SAFETY: the caller's contract.
    let mut ctx =
        unsafe { HalContext::new_unchecked(device, domain, pool()?) }.map_err(s("context"))?;
    let bars = bars(vdev);
    for (bar, at) in &bars {
        let ptr = std::ptr::NonNull::new(bar.vaddr() as *mut u8).ok_or("BAR at 0")?;
        // SAFETY: `bar` is VFIO's mapping of exactly this BAR, whose address
        // config space gives as `at`; it is dropped after the driver and the
        // Hal guard (declared before them in this function), and the driver
        // reaches it only through virtio-drivers' volatile accessors.
        ctx = ctx.with_mmio_window(unsafe { MmioWindow::new(*at, bar.len(), ptr) });
    }
    let monitor = ctx.monitor();
    let _guard = BlkHal::install(ctx).map_err(|e| format!("install: {e}"))?;

    // virtio-drivers never sets Bus Master Enable.
    vdev.enable_bus_master().map_err(s("bus master"))?;
    let cam = VfioCam::new(vdev);
    let df = cam.function();
    let mut root = PciRoot::new(cam);
    let transport = PciTransport::new::<H, _>(&mut root, df).map_err(s("PciTransport"))?;
    // The device was made with iommu_platform=on: without ACCESS_PLATFORM
    // it would read the IOVAs as guest-physical addresses.
    let transport = PlatformTransport::requiring(transport);
    let negotiation = transport.negotiation();
    let mut blk = VirtIOBlk::<H, _>::new(transport).map_err(|e| {
        format!(
            "VirtIOBlk::new: {e} (negotiation: {:?})",
            negotiation.result()
        )
    })?;
    match negotiation.result() {
        Some(Ok(true)) => {}
        other => return Err(format!("ACCESS_PLATFORM not negotiated: {other:?}")),
    }
    if blk.capacity() != SECTORS {
        return Err(format!(
            "capacity {} sectors, want {SECTORS}",
            blk.capacity()
        ));
    }

    if contains {
        return stale::contained(&mut blk);
    }

    // Reads of the seed: into a page-aligned buffer (in place) and into
    // sub-page heap buffers (bounced).
    let mut p = pages(2);
    blk.read_blocks(0, bytes_mut(&mut p))
        .map_err(s("read 0..16"))?;
    compare("sectors 0..16", bytes_mut(&mut p), &pattern(0, 16, seed))?;
    for lba in [1, 99, 4095, SECTORS - 1] {
        let mut b = vec![0x5au8; SECTOR_SIZE];
        blk.read_blocks(lba as usize, &mut b)
            .map_err(s("read sector"))?;
        compare(&format!("sector {lba}"), &b, &seed(lba))?;
    }

    // Writes: 8 sectors from a page-aligned buffer, 1 from a 512-byte
    // buffer, 3 from a buffer 512 bytes into a page.
    for &(lba, n) in WRITTEN {
        let data = pattern(lba, n, fresh);
        let len = data.len();
        match n {
            8 => {
                let mut w = pages(1);
                bytes_mut(&mut w).copy_from_slice(&data);
                blk.write_blocks(lba as usize, bytes_mut(&mut w))
            }
            1 => blk.write_blocks(lba as usize, &data),
            _ => {
                let mut w = pages(1);
                bytes_mut(&mut w)[512..512 + len].copy_from_slice(&data);
                blk.write_blocks(lba as usize, &bytes_mut(&mut w)[512..512 + len])
            }
        }
        .map_err(|e| format!("write {lba}+{n}: {e}"))?;
    }
    // Read back into fresh buffers, with the neighbours on both sides.
    for &(lba, n) in WRITTEN {
        let (first, count) = (lba - 1, n + 2);
        let mut r = pages((count as usize * SECTOR_SIZE).div_ceil(4096));
        let b = &mut bytes_mut(&mut r)[..count as usize * SECTOR_SIZE];
        blk.read_blocks(first as usize, b)
            .map_err(|e| format!("read back {first}+{count}: {e}"))?;
        let mut want = seed(first);
        want.extend(pattern(lba, n, fresh));
        want.extend(seed(lba + n));
        compare(&format!("sectors {first}..{}", first + count), b, &want)?;
    }
    let (in_place, bounced) = (monitor.shared_in_place(), monitor.bounced());
    if in_place == 0 || bounced == 0 {
        return Err(format!(
            "expected shares both in place and bounced, got {in_place} in place, {bounced} bounced"
        ));
    }
    drop(blk);
    let live = (monitor.live_allocations(), monitor.live_shares());
    if live != (0, 0) {
        return Err(format!(
            "after the driver was dropped: {} allocations and {} shares live",
            live.0, live.1
        ));
    }
    Ok(format!(
        "{}: VirtIOBlk over PciTransport (VFIO config region, BAR{} windows), ACCESS_PLATFORM negotiated, {SECTORS} sectors; seed read back, {} sectors written and read back with their neighbours; {in_place} shares in place, {bounced} bounced; aperture {:#x}+{:#x}",
        vdev.address(),
        bars.iter()
            .map(|(b, _)| b.index().to_string())
            .collect::<Vec<_>>()
            .join("/"),
        WRITTEN.iter().map(|w| w.1).sum::<u64>(),
        aperture.0,
        aperture.1
    ))
}

fn blk_type1(a: Bdf, contains: bool) -> Result<String, String> {
    let sysfs = Sysfs::live();
    sysfs.require_vfio_pci(a).map_err(s("vfio-pci"))?;
    let mut container = VfioContainer::open(&sysfs).map_err(s("container"))?;
    let group = VfioGroup::open_for_device(&sysfs, a).map_err(s("group"))?;
    group
        .set_container(&container)
        .map_err(s("set container"))?;
    container
        .set_iommu(VfioIommuType::Type1v2)
        .map_err(s("type1"))?;
    let vdev = group.device(a).map_err(s("device"))?;
    let domain = IommuDomain::new(VfioType1::new(container).map_err(s("type1 backend"))?)
        .map_err(s("domain"))?;
    // SAFETY: the device's group is in the container the domain's backend
    // owns, with the type1 IOMMU set: its DMA is translated by it.
    let r = if contains {
        // SAFETY: as above.
        unsafe { drive::<stale::Stale, _>(&vdev, domain, true) }
    } else {
        // SAFETY: as above.
        unsafe { drive::<BlkHal, _>(&vdev, domain, false) }
    };
    drop(vdev);
    drop(group);
    r.map(|d| format!("vfio-type1: {d}"))
}

fn blk_iommufd(a: Bdf) -> Result<String, String> {
    let sysfs = Sysfs::live();
    let fd = Iommufd::open(&sysfs).map_err(s("iommufd"))?;
    let ioas = fd.alloc_ioas().map_err(s("ioas"))?;
    let mut vdev = VfioDevice::open_cdev(&sysfs, a).map_err(s("cdev"))?;
    vdev.bind_iommufd(&fd).map_err(s("bind"))?;
    vdev.attach_ioas(&ioas).map_err(s("attach"))?;
    let domain = IommuDomain::new(IommufdIoas::new(ioas).map_err(s("iommufd backend"))?)
        .map_err(s("domain"))?;
    // SAFETY: the device is bound to the iommufd and attached to the IOAS
    // the domain's backend owns: its DMA is translated by it.
    let r = unsafe { drive::<BlkHal, _>(&vdev, domain, false) };
    r.map(|d| format!("iommufd: {d}"))
}

fn run(name: &str, args: &[String]) -> Result<String, String> {
    let [bdf] = args else {
        return Err(format!("needs 1 BDF, got {}", args.len()));
    };
    let a: Bdf = bdf.parse().map_err(|e| format!("{bdf}: {e}"))?;
    match name {
        "virtio-blk-type1" => blk_type1(a, false),
        "virtio-blk-contains" => blk_type1(a, true),
        "virtio-blk-iommufd" => blk_iommufd(a),
        _ => Err(format!("unknown scenario {name}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("run"), Some(name)) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!(
            "usage: virtio-e2e run virtio-blk-type1|virtio-blk-iommufd|virtio-blk-contains BDF"
        );
        return ExitCode::from(2);
    };
    let rest = &args[2..];
    verdict::report(name, || run(name, rest))
}

//! The DMA side of the driver, on dmaspace's types: the brands, the IOMMU
//! domain of a scenario over one of the crate's backends (VFIO type1
//! container, iommufd IOAS) or no IOMMU at all (VFIO no-IOMMU mode), and host
//! memory as the mappers take it.

use dmaspace::error::MapError;
use dmaspace::host::HostPages;
use dmaspace::iommu::IommuDomain;
use dmaspace::pci::Bdf;
use dmaspace::vec::HostSeg;
use dmaspace_vfio::backend::iommufd::IommufdIoas;
use dmaspace_vfio::backend::vfio::VfioType1;
use dmaspace_vfio::{
    Iommufd, PinnedMemory, Sysfs, VfioContainer, VfioDevice, VfioGroup, VfioIommuType,
};

dmaspace::brand!(
    /// The controllers this driver drives (QEMU's emulated NVMe).
    pub Nvme
);
dmaspace::brand!(
    /// P2P memory: a controller's Controller Memory Buffer.
    pub CmbMem
);
dmaspace::brand!(
    /// The IOMMU domain of a scenario (one container or IOAS).
    pub Dom
);

/// How the controllers of a scenario reach memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Through an IOMMU whose backend maps process virtual addresses.
    Iommu,
    /// No IOMMU: physical addresses (VFIO no-IOMMU mode).
    Direct,
}

/// The kernel interface behind a scenario's DMA domain.
pub enum Backend {
    /// VFIO type1: dmaspace's [`VfioType1`] backend.
    Type1 {
        /// The domain: the crate's IOVA allocator over the container.
        domain: IommuDomain<Dom, VfioType1>,
        /// The groups (kept open while their devices are used).
        _groups: Vec<VfioGroup>,
    },
    /// iommufd: dmaspace's [`IommufdIoas`] backend.
    Iommufd {
        /// The domain: the crate's IOVA allocator over the IOAS.
        domain: IommuDomain<Dom, IommufdIoas>,
    },
    /// No IOMMU: the controllers use physical addresses.
    NoIommu {
        /// The container (no mappings to make; it vouches for the
        /// devices' untranslated DMA).
        container: VfioContainer,
        /// Its no-IOMMU groups.
        _groups: Vec<VfioGroup>,
    },
}

impl Backend {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Type1 { .. } => "vfio-type1",
            Self::Iommufd { .. } => "iommufd",
            Self::NoIommu { .. } => "vfio-noiommu",
        }
    }

    /// How its devices reach memory.
    pub fn mode(&self) -> Mode {
        match self {
            Self::NoIommu { .. } => Mode::Direct,
            _ => Mode::Iommu,
        }
    }

    /// The domain's aperture, if there is an IOMMU.
    pub fn aperture(&self) -> Option<(u64, u64)> {
        match self {
            Self::Type1 { domain, .. } => Some(domain.aperture()),
            Self::Iommufd { domain } => Some(domain.aperture()),
            Self::NoIommu { .. } => None,
        }
    }
}

/// Runs `$body` with `$m` bound to a `Mapper` of device `$dev` in the
/// domain of `$opened` (an `&Opened`): `dmaspace_vfio`'s `type1_mapper` or
/// `iommufd_mapper` (which check the device is attached to the domain), or `dmaspace_vfio::backend::vfio_noiommu::no_iommu_mapper` in no-IOMMU mode. The
/// body is compiled once per kind of mapper; it evaluates to a
/// `Result<_, String>`.
#[macro_export]
macro_rules! with_mapper {
    ($opened:expr, $dev:expr, |$m:ident| $body:expr) => {{
        let opened: &$crate::dma::Opened = $opened;
        match &opened.backend {
            $crate::dma::Backend::Type1 { domain, .. } => {
                let $m = $crate::dma::type1_mapper(domain, &opened.devices, $dev)?;
                $body
            }
            $crate::dma::Backend::Iommufd { domain } => {
                let $m = $crate::dma::iommufd_mapper(domain, &opened.devices, $dev)?;
                $body
            }
            $crate::dma::Backend::NoIommu { container, .. } => {
                let $m = $crate::dma::direct_mapper(container, &opened.devices, $dev)?;
                $body
            }
        }
    }};
    ($opened:expr, $dev1:expr, $dev2:expr, |$m1:ident, $m2:ident| $body:expr) => {{
        let opened: &$crate::dma::Opened = $opened;
        match &opened.backend {
            $crate::dma::Backend::Type1 { domain, .. } => {
                let $m1 = $crate::dma::type1_mapper(domain, &opened.devices, $dev1)?;
                let $m2 = $crate::dma::type1_mapper(domain, &opened.devices, $dev2)?;
                $body
            }
            $crate::dma::Backend::Iommufd { domain } => {
                let $m1 = $crate::dma::iommufd_mapper(domain, &opened.devices, $dev1)?;
                let $m2 = $crate::dma::iommufd_mapper(domain, &opened.devices, $dev2)?;
                $body
            }
            $crate::dma::Backend::NoIommu { container, .. } => {
                let $m1 = $crate::dma::direct_mapper(container, &opened.devices, $dev1)?;
                let $m2 = $crate::dma::direct_mapper(container, &opened.devices, $dev2)?;
                $body
            }
        }
    }};
}

/// The VFIO device of `dev`'s function among `devices`.
fn vfio_of<'a>(
    devices: &'a [VfioDevice],
    dev: &dmaspace::device::Device<'_, Nvme>,
) -> Result<&'a VfioDevice, String> {
    devices
        .iter()
        .find(|v| v.address() == dev.bdf())
        .ok_or_else(|| format!("{} was not opened through VFIO", dev.bdf()))
}

/// A mapper for `dev` in the type1 `domain`, its VFIO device among
/// `devices` checked to be in the domain's container.
pub fn type1_mapper<'d>(
    domain: &'d IommuDomain<Dom, VfioType1>,
    devices: &'d [VfioDevice],
    dev: &'d dmaspace::device::Device<'_, Nvme>,
) -> Result<dmaspace::map::Mapper<'d, Nvme, dmaspace::map::Iommu<'d, VfioType1>>, String> {
    dmaspace_vfio::backend::vfio::type1_mapper(vfio_of(devices, dev)?, dev, domain)
        .map_err(|e| e.to_string())
}

/// A mapper for `dev` in the iommufd `domain`, its VFIO device among
/// `devices` checked to be attached to the domain's IOAS.
pub fn iommufd_mapper<'d>(
    domain: &'d IommuDomain<Dom, IommufdIoas>,
    devices: &'d [VfioDevice],
    dev: &'d dmaspace::device::Device<'_, Nvme>,
) -> Result<dmaspace::map::Mapper<'d, Nvme, dmaspace::map::Iommu<'d, IommufdIoas>>, String> {
    dmaspace_vfio::backend::iommufd::iommufd_mapper(vfio_of(devices, dev)?, dev, domain)
        .map_err(|e| e.to_string())
}

/// A mapper without IOMMU for `dev`, whose DMA the kernel says is not
/// translated: the VFIO device of the same function among `devices`, opened
/// from a group of the no-IOMMU `container` (checked by
/// `dmaspace_vfio::backend::vfio_noiommu::no_iommu_mapper`).
pub fn direct_mapper<'d>(
    container: &VfioContainer,
    devices: &[VfioDevice],
    dev: &'d dmaspace::device::Device<'_, Nvme>,
) -> Result<dmaspace::map::Mapper<'d, Nvme>, String> {
    let vdev = devices
        .iter()
        .find(|v| v.address() == dev.bdf())
        .ok_or_else(|| format!("{} was not opened through VFIO", dev.bdf()))?;
    dmaspace_vfio::backend::vfio_noiommu::no_iommu_mapper(container, vdev, dev)
        .map_err(|e| e.to_string())
}

/// The pages of `mem` as this mode's mapper takes them: the whole buffer by
/// its virtual address (an IOMMU backend maps that), or its physically
/// contiguous runs with their physical addresses (no IOMMU).
pub fn host_pages(mode: Mode, mem: &mut PinnedMemory) -> Result<Vec<HostPages<'_>>, String> {
    match mode {
        Mode::Iommu => Ok(vec![mem.host_pages()]),
        // SAFETY: in no-IOMMU mode `open_vfio` switched compaction of locked
        // pages off (or the kernel has no compaction): the pages stay where
        // pagemap says while the buffer lives.
        Mode::Direct => unsafe { mem.host_pages_phys() }.map_err(|e| e.to_string()),
    }
}

/// `[off, off + len)` of the buffer described by `runs` (in order) as host
/// segments.
pub fn host_segs<'a>(
    runs: &'a mut [HostPages<'_>],
    off: u64,
    len: u64,
) -> Result<Vec<HostSeg<'a>>, MapError> {
    let total: u64 = runs.iter().map(HostPages::len).sum();
    if off.checked_add(len).is_none_or(|e| e > total) {
        return Err(MapError::OutOfBounds {
            offset: off,
            len,
            size: total,
        });
    }
    let mut out = Vec::new();
    let mut at = 0u64;
    for r in runs.iter_mut() {
        let (start, end) = (at, at + r.len());
        at = end;
        let (lo, hi) = (off.max(start), (off + len).min(end));
        if lo < hi {
            out.push(r.dma_range(lo - start, hi - lo)?);
        }
    }
    Ok(out)
}

/// Pinned memory for a coherent ring or a PRP list page: one page, with its
/// physical address recorded in no-IOMMU mode.
pub fn ring_page(mode: Mode, len: usize) -> Result<PinnedMemory, String> {
    let mut m = PinnedMemory::new(len).map_err(|e| e.to_string())?;
    if mode == Mode::Direct {
        // SAFETY: as in `host_pages`: compaction of locked pages is off.
        unsafe { m.record_phys() }.map_err(|e| e.to_string())?;
    }
    Ok(m)
}

/// Where each controller of `devs` takes addresses as its own CMB once
/// enabled (its BAR2, whose bus address the driver writes as CBA): an IOVA
/// there would never reach the IOMMU, so the domain's aperture avoids them.
fn cmb_windows(devs: &[VfioDevice]) -> Vec<(u64, u64)> {
    devs.iter()
        .filter_map(|d| Some((d.bar_bus_address(2).ok()?, d.region_info(2).ok()?.size)))
        .filter(|&(_, len)| len > 0)
        .collect()
}

/// What a scenario opened: its DMA backend and the VFIO devices, in order.
pub struct Opened {
    /// The backend (and domain).
    pub backend: Backend,
    /// The devices.
    pub devices: Vec<VfioDevice>,
}

/// Opens `addrs` through VFIO groups in one container: type1 (dmaspace's
/// [`VfioType1`] backend), or no-IOMMU when the groups are no-IOMMU groups.
/// Checks sysfs first, so each bad input gets its own typed error.
pub fn open_vfio(addrs: &[Bdf]) -> Result<Opened, String> {
    let sysfs = Sysfs::live();
    for &a in addrs {
        sysfs.require_vfio_pci(a).map_err(|e| e.to_string())?;
    }
    let mut container = VfioContainer::open(&sysfs).map_err(|e| e.to_string())?;
    let mut groups: Vec<VfioGroup> = Vec::new();
    let mut which = Vec::new();
    for &a in addrs {
        let node = sysfs.group(a).map_err(|e| e.to_string())?;
        match groups.iter().position(|g| g.node().id == node.id) {
            Some(i) => which.push(i),
            None => {
                let g = VfioGroup::open_for_device(&sysfs, a).map_err(|e| e.to_string())?;
                g.set_container(&container).map_err(|e| e.to_string())?;
                which.push(groups.len());
                groups.push(g);
            }
        }
    }
    let noiommu = groups.iter().all(|g| g.node().noiommu);
    let t = if noiommu {
        VfioIommuType::NoIommu
    } else {
        VfioIommuType::Type1v2
    };
    container.set_iommu(t).map_err(|e| e.to_string())?;
    let mut devices = Vec::new();
    for (&a, &i) in addrs.iter().zip(&which) {
        let mut d = groups[i].device(a).map_err(|e| e.to_string())?;
        fresh(&mut d)?;
        devices.push(d);
    }
    let backend = if noiommu {
        keep_locked_pages_in_place();
        Backend::NoIommu {
            container,
            _groups: groups,
        }
    } else {
        let b =
            VfioType1::avoiding(container, &cmb_windows(&devices)).map_err(|e| e.to_string())?;
        Backend::Type1 {
            domain: IommuDomain::new(b).map_err(|e| format!("type1 domain: {e}"))?,
            _groups: groups,
        }
    };
    Ok(Opened { backend, devices })
}

/// Opens `addrs` through their VFIO device cdevs, bound to one iommufd and
/// attached to one IOAS, under dmaspace's [`IommufdIoas`] backend.
pub fn open_iommufd(addrs: &[Bdf]) -> Result<Opened, String> {
    let sysfs = Sysfs::live();
    let fd = Iommufd::open(&sysfs).map_err(|e| e.to_string())?;
    let ioas = fd.alloc_ioas().map_err(|e| e.to_string())?;
    let mut devices = Vec::new();
    for &a in addrs {
        let mut d = VfioDevice::open_cdev(&sysfs, a).map_err(|e| e.to_string())?;
        d.bind_iommufd(&fd).map_err(|e| e.to_string())?;
        d.attach_ioas(&ioas).map_err(|e| e.to_string())?;
        fresh(&mut d)?;
        devices.push(d);
    }
    // Every device is attached: the IOAS's allowed ranges are final.
    let b = IommufdIoas::avoiding(ioas, &cmb_windows(&devices)).map_err(|e| e.to_string())?;
    Ok(Opened {
        backend: Backend::Iommufd {
            domain: IommuDomain::new(b).map_err(|e| format!("iommufd domain: {e}"))?,
        },
        devices,
    })
}

/// Starts from a clean function (FLR where offered): whatever the previous
/// driver left enabled (queues, the CMB) is gone. Done once, when the device
/// is opened: a reset takes `&mut VfioDevice`, since it would revoke a
/// dma-buf export of the device that mappings may be using.
fn fresh(d: &mut VfioDevice) -> Result<(), String> {
    let a = d.address();
    if d.info().map_err(|e| format!("{a}: {e}"))?.can_reset() {
        d.reset().map_err(|e| format!("reset {a}: {e}"))?;
    }
    Ok(())
}

/// No-IOMMU mode hands devices physical addresses from pagemap: locked pages
/// must not be migrated. A kernel without compaction has no knob (and moves
/// nothing).
fn keep_locked_pages_in_place() {
    let knob = "/proc/sys/vm/compact_unevictable_allowed";
    if std::path::Path::new(knob).exists() {
        let _ = std::fs::write(knob, "0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmaspace::PhysAddr;

    #[test]
    fn host_segments_cut_the_runs() {
        let mut a = [0u8; 0x3000];
        let (x, y) = a.split_at_mut(0x1000);
        // SAFETY: plain test memory; nothing maps it for a device.
        let mut runs = unsafe {
            vec![
                HostPages::new(x, PhysAddr::new(0x10_0000)).unwrap(),
                HostPages::new(y, PhysAddr::new(0x50_0000)).unwrap(),
            ]
        };
        let segs = host_segs(&mut runs, 0x800, 0x1000).unwrap();
        let got: Vec<(u64, u64)> = segs
            .iter()
            .map(|s| (s.phys().unwrap().as_u64(), s.len()))
            .collect();
        assert_eq!(got, [(0x10_0800, 0x800), (0x50_0000, 0x800)]);
        assert!(host_segs(&mut runs, 0x2800, 0x1000).is_err());
        let one = host_segs(&mut runs, 0x1000, 0x2000).unwrap();
        assert_eq!(one.len(), 1);
    }
}

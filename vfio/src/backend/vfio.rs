//! The VFIO type1 backend: a container (`/dev/vfio/vfio`) with the type1v2
//! IOMMU, programmed with `VFIO_IOMMU_MAP_DMA` / `VFIO_IOMMU_UNMAP_DMA`
//! (feature `vfio`, Linux).
//!
//! Type1 maps a *process virtual address*: the kernel pins the pages behind
//! it (or, for a BAR's `mmap`, a `VM_PFNMAP` range, follows its frames
//! without pinning) and programs the IOMMU. So this backend's
//! [`MAPS`](IommuBackend::MAPS) is [`AddrKind::Virt`]: host memory is mapped
//! at [`HostSeg::vaddr`](dmaspace::vec::HostSeg::vaddr), a provider's BAR at
//! its process mapping
//! ([`Provider::set_cpu_mapping`](dmaspace::provider::Provider::set_cpu_mapping)).
#![cfg(target_os = "linux")]

use super::attach::AttachError;
use super::ctx::{IommuHandle, VfioIommu, checked_mapper};
use super::kernel::Kernel;
use crate::{VfioContainer, VfioDevice, VfioError, VfioIommuType, page_size};
use dmaspace::Brand;
#[cfg(doc)]
use dmaspace::backend::{AddrKind, IommuBackend};
use dmaspace::device::Device;
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Iommu, Mapper};
use dmaspace::pci::Bdf;

/// An [`IommuBackend`] over a VFIO type1 container: the IOMMU context its
/// groups share.
///
/// Made after every group is attached and the type1v2 IOMMU is set
/// ([`VfioContainer::set_iommu`]), so that the IOVA ranges it reads are
/// final: its [aperture](IommuBackend::aperture) is the largest window of
/// the container's valid IOVA ranges (`VFIO_IOMMU_GET_INFO`, which leaves
/// out reserved regions such as x86's MSI window), less the windows the
/// caller asks to avoid ([`VfioType1::avoiding`]).
///
/// [`sync`](IommuBackend::sync) does nothing: a `VFIO_IOMMU_MAP_DMA` is
/// visible to the devices when the ioctl returns.
///
/// ```no_run
/// use dmaspace_vfio::backend::vfio::VfioType1;
/// use dmaspace::iommu::IommuDomain;
/// use dmaspace_vfio::{Sysfs, VfioContainer, VfioGroup, VfioIommuType};
/// dmaspace::brand!(Dom);
/// let sysfs = Sysfs::live();
/// let bdf = "0000:00:03.0".parse()?;
/// let mut container = VfioContainer::open(&sysfs)?;
/// let group = VfioGroup::open_for_device(&sysfs, bdf)?;
/// group.set_container(&container)?;
/// container.set_iommu(VfioIommuType::Type1v2)?;
/// let domain = IommuDomain::<Dom, _>::new(VfioType1::new(container)?)?;
/// let device = group.device(bdf)?; // attached to `domain`'s container
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type VfioType1 = VfioIommu<VfioContainer>;

// SAFETY: `map` and `unmap` are one VFIO_IOMMU_MAP_DMA / UNMAP_DMA of
// exactly the range, with READ/WRITE exactly `perm` (type1 unwinds a failed
// map and flushes the IOTLB before an unmap returns). `attached`: a device
// opened from a group records the container the group was attached to
// (`VfioGroup::set_container` on that very container), and a group stays in
// its container while any of its devices is open: the borrowed `vfio` keeps
// it open.
unsafe impl Kernel for VfioContainer {
    const NAME: &'static str = "VfioType1";
    const MAP_OP: &'static str = "VFIO_IOMMU_MAP_DMA";
    const UNMAP_OP: &'static str = "VFIO_IOMMU_UNMAP_DMA";
    const NO_WINDOW: &'static str = "no IOVA window is left in the container's valid ranges";
    fn map(&self, iova: u64, vaddr: u64, len: u64, perm: IommuPerm) -> Result<(), i32> {
        let reads = perm.contains(IommuPerm::READ);
        let writes = perm.contains(IommuPerm::WRITE);
        self.map_vaddr(vaddr, len, iova, reads, writes)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
        // SAFETY: the backend unmaps only its own ranges (the caller of
        // `IommuBackend::unmap` promised it).
        unsafe { self.unmap_dma(iova, len) }
            .map(drop)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn attached(&self, vfio: &VfioDevice) -> bool {
        vfio.container_id() == Some(self.id())
    }
    fn not_attached(vfio: Bdf) -> AttachError {
        AttachError::NotInContainer { vfio }
    }
}

impl IommuHandle for VfioContainer {}

impl VfioIommu<VfioContainer> {
    /// The backend of `container`, whose type1v2 IOMMU is set; its aperture
    /// is the largest valid IOVA window.
    ///
    /// # Errors
    /// As [`VfioType1::avoiding`].
    ///
    /// See the type-level example.
    pub fn new(container: VfioContainer) -> Result<Self, VfioError> {
        Self::avoiding(container, &[])
    }

    /// The backend of `container`, whose aperture also stays clear of the
    /// `avoid` windows (`(start, len)`): addresses some attached device takes
    /// as its own and never sends to the IOMMU. An NVMe controller with its
    /// CMB enabled takes any PRP inside `[CBA, CBA + CMB size)` as CMB memory,
    /// so an IOVA there would never reach host memory.
    ///
    /// The aperture is the largest granule-aligned window left once the
    /// `avoid` windows are cut out of the valid ranges. A window that lies
    /// outside the valid range the aperture comes from cuts nothing there,
    /// and the aperture is then exactly [`new`](Self::new)'s: on x86 the
    /// valid ranges are `[0, MSI window)` and `[MSI window end, top)`, the
    /// aperture is the upper one, so a 32-bit CMB BAR (below `0xfee0_0000`)
    /// changes nothing visible — the aperture never reaches it, which is
    /// what avoiding asks. Only a window inside the chosen range (a 64-bit
    /// BAR above 4 GiB) moves or shrinks the aperture.
    /// [`avoided`](VfioIommu::avoided) lists the windows given, and `Debug`
    /// prints them.
    ///
    /// # Errors
    /// [`VfioErrorKind::InvalidArgument`](crate::VfioErrorKind::InvalidArgument) if the container has no type1v2
    /// IOMMU set, or no granule-aligned window is left; the errno of
    /// `VFIO_IOMMU_GET_INFO`.
    ///
    /// ```no_run
    /// # use dmaspace_vfio::backend::vfio::VfioType1;
    /// # use dmaspace::backend::IommuBackend;
    /// # fn f(container: dmaspace_vfio::VfioContainer) -> Result<(), dmaspace_vfio::VfioError> {
    /// let cmb = (0x8_0000_0000, 4 << 20); // CBA and size of a controller's CMB
    /// let b = VfioType1::avoiding(container, &[cmb])?;
    /// let (base, len) = b.aperture();
    /// assert!(base >= cmb.0 + cmb.1 || base + len <= cmb.0);
    /// # Ok(()) }
    /// ```
    pub fn avoiding(container: VfioContainer, avoid: &[(u64, u64)]) -> Result<Self, VfioError> {
        if container.iommu() != Some(VfioIommuType::Type1v2) {
            return Err(VfioError::invalid(
                "the type1 backend needs a container with the type1v2 IOMMU set",
            ));
        }
        let info = container.iommu_info()?;
        let granule = info
            .min_page_size()
            .unwrap_or(page_size() as u64)
            .max(page_size() as u64);
        let valid = info.iova_ranges.unwrap_or_else(|| std::vec![(0, u64::MAX)]);
        Self::build(container, valid, granule, avoid)
    }

    /// The container (to attach more groups, or open devices: a group
    /// attached after the backend was made may reserve IOVAs the aperture
    /// holds, and the kernel then refuses maps there).
    ///
    /// See the type-level example.
    #[must_use]
    pub fn container(&self) -> &VfioContainer {
        self.handle()
    }
}

/// A mapper for `device`, which VFIO drives as `vfio`, in `domain` over a
/// type1 container: checked that `vfio` was opened from a group attached
/// to the domain's container (the group's container cannot change while
/// the group is open) and is `device`'s function, so its DMA is translated
/// by the domain's IOMMU context. The mapper borrows `vfio`.
///
/// # Errors
/// [`AttachError::NotInContainer`], [`AttachError::OtherFunction`] when the
/// chain above does not hold; [`AttachError::Claim`] as `Mapper::iommu`.
///
/// ```no_run
/// # use dmaspace::prelude::*;
/// # use dmaspace_vfio::backend::vfio::{VfioType1, type1_mapper};
/// # use dmaspace_vfio::{Sysfs, VfioContainer, VfioGroup, VfioIommuType};
/// # brand!(Dom);
/// # brand!(Nvme);
/// # let sysfs = Sysfs::live();
/// let bdf = "0000:00:03.0".parse()?;
/// let mut container = VfioContainer::open(&sysfs)?;
/// let group = VfioGroup::open_for_device(&sysfs, bdf)?;
/// group.set_container(&container)?;
/// container.set_iommu(VfioIommuType::Type1v2)?;
/// let vfio = group.device(bdf)?;
/// let domain = IommuDomain::<Dom, _>::new(VfioType1::new(container)?)?;
/// let machine = Machine::from_sysfs()?;
/// let nvme = machine.device::<Nvme>(bdf, DmaLimits::BITS_64)?;
/// let mapper = type1_mapper(&vfio, &nvme, &domain)?;
/// # drop(mapper);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn type1_mapper<'d, K: Brand, Dm: Brand>(
    vfio: &'d VfioDevice,
    device: &'d Device<'_, K>,
    domain: &'d IommuDomain<Dm, VfioType1>,
) -> Result<Mapper<'d, K, Iommu<'d, VfioType1>>, AttachError> {
    checked_mapper(vfio, device, domain)
}

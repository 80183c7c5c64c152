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

use core::fmt;
use std::vec::Vec;

use super::attach::{self, AttachError};
use super::kernel::{self, Kernel, Mappings};
use crate::{
    VfioCall, VfioContainer, VfioDevice, VfioError, VfioErrorKind, VfioIommuType, page_size,
};
use dmaspace::Brand;
use dmaspace::backend::{AddrKind, BackendError, IommuBackend, MapEach};
use dmaspace::device::Device;
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Iommu, Mapper};

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
pub struct VfioType1 {
    container: VfioContainer,
    granule: u64,
    aperture: (u64, u64),
    valid: Vec<(u64, u64)>,
    live: Mappings,
}

/// The raw calls, on the container.
struct Type1Calls<'a>(&'a VfioContainer);

impl Kernel for Type1Calls<'_> {
    const MAP_OP: &'static str = "VFIO_IOMMU_MAP_DMA";
    fn map(&self, iova: u64, vaddr: u64, len: u64, perm: IommuPerm) -> Result<(), i32> {
        let reads = perm.contains(IommuPerm::READ);
        let writes = perm.contains(IommuPerm::WRITE);
        self.0
            .map_vaddr(vaddr, len, iova, reads, writes)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
        // SAFETY: the backend unmaps only its own ranges (the caller of
        // `IommuBackend::unmap` promised it).
        unsafe { self.0.unmap_dma(iova, len) }
            .map(drop)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
}

impl VfioType1 {
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
    /// # Errors
    /// [`VfioErrorKind::InvalidArgument`] if the container has no type1v2
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
        let aperture = kernel::pick_aperture(&valid, granule, avoid).ok_or(VfioError::new(
            VfioCall::Argument,
            VfioErrorKind::InvalidArgument {
                what: "no IOVA window is left in the container's valid ranges",
            },
        ))?;
        Ok(Self {
            container,
            granule,
            aperture,
            valid,
            live: Mappings::default(),
        })
    }

    /// The container (to attach more groups, or open devices: a group
    /// attached after the backend was made may reserve IOVAs the aperture
    /// holds, and the kernel then refuses maps there).
    ///
    /// See the type-level example.
    #[must_use]
    pub fn container(&self) -> &VfioContainer {
        &self.container
    }

    /// The container's valid IOVA ranges, `(first, last)` inclusive, as the
    /// kernel reported them when the backend was made.
    ///
    /// See [`VfioType1::avoiding`].
    #[must_use]
    pub fn valid_ranges(&self) -> &[(u64, u64)] {
        &self.valid
    }

    /// Bytes mapped through this backend now (for leak checks).
    ///
    /// See [`VfioType1::avoiding`].
    #[must_use]
    pub fn mapped_bytes(&self) -> u64 {
        self.live.mapped_bytes()
    }
}

impl fmt::Debug for VfioType1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioType1")
            .field("granule", &self.granule)
            .field(
                "aperture",
                &format_args!("{:#x} + {:#x}", self.aperture.0, self.aperture.1),
            )
            .field("mapped_bytes", &self.mapped_bytes())
            .finish()
    }
}

// SAFETY: the trait's contract, point by point:
// - `map` checks alignment, the aperture and overlap with its own table, then
//   makes one VFIO_IOMMU_MAP_DMA of exactly `[iova, iova + len)` to the
//   process range at `addr` with exactly `perm` (READ/WRITE flags); the
//   kernel translates that range and no other. On error the kernel has
//   unwound, and the backend unmaps the range again to make sure
//   (`Mappings::map`): nothing of the call stays mapped.
// - `unmap` removes every mapping inside the range (`Mappings::unmap`: whole
//   mappings, the outside parts of a straddling one mapped back); type1
//   flushes the IOTLB before the ioctl returns. An empty range makes no call.
//   If the kernel refuses, the process aborts: returning would let the
//   caller reuse memory a device can still reach.
// - `granule` is the smallest IOMMU page size (at least the CPU page),
//   `aperture` a window of the valid ranges read once: both constant.
// - The container fd and the table (a mutex) are shared by threads.
// - The linker is `MapEach`, which calls `map`.
unsafe impl IommuBackend for VfioType1 {
    const MAPS: AddrKind = AddrKind::Virt;
    type Linker<'a> = MapEach<'a, Self>;

    fn linker(&self, perm: IommuPerm) -> MapEach<'_, Self> {
        MapEach::new(self, perm)
    }

    fn granule(&self) -> u64 {
        self.granule
    }

    fn aperture(&self) -> (u64, u64) {
        self.aperture
    }

    /// `VFIO_IOMMU_MAP_DMA` of the process virtual range at `addr`; `mmio`
    /// changes nothing for type1 (it follows a BAR's `VM_PFNMAP` frames by
    /// itself) but classifies an `EFAULT`.
    unsafe fn map(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        self.live.map(
            &Type1Calls(&self.container),
            self.granule,
            self.aperture,
            (iova, addr, len),
            perm,
            mmio,
        )
    }

    /// Nothing to do: a type1 mapping is visible when the ioctl returns.
    unsafe fn sync(&self, _iova: u64, _len: u64) {}

    unsafe fn unmap(&self, iova: u64, len: u64) {
        if let Err(e) = self.live.unmap(&Type1Calls(&self.container), iova, len) {
            unmap_refused("VFIO_IOMMU_UNMAP_DMA", &e);
        }
    }
}

/// The kernel refused an unmap the table allows: a device may still reach
/// memory the caller is about to reuse. No safe way on: abort.
pub(super) fn unmap_refused(op: &str, e: &kernel::UnmapFailed) -> ! {
    std::eprintln!(
        "dmaspace: {op} of {:#x}+{:#x} failed (errno {}): a device may still reach this memory; aborting",
        e.iova,
        e.len,
        e.errno
    );
    std::process::abort()
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
    let container = domain.backend().container();
    attach::vouch(
        vfio.container_id() == Some(container.id()),
        AttachError::NotInContainer {
            vfio: vfio.address(),
        },
        vfio.address(),
        device.bdf(),
    )?;
    // SAFETY: the kernel gave `vfio`, the VFIO device of `device`'s
    // function, from a group attached to the domain's container, whose
    // type1 IOMMU the backend programs; the group stays in the container
    // while `vfio` is open, and the mapper borrows `vfio`.
    unsafe { Mapper::iommu_unchecked(device, domain) }.map_err(AttachError::Claim)
}

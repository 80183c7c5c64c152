//! The iommufd backend: an IO address space (IOAS) of `/dev/iommu`,
//! programmed with `IOMMU_IOAS_MAP` (fixed IOVA) / `IOMMU_IOAS_UNMAP`
//! (feature `vfio`, Linux).
//!
//! Like type1, iommufd maps a *process virtual address* (it pins the pages
//! with `pin_user_pages`): [`MAPS`](IommuBackend::MAPS) is
//! [`AddrKind::Virt`]. Unlike type1, Linux 6.12 cannot pin a `VM_PFNMAP`
//! range, so another device's BAR cannot be mapped: a P2P segment through
//! the host bridge comes back as a [`BackendError`] of kind
//! [`Unmappable`](dmaspace::backend::BackendErrorKind::Unmappable) (errno
//! `EFAULT`), and nothing is mapped. From Linux 6.19 the peer's BAR can be
//! exported as a dma-buf: publish it as a
//! [`DmaBufBar`](super::vfio_dmabuf::DmaBufBar) and [`Ioas::import`] it, and
//! this backend maps its P2P segments with `IOMMU_IOAS_MAP_FILE`.
#![cfg(target_os = "linux")]

use super::attach::AttachError;
use super::ctx::{IommuHandle, VfioIommu, checked_mapper};
use super::kernel::Kernel;
#[cfg(doc)]
use crate::VfioErrorKind;
use crate::{Ioas, VfioDevice, VfioError};
use dmaspace::Brand;
#[cfg(doc)]
use dmaspace::backend::{AddrKind, BackendError, IommuBackend};
use dmaspace::device::Device;
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Iommu, Mapper};
use dmaspace::pci::Bdf;

/// An [`IommuBackend`] over an iommufd IOAS.
///
/// Made after every device is attached to the IOAS
/// ([`VfioDevice::attach_ioas`](crate::VfioDevice::attach_ioas)): an
/// attach adds the device's reserved regions (x86's MSI window) to what the
/// IOAS refuses, and the [aperture](IommuBackend::aperture) is read once,
/// from `IOMMU_IOAS_IOVA_RANGES`: the largest allowed window, less the
/// windows the caller asks to avoid ([`IommufdIoas::avoiding`]). The
/// granule is the IOAS's IOVA alignment (at least the CPU page).
///
/// [`sync`](IommuBackend::sync) does nothing: an `IOMMU_IOAS_MAP` is
/// visible to the devices when the ioctl returns.
///
/// ```no_run
/// use dmaspace_vfio::backend::iommufd::IommufdIoas;
/// use dmaspace::iommu::IommuDomain;
/// use dmaspace_vfio::{Iommufd, Sysfs, VfioDevice};
/// dmaspace::brand!(Dom);
/// let sysfs = Sysfs::live();
/// let fd = Iommufd::open(&sysfs)?;
/// let ioas = fd.alloc_ioas()?;
/// let mut dev = VfioDevice::open_cdev(&sysfs, "0000:00:03.0".parse()?)?;
/// dev.bind_iommufd(&fd)?;
/// dev.attach_ioas(&ioas)?;
/// let domain = IommuDomain::<Dom, _>::new(IommufdIoas::new(ioas)?)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type IommufdIoas = VfioIommu<Ioas>;

// SAFETY: `map` is one IOMMU_IOAS_MAP with FIXED_IOVA of exactly the range
// (or, for a range inside an imported BAR's `mmap`, one IOMMU_IOAS_MAP_FILE
// of the same bytes of its dma-buf: the record holds the `mmap`, so the
// range names that BAR and nothing else),
// READABLE/WRITEABLE exactly `perm` (iommufd unwinds a failed map); `unmap`
// one IOMMU_IOAS_UNMAP, which unmaps from every attached domain and flushes
// before it returns (`ENOENT`, nothing there, is success). `attached`: the
// device records the iommufd it was bound to and the IOAS it was attached
// to; both can change only through `&mut VfioDevice`, which the borrowed
// `vfio` excludes.
unsafe impl Kernel for Ioas {
    const NAME: &'static str = "IommufdIoas";
    const MAP_OP: &'static str = "IOMMU_IOAS_MAP";
    const UNMAP_OP: &'static str = "IOMMU_IOAS_UNMAP";
    const NO_WINDOW: &'static str = "no IOVA window is left in the IOAS's allowed ranges";
    fn map(&self, iova: u64, vaddr: u64, len: u64, perm: IommuPerm) -> Result<(), i32> {
        let reads = perm.contains(IommuPerm::READ);
        let writes = perm.contains(IommuPerm::WRITE);
        self.map_imported_or_vaddr(vaddr, len, iova, reads, writes)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn map_op(&self, vaddr: u64, len: u64) -> &'static str {
        match self.imports().source(vaddr, len) {
            Ok(crate::import::Source::DmaBuf(..)) => "IOMMU_IOAS_MAP_FILE",
            _ => Self::MAP_OP,
        }
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
        // SAFETY: the backend unmaps only its own ranges (the caller of
        // `IommuBackend::unmap` promised it).
        match unsafe { Ioas::unmap(self, iova, len) } {
            Ok(_) => Ok(()),
            // iommufd's answer for a range that holds nothing.
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e.errno().unwrap_or(libc::EINVAL)),
        }
    }
    fn attached(&self, vfio: &VfioDevice) -> bool {
        vfio.is_attached_to(self)
    }
    fn not_attached(vfio: Bdf) -> AttachError {
        AttachError::NotAttached { vfio }
    }
    fn debug_fields(&self, d: &mut core::fmt::DebugStruct<'_, '_>) {
        d.field("ioas", &self.id());
    }
}

impl IommuHandle for Ioas {}

impl VfioIommu<Ioas> {
    /// The backend of `ioas`, every device already attached; its aperture is
    /// the largest allowed IOVA window.
    ///
    /// # Errors
    /// As [`IommufdIoas::avoiding`].
    ///
    /// See the type-level example.
    pub fn new(ioas: Ioas) -> Result<Self, VfioError> {
        Self::avoiding(ioas, &[])
    }

    /// The backend of `ioas`, whose aperture also stays clear of the `avoid`
    /// windows (`(start, len)`), as [`VfioType1::avoiding`](super::vfio::VfioType1::avoiding).
    ///
    /// # Errors
    /// [`VfioErrorKind::InvalidArgument`] if no aligned window is left, or
    /// the IOAS asks for an alignment that is not a power of two; the errno
    /// of `IOMMU_IOAS_IOVA_RANGES`.
    ///
    /// See the type-level example.
    pub fn avoiding(ioas: Ioas, avoid: &[(u64, u64)]) -> Result<Self, VfioError> {
        let (valid, align) = ioas.iova_ranges()?;
        Self::build(ioas, valid, align, avoid)
    }

    /// The IOAS (for its id, or raw calls on ranges this backend does not use).
    ///
    /// See the type-level example.
    #[must_use]
    pub fn ioas(&self) -> &Ioas {
        self.handle()
    }
}

/// A mapper for `device`, which VFIO drives as the cdev `vfio`, in
/// `domain` over an iommufd IOAS: checked that `vfio` is bound to the IOAS's
/// iommufd and attached to it ([`VfioDevice::attach_ioas`]) and is
/// `device`'s function, so its DMA is translated by the IOAS. The mapper
/// borrows `vfio`, so it cannot be attached elsewhere
/// (`attach_ioas` takes `&mut`) while the mapper lives.
///
/// # Errors
/// [`AttachError::NotAttached`], [`AttachError::OtherFunction`] when the
/// chain above does not hold; [`AttachError::Claim`] as `Mapper::iommu`.
///
/// ```no_run
/// # use dmaspace::prelude::*;
/// # use dmaspace_vfio::backend::iommufd::{IommufdIoas, iommufd_mapper};
/// # use dmaspace_vfio::{Iommufd, Sysfs, VfioDevice};
/// # brand!(Dom);
/// # brand!(Nvme);
/// # let sysfs = Sysfs::live();
/// let bdf = "0000:00:03.0".parse()?;
/// let fd = Iommufd::open(&sysfs)?;
/// let ioas = fd.alloc_ioas()?;
/// let mut vfio = VfioDevice::open_cdev(&sysfs, bdf)?;
/// vfio.bind_iommufd(&fd)?;
/// vfio.attach_ioas(&ioas)?;
/// let domain = IommuDomain::<Dom, _>::new(IommufdIoas::new(ioas)?)?;
/// let machine = Machine::from_sysfs()?;
/// let nvme = machine.device::<Nvme>(bdf, DmaLimits::BITS_64)?;
/// let mapper = iommufd_mapper(&vfio, &nvme, &domain)?;
/// # drop(mapper);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn iommufd_mapper<'d, K: Brand, Dm: Brand>(
    vfio: &'d VfioDevice,
    device: &'d Device<'_, K>,
    domain: &'d IommuDomain<Dm, IommufdIoas>,
) -> Result<Mapper<'d, K, Iommu<'d, IommufdIoas>>, AttachError> {
    checked_mapper(vfio, device, domain)
}

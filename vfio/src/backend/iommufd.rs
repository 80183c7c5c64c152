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
//! `EFAULT`), and nothing is mapped.
#![cfg(target_os = "linux")]

use core::fmt;
use std::vec::Vec;

use super::attach::{self, AttachError};
use super::kernel::{self, Kernel, Mappings};
use crate::{Ioas, VfioCall, VfioDevice, VfioError, VfioErrorKind, page_size};
use dmaspace::Brand;
use dmaspace::backend::{AddrKind, BackendError, IommuBackend, MapEach};
use dmaspace::device::Device;
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Iommu, Mapper};

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
pub struct IommufdIoas {
    ioas: Ioas,
    granule: u64,
    aperture: (u64, u64),
    valid: Vec<(u64, u64)>,
    live: Mappings,
}

/// The raw calls, on the IOAS.
struct IoasCalls<'a>(&'a Ioas);

impl Kernel for IoasCalls<'_> {
    const MAP_OP: &'static str = "IOMMU_IOAS_MAP";
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
        match unsafe { self.0.unmap(iova, len) } {
            Ok(_) => Ok(()),
            // iommufd's answer for a range that holds nothing.
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e.errno().unwrap_or(libc::EINVAL)),
        }
    }
}

impl IommufdIoas {
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
        let granule = align.max(page_size() as u64);
        let bad =
            |what| VfioError::new(VfioCall::Argument, VfioErrorKind::InvalidArgument { what });
        if !granule.is_power_of_two() {
            return Err(bad("the IOAS's IOVA alignment is not a power of two"));
        }
        let aperture = kernel::pick_aperture(&valid, granule, avoid)
            .ok_or(bad("no IOVA window is left in the IOAS's allowed ranges"))?;
        Ok(Self {
            ioas,
            granule,
            aperture,
            valid,
            live: Mappings::default(),
        })
    }

    /// The IOAS (for its id, or raw calls on ranges this backend does not use).
    ///
    /// See the type-level example.
    #[must_use]
    pub fn ioas(&self) -> &Ioas {
        &self.ioas
    }

    /// The IOAS's allowed IOVA ranges, `(first, last)` inclusive, as the
    /// kernel reported them when the backend was made.
    ///
    /// See the type-level example.
    #[must_use]
    pub fn valid_ranges(&self) -> &[(u64, u64)] {
        &self.valid
    }

    /// Bytes mapped through this backend now (for leak checks).
    ///
    /// See the type-level example.
    #[must_use]
    pub fn mapped_bytes(&self) -> u64 {
        self.live.mapped_bytes()
    }
}

impl fmt::Debug for IommufdIoas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IommufdIoas")
            .field("ioas", &self.ioas.id())
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
//   makes one IOMMU_IOAS_MAP with FIXED_IOVA of exactly `[iova, iova + len)`
//   to the process range at `addr` with exactly `perm` (READABLE/WRITEABLE);
//   iommufd maps that range and no other. On error (a PFNMAP range: EFAULT)
//   the kernel has unwound, and the backend unmaps the range again to make
//   sure (`Mappings::map`): nothing of the call stays mapped.
// - `unmap` removes every mapping inside the range (`Mappings::unmap`: whole
//   areas only, the outside parts of a straddling one mapped back); iommufd
//   unmaps from every attached domain and flushes before the ioctl returns.
//   An empty range makes no call. If the kernel refuses, the process aborts:
//   returning would let the caller reuse memory a device can still reach.
// - `granule` is the IOAS's alignment (at least the CPU page), `aperture` a
//   window of its allowed ranges read once: both constant.
// - The iommufd and the table (a mutex) are shared by threads.
// - The linker is `MapEach`, which calls `map`.
unsafe impl IommuBackend for IommufdIoas {
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

    /// `IOMMU_IOAS_MAP` (fixed IOVA) of the process virtual range at
    /// `addr`; with `mmio`, an `EFAULT` (6.12 cannot pin a BAR's PFNMAP
    /// range) is [`Unmappable`](dmaspace::backend::BackendErrorKind::Unmappable).
    unsafe fn map(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        self.live.map(
            &IoasCalls(&self.ioas),
            self.granule,
            self.aperture,
            (iova, addr, len),
            perm,
            mmio,
        )
    }

    /// Nothing to do: an IOAS mapping is visible when the ioctl returns.
    unsafe fn sync(&self, _iova: u64, _len: u64) {}

    unsafe fn unmap(&self, iova: u64, len: u64) {
        if let Err(e) = self.live.unmap(&IoasCalls(&self.ioas), iova, len) {
            super::vfio::unmap_refused("IOMMU_IOAS_UNMAP", &e);
        }
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
    attach::vouch(
        vfio.is_attached_to(domain.backend().ioas()),
        AttachError::NotAttached {
            vfio: vfio.address(),
        },
        vfio.address(),
        device.bdf(),
    )?;
    // SAFETY: `vfio`, the VFIO device of `device`'s function, is bound to
    // the IOAS's iommufd and attached to the IOAS the backend programs;
    // re-attaching takes `&mut vfio`, which the mapper's borrow excludes.
    unsafe { Mapper::iommu_unchecked(device, domain) }.map_err(AttachError::Claim)
}

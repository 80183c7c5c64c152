//! rust-vmm's VFIO handles under dmaspace's backend (feature
//! `vfio-ioctls`; the IOAS with `iommufd-ioctls`, which needs Rust 1.88): a VMM that already holds a `vfio_ioctls::VfioContainer`
//! (type1) or an `iommufd_ioctls::IommufdIoas` (cloud-hypervisor style) and
//! its `vfio_ioctls::VfioDevice`s hands them over, and gets the same
//! [`VfioIommu`] backend, table and rules as with this crate's own handles.
//!
//! The kernel calls are this crate's (on the handles' fds, `AsRawFd`), not
//! `vfio-ioctls`' `vfio_dma_map`, which always maps read-write: the backend
//! maps with exactly the permission asked.
//!
//! Two things this crate proves for its own handles cannot be proved for
//! rust-vmm's, so the constructors are `unsafe`:
//! - **The aperture is the backend's alone.** `vfio-ioctls`' `vfio_dma_map`
//!   and `vfio_dma_unmap` are safe to call on a shared `Arc`: a map or unmap
//!   by the VMM inside the backend's aperture would point a device address
//!   the domain handed out at other memory. Give the windows the VMM maps
//!   (guest RAM at its GPAs, say) as `avoid`, and keep its maps there.
//! - **The device is attached to the context.** `vfio_ioctls::VfioDevice`
//!   does not say which container or IOAS it was opened on (its `VfioOps`
//!   is private), and `attach_hwpt`/`detach_hwpt` take `&self`, so a borrow
//!   does not pin the attachment: [`vfio_ioctls_mapper`] takes the caller's
//!   word for it. It checks the function where the kernel names it
//!   (`vfio-device-syspath` in the fd's fdinfo, kernels from 2025 on).
//!
//! ```no_run
//! use std::sync::Arc;
//! use dmaspace::prelude::*;
//! use dmaspace_vfio::backend::rust_vmm::{VfioIoctlsType1, vfio_ioctls_mapper};
//! brand!(Dom);
//! brand!(Nic);
//! // The VMM's own objects.
//! let container = Arc::new(vfio_ioctls::VfioContainer::new(None)?);
//! let sysfs = std::path::Path::new("/sys/bus/pci/devices/0000:00:03.0");
//! let vfio = vfio_ioctls::VfioDevice::new(sysfs, container.clone(), false)?;
//! let guest_ram = (0, 4 << 30); // the VMM maps guest RAM at IOVA = GPA there
//! // SAFETY: the VMM maps and unmaps through `container` only inside
//! // `guest_ram`, which the aperture avoids.
//! let backend = unsafe { VfioIoctlsType1::from_vfio_ioctls(container, &[guest_ram]) }?;
//! let domain = IommuDomain::<Dom, _>::new(backend)?;
//! let machine = Machine::from_sysfs()?;
//! let nic = machine.device::<Nic>("0000:00:03.0".parse()?, DmaLimits::BITS_64)?;
//! // SAFETY: `vfio` was opened by `VfioDevice::new` on the domain's
//! // container, and stays in it while the mapper lives.
//! let mapper = unsafe { vfio_ioctls_mapper(&vfio, &nic, &domain) }?;
//! # drop(mapper);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "iommufd-ioctls")]
use core::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

#[cfg(feature = "iommufd-ioctls")]
use iommufd_ioctls::{IommuFd, IommufdIoas};
use vfio_ioctls::{VfioContainer, VfioDevice};

use super::attach::AttachError;
use super::ctx::{IommuHandle, VfioIommu};
use super::kernel::Kernel;
#[cfg(feature = "iommufd-ioctls")]
use crate::iommufd;
use crate::{VfioError, container, page_size};
use dmaspace::Brand;
use dmaspace::device::Device;
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Iommu, Mapper};
use dmaspace::pci::Bdf;

/// The type1 backend over `vfio-ioctls`' container.
pub type VfioIoctlsType1 = VfioIommu<Arc<VfioContainer>>;

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
/// The iommufd backend over `iommufd-ioctls`' IOAS.
pub type IommufdIoctlsIoas = VfioIommu<IoctlsIoas>;

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
/// An `iommufd-ioctls` IOAS with the iommufd it lives in (its
/// `IommufdIoas` keeps the fd private).
pub struct IoctlsIoas {
    iommufd: Arc<IommuFd>,
    ioas: Arc<IommufdIoas>,
}

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
impl IoctlsIoas {
    /// The IOAS.
    ///
    /// See [`IommufdIoctlsIoas::from_iommufd_ioctls`].
    #[must_use]
    pub fn ioas(&self) -> &Arc<IommufdIoas> {
        &self.ioas
    }

    /// The iommufd.
    ///
    /// See [`IommufdIoctlsIoas::from_iommufd_ioctls`].
    #[must_use]
    pub fn iommufd(&self) -> &Arc<IommuFd> {
        &self.iommufd
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by the `IommuFd` this value holds an `Arc`
        // of: open for at least the borrow of `self`.
        unsafe { BorrowedFd::borrow_raw(self.iommufd.as_raw_fd()) }
    }
}

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
impl fmt::Debug for IoctlsIoas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoctlsIoas")
            .field("ioas", &self.ioas.id())
            .finish_non_exhaustive()
    }
}

fn container_fd(c: &Arc<VfioContainer>) -> BorrowedFd<'_> {
    // SAFETY: the fd is owned by the container the `Arc` keeps alive for at
    // least the borrow.
    unsafe { BorrowedFd::borrow_raw(c.as_raw_fd()) }
}

// SAFETY: `map`/`unmap` are this crate's VFIO_IOMMU_MAP_DMA/UNMAP_DMA (as
// for its own container) on the container's fd; the constructor's contract
// keeps others out of the aperture. `attached` is `false`: no device of this
// crate can be opened on a `vfio-ioctls` container.
unsafe impl Kernel for Arc<VfioContainer> {
    const NAME: &'static str = "VfioIoctlsType1";
    const MAP_OP: &'static str = "VFIO_IOMMU_MAP_DMA";
    const UNMAP_OP: &'static str = "VFIO_IOMMU_UNMAP_DMA";
    const NO_WINDOW: &'static str = "no IOVA window is left in the container's valid ranges";
    fn map(&self, iova: u64, vaddr: u64, len: u64, perm: IommuPerm) -> Result<(), i32> {
        let (r, w) = (
            perm.contains(IommuPerm::READ),
            perm.contains(IommuPerm::WRITE),
        );
        container::type1_map(container_fd(self), vaddr, len, iova, r, w)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
        // SAFETY: the backend unmaps only its own ranges.
        unsafe { container::type1_unmap(container_fd(self), iova, len) }
            .map(drop)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn attached(&self, _: &crate::VfioDevice) -> bool {
        false
    }
    fn not_attached(vfio: Bdf) -> AttachError {
        AttachError::NotInContainer { vfio }
    }
}

impl IommuHandle for Arc<VfioContainer> {}

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
// SAFETY: as for this crate's `Ioas`: IOMMU_IOAS_MAP (FIXED_IOVA) and
// IOMMU_IOAS_UNMAP on the IOAS's id and iommufd; `attached` is `false`.
unsafe impl Kernel for IoctlsIoas {
    const NAME: &'static str = "IommufdIoctlsIoas";
    const MAP_OP: &'static str = "IOMMU_IOAS_MAP";
    const UNMAP_OP: &'static str = "IOMMU_IOAS_UNMAP";
    const NO_WINDOW: &'static str = "no IOVA window is left in the IOAS's allowed ranges";
    fn map(&self, iova: u64, vaddr: u64, len: u64, perm: IommuPerm) -> Result<(), i32> {
        let (r, w) = (
            perm.contains(IommuPerm::READ),
            perm.contains(IommuPerm::WRITE),
        );
        iommufd::ioas_map(self.fd(), self.ioas.id(), vaddr, len, iova, r, w)
            .map_err(|e| e.errno().unwrap_or(libc::EINVAL))
    }
    fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
        // SAFETY: the backend unmaps only its own ranges.
        match unsafe { iommufd::ioas_unmap(self.fd(), self.ioas.id(), iova, len) } {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e.errno().unwrap_or(libc::EINVAL)),
        }
    }
    fn attached(&self, _: &crate::VfioDevice) -> bool {
        false
    }
    fn not_attached(vfio: Bdf) -> AttachError {
        AttachError::NotAttached { vfio }
    }
    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("ioas", &self.ioas.id());
    }
}

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
impl IommuHandle for IoctlsIoas {}

impl VfioIommu<Arc<VfioContainer>> {
    /// The backend of a `vfio-ioctls` container the VMM shares, every group
    /// already added (`vfio_ioctls::VfioDevice::new` adds a device's group
    /// and sets the type1v2 IOMMU); its aperture is the largest valid IOVA
    /// window clear of `avoid`, as
    /// [`VfioType1::avoiding`](super::vfio::VfioType1::avoiding).
    ///
    /// # Errors
    /// The errno of `VFIO_IOMMU_GET_INFO` (no IOMMU set: no group added
    /// yet); [`VfioErrorKind::InvalidArgument`](crate::VfioErrorKind::InvalidArgument)
    /// if no window is left.
    ///
    /// # Safety
    /// Until the backend is dropped, nothing but the backend maps or unmaps
    /// IOVAs inside its [aperture](dmaspace::backend::IommuBackend::aperture)
    /// through `container` (`vfio_dma_map`, `vfio_dma_unmap`,
    /// `vfio_map_guest_memory`, or the raw fd): the VMM's own mappings stay
    /// in `avoid`'s windows or outside the valid range the aperture is
    /// taken from. Its IOMMU is `VFIO_TYPE1v2_IOMMU` (the only one
    /// `vfio-ioctls` sets).
    ///
    /// See the [module](self) example.
    pub unsafe fn from_vfio_ioctls(
        container: Arc<VfioContainer>,
        avoid: &[(u64, u64)],
    ) -> Result<Self, VfioError> {
        let info = container::type1_info(container_fd(&container))?;
        let granule = info.min_page_size().unwrap_or(page_size() as u64);
        let valid = info.iova_ranges.unwrap_or_else(|| std::vec![(0, u64::MAX)]);
        Self::build(container, valid, granule, avoid)
    }

    /// The container.
    ///
    /// See the [module](self) example.
    #[must_use]
    pub fn vfio_ioctls_container(&self) -> &Arc<VfioContainer> {
        self.handle()
    }
}

#[cfg(feature = "iommufd-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "iommufd-ioctls")))]
impl VfioIommu<IoctlsIoas> {
    /// The backend of an `iommufd-ioctls` IOAS of `iommufd` the VMM shares,
    /// every device already attached; its aperture is the largest allowed
    /// IOVA window clear of `avoid`.
    ///
    /// # Errors
    /// The errno of `IOMMU_IOAS_IOVA_RANGES` (`ioas` is not an IOAS of
    /// `iommufd`: `ENOENT` or `EINVAL`);
    /// [`VfioErrorKind::InvalidArgument`](crate::VfioErrorKind::InvalidArgument)
    /// if no window is left.
    ///
    /// # Safety
    /// As [`from_vfio_ioctls`](VfioIommu::from_vfio_ioctls), for the IOAS:
    /// nothing but the backend maps or unmaps inside its aperture
    /// (`IommufdIoas::unmap`, `map_file`, `VfioIommufd::vfio_dma_map`...).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use dmaspace_vfio::backend::rust_vmm::IommufdIoctlsIoas;
    /// let iommufd = Arc::new(iommufd_ioctls::IommuFd::new()?);
    /// let ioas = Arc::new(iommufd_ioctls::IommufdIoas::new(iommufd.clone())?);
    /// // ... the VMM attaches its devices (vfio_ioctls::VfioIommufd, attach_ioas) ...
    /// // SAFETY: the VMM maps nothing in this IOAS itself.
    /// let backend = unsafe { IommufdIoctlsIoas::from_iommufd_ioctls(iommufd, ioas, &[]) }?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_iommufd_ioctls(
        iommufd: Arc<IommuFd>,
        ioas: Arc<IommufdIoas>,
        avoid: &[(u64, u64)],
    ) -> Result<Self, VfioError> {
        let h = IoctlsIoas { iommufd, ioas };
        let (valid, align) = iommufd::ioas_iova_ranges(h.fd(), h.ioas.id())?;
        Self::build(h, valid, align, avoid)
    }
}

/// A mapper for `device`, which the VMM drives through `vfio-ioctls` as
/// `vfio`, in `domain` (over any of the crate's VFIO handles, rust-vmm's
/// included). The mapper borrows `vfio`.
///
/// Checked: `vfio` is `device`'s function, where the kernel names the
/// device in the fd's fdinfo (`vfio-device-syspath`, kernels from 2025 on).
///
/// # Errors
/// [`AttachError::OtherFunction`]; [`AttachError::Claim`] as `Mapper::iommu`.
///
/// # Safety
/// `vfio`'s DMA is translated by `domain`'s IOMMU context while the mapper
/// lives, and `vfio` is `device`'s function:
/// - type1: `vfio` was opened by `vfio_ioctls::VfioDevice::new` with the
///   domain's container ([`VfioIoctlsType1::vfio_ioctls_container`]) as its
///   `VfioOps` (its group stays in the container while `vfio` lives);
/// - iommufd: `vfio` is bound to the domain's iommufd and attached to its
///   IOAS (`attach_ioas`, or `attach_hwpt(ioas.id())`), and no
///   `attach_hwpt`/`detach_hwpt` on it runs while the mapper lives (they
///   take `&self`: the borrow does not keep them out).
///
/// See the [module](self) example.
pub unsafe fn vfio_ioctls_mapper<'d, K: Brand, Dm: Brand, H: IommuHandle>(
    vfio: &'d VfioDevice,
    device: &'d Device<'_, K>,
    domain: &'d IommuDomain<Dm, VfioIommu<H>>,
) -> Result<Mapper<'d, K, Iommu<'d, VfioIommu<H>>>, AttachError> {
    if let Some(named) = kernel_named_function(vfio.as_raw_fd()) {
        if named != device.bdf() {
            return Err(AttachError::OtherFunction {
                vfio: named,
                device: device.bdf(),
            });
        }
    }
    // SAFETY: the caller vouches that `vfio`, `device`'s function, has its
    // DMA translated by the domain's context while the mapper (which
    // borrows `vfio`) lives.
    unsafe { Mapper::iommu_unchecked(device, domain) }.map_err(AttachError::Claim)
}

/// The function the kernel says the VFIO device fd `fd` is, if it says.
fn kernel_named_function(fd: RawFd) -> Option<Bdf> {
    let info = std::fs::read_to_string(std::format!("/proc/self/fdinfo/{fd}")).ok()?;
    syspath_function(&info)
}

/// The function named by the `vfio-device-syspath:` line of a VFIO device
/// fd's fdinfo: the last component of the sysfs path, when it is a PCI
/// address.
fn syspath_function(fdinfo: &str) -> Option<Bdf> {
    let path = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("vfio-device-syspath:"))?
        .trim();
    path.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_is_read_from_fdinfo_only_when_the_kernel_names_it() {
        let new = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
                   vfio-device-syspath: /sys/devices/pci0000:00/0000:00:02.0/0000:01:00.1\n";
        assert_eq!(syspath_function(new), Some(Bdf::new(0, 1, 0, 1)));
        // 6.12: no such line; a platform device: not a PCI address.
        assert_eq!(syspath_function("pos:\t0\nflags:\t02000002\n"), None);
        let platform = "vfio-device-syspath: /sys/devices/platform/fff51000.ethernet\n";
        assert_eq!(syspath_function(platform), None);
        // Our own process's stdin is no VFIO device: nothing named.
        assert_eq!(kernel_named_function(0), None);
    }

    #[test]
    #[cfg(feature = "iommufd-ioctls")]
    #[cfg_attr(miri, ignore = "ioctl is a foreign call")]
    fn an_iommufd_that_is_not_one_is_a_typed_error() {
        // What `from_iommufd_ioctls` does first, on a fd that is no iommufd.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        // SAFETY: `f` outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(f.as_raw_fd()) };
        let e = iommufd::ioas_iova_ranges(fd, 1).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        assert!(e.to_string().contains("IOMMU_IOAS_IOVA_RANGES"), "{e}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "ioctl is a foreign call")]
    fn type1_calls_on_a_fd_that_is_no_container_are_typed_errors() {
        // What `from_vfio_ioctls` does first, on a fd that is no container.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        // SAFETY: `f` outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(f.as_raw_fd()) };
        let e = container::type1_info(fd).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        assert!(e.to_string().contains("VFIO_IOMMU_GET_INFO"), "{e}");
        let e = container::type1_map(fd, 0x1000, 0x1000, 0x1000, true, false).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        let e = container::type1_map(fd, 0x1000, 0x800, 0x1000, true, false).unwrap_err();
        assert_eq!(e.errno(), None, "unaligned: refused before the call");
    }
}

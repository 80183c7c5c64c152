//! A range of a VFIO device's BAR exported as a dma-buf
//! (`VFIO_DEVICE_FEATURE_DMA_BUF`, Linux 6.19 and later with
//! `CONFIG_VFIO_PCI_DMABUF`): what iommufd maps with `IOMMU_IOAS_MAP_FILE`
//! ([`Ioas::map_dma_buf`](crate::Ioas::map_dma_buf)) where `IOMMU_IOAS_MAP`
//! of the BAR's `mmap` fails (a PFNMAP range, `EFAULT`).
//!
//! The export borrows the device: while it lives the device cannot be reset
//! ([`VfioDevice::reset`] takes `&mut`) or closed (dropped). Both revoke the
//! dma-buf in the kernel, which then tears down every IOMMU mapping of it
//! and tells userspace nothing. See `docs/p2p-paths.md`.

use core::fmt;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use super::device::VfioDevice;
use super::error::{Ioctl, Result, VfioCall, VfioError, VfioErrorKind};
use super::mem::page_size;
use super::sys;
use dmaspace::pci::Bdf;

/// `[offset, offset + len)` of region (BAR) `region` of a VFIO device,
/// exported as a dma-buf.
///
/// # Invariants
/// `fd` is the dma-buf VFIO returned for exactly that range of `device`'s
/// region, one range; `offset` and `len` are page-aligned, `len > 0`.
///
/// ```no_run
/// use dmaspace_vfio::{Sysfs, VfioDevice};
/// let dev = VfioDevice::open_cdev(&Sysfs::live(), "0000:00:04.0".parse()?)?;
/// // (bind it to an iommufd first: an unbound cdev answers nothing)
/// let cmb = dev.export_dma_buf(2, 0, 1 << 20)?;
/// assert_eq!(cmb.len(), 1 << 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DmaBuf<'d> {
    fd: OwnedFd,
    device: &'d VfioDevice,
    region: u32,
    offset: u64,
    len: u64,
}

impl VfioDevice {
    /// Exports `[offset, offset + len)` of BAR `region` (0-5) as a dma-buf
    /// (`VFIO_DEVICE_FEATURE` with `GET | DMA_BUF`, one range, opened
    /// `O_RDWR | O_CLOEXEC`).
    ///
    /// # Errors
    /// [`VfioErrorKind::InvalidArgument`] before the call: `region` above
    /// 5, `len` zero, `offset`/`len` not page-aligned or past the region's
    /// size; the ioctl's errno ([`VfioError::meaning`] says what it means:
    /// `ENOTTY` and `EINVAL` on a kernel without the export, `ENODEV` for a
    /// region that cannot be exported).
    pub fn export_dma_buf(&self, region: u32, offset: u64, len: u64) -> Result<DmaBuf<'_>> {
        if region > 5 {
            return Err(VfioError::invalid("BAR index above 5"));
        }
        let page = page_size() as u64;
        if len == 0 || (offset | len) % page != 0 {
            return Err(VfioError::invalid(
                "a dma-buf range must be whole pages, and not empty",
            ));
        }
        let size = self.region_info(region)?.size;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(VfioError::new(
                VfioCall::Argument,
                VfioErrorKind::OutOfBounds { offset, len, size },
            ));
        }
        let mut f = sys::DmaBufFeature {
            feature: sys::VfioDeviceFeature {
                argsz: sys::argsz::<sys::DmaBufFeature>(),
                flags: sys::VFIO_DEVICE_FEATURE_GET | sys::VFIO_DEVICE_FEATURE_DMA_BUF,
                ..Default::default()
            },
            dma_buf: sys::VfioDeviceFeatureDmaBuf {
                region_index: region,
                open_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
                flags: 0,
                nr_ranges: 1,
                ..Default::default()
            },
            range: sys::VfioRegionDmaRange {
                offset,
                length: len,
            },
        };
        // SAFETY: VFIO_DEVICE_FEATURE takes a struct vfio_device_feature whose
        // argsz covers its data: here a vfio_device_feature_dma_buf with one
        // vfio_region_dma_range (DmaBufFeature, 40 bytes, its layout asserted
        // in sys.rs). The kernel reads it and returns a new fd.
        let fd = unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::DeviceFeature, &mut f) }?;
        // SAFETY: a non-negative return of the DMA_BUF feature is a new file
        // descriptor, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // INVARIANT: the kernel exported exactly the range asked for (or
        // failed); the arguments were checked above.
        Ok(DmaBuf {
            fd,
            device: self,
            region,
            offset,
            len,
        })
    }
}

impl<'d> DmaBuf<'d> {
    /// The exporting device.
    #[must_use]
    pub fn device(&self) -> &'d VfioDevice {
        self.device
    }

    /// The exporting function's address.
    #[must_use]
    pub fn address(&self) -> Bdf {
        self.device.address()
    }

    /// The region (BAR) exported.
    #[must_use]
    pub fn region(&self) -> u32 {
        self.region
    }

    /// Where the range starts in the region.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its length in bytes (the dma-buf's size).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always `false`: an export holds at least one page.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The dma-buf, for a holder that keeps it past the borrow of the
    /// device (the crate's own records, whose owner borrows the device).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The dma-buf fd. What is done through it (another importer, a
    /// `MAP_FILE` into another IOAS) is the caller's; it cannot revoke
    /// the export.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for DmaBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("device", &self.device.address())
            .field("region", &self.region)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "ioctl is a foreign call")]
    fn bad_ranges_are_refused_before_any_call() {
        // A regular file stands in for the device fd: no ioctl is reached.
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let dev = VfioDevice::from_fd(f.into(), Bdf::new(0, 0, 4, 0), None);
        let what = |e: VfioError| match e.kind() {
            VfioErrorKind::InvalidArgument { what } => *what,
            k => panic!("{k:?}"),
        };
        let e = dev.export_dma_buf(6, 0, 4096).unwrap_err();
        assert_eq!(what(e), "BAR index above 5");
        let e = dev.export_dma_buf(2, 0, 0).unwrap_err();
        assert!(what(e).contains("whole pages"));
        let e = dev.export_dma_buf(2, 100, 4096).unwrap_err();
        assert!(what(e).contains("whole pages"));
        // A well-formed range reaches the region query, which a plain file
        // refuses (ENOTTY): no export is made.
        let e = dev.export_dma_buf(2, 0, 4096).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        assert_eq!(e.call(), &VfioCall::Ioctl(Ioctl::DeviceGetRegionInfo));
    }
}

//! The iommufd path: `/dev/iommu`, an IO address space (IOAS), and VFIO device
//! cdevs bound to it ([`VfioDevice::open_cdev`](super::Device::open_cdev)).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::vec::Vec;

use super::container::check_map_args;
use super::device::MappedBar;
use super::error::{Ioctl, Result, VfioCall, VfioError, VfioErrorKind};
use super::import::{ExportRecord, Imports, Source};
use super::mem::PinnedMemory;
use super::sys;
use super::sysfs::Sysfs;

/// An open `/dev/iommu`.
#[derive(Clone, Debug)]
pub struct Iommufd {
    file: Arc<File>,
}

impl Iommufd {
    /// Opens `/dev/iommu`.
    ///
    /// # Errors
    ///
    /// The `errno` of `open` (`ENOENT`: `CONFIG_IOMMUFD` off).
    pub fn open(sysfs: &Sysfs) -> Result<Self> {
        let path = sysfs.path("dev/iommu");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                VfioError::os(
                    VfioCall::Open(path.clone()),
                    e.raw_os_error().unwrap_or(libc::EIO),
                )
            })?;
        Ok(Self {
            file: Arc::new(file),
        })
    }

    /// The fd. Crate-private: every call through it is one of this
    /// crate's checked methods.
    pub(crate) fn raw_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The fd. It takes every iommufd ioctl: map, unmap, destroy an IOAS, under any domain made over one.
    ///
    /// # Safety
    /// Nothing done through the fd may map, unmap or destroy what an IOAS
    /// a domain manages holds (see [`Ioas::unmap`]), nor attach a device
    /// to another IOAS while a mapper built for it lives.
    #[must_use]
    pub unsafe fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether `self` and `other` are the same open `/dev/iommu` (clones of
    /// one open): IOAS ids are per open.
    pub(crate) fn same(&self, other: &Iommufd) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }

    /// Allocates an empty IO address space (`IOMMU_IOAS_ALLOC`).
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn alloc_ioas(&self) -> Result<Ioas> {
        let mut a = sys::IommuIoasAlloc {
            size: sys::argsz::<sys::IommuIoasAlloc>(),
            ..Default::default()
        };
        // SAFETY: IOMMU_IOAS_ALLOC takes a struct iommu_ioas_alloc, size set.
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::IoasAlloc, &mut a) }?;
        Ok(Ioas {
            iommufd: self.clone(),
            id: a.out_ioas_id,
            imports: Imports::default(),
        })
    }
}

/// An iommufd IO address space: the IOVA space of the devices attached to it.
///
/// ```no_run
/// use dmaspace_vfio::{VfioDevice, PinnedMemory, Iommufd, Sysfs};
/// let sysfs = Sysfs::live();
/// let fd = Iommufd::open(&sysfs)?;
/// let ioas = fd.alloc_ioas()?;
/// let mut dev = VfioDevice::open_cdev(&sysfs, dmaspace::pci::Bdf::new(0, 0, 3, 0))?;
/// dev.bind_iommufd(&fd)?;
/// dev.attach_ioas(&ioas)?;
/// let mem = PinnedMemory::new(1 << 20)?;
/// // SAFETY: no domain manages this IOAS; the range is this example's.
/// unsafe { ioas.map(&mem, 0x1000_0000)? };
/// # Ok::<(), dmaspace_vfio::VfioError>(())
/// ```
#[derive(Debug)]
pub struct Ioas {
    iommufd: Iommufd,
    id: u32,
    /// The dma-bufs imported ([`Ioas::import`]), by the `mmap` they stand for.
    imports: Imports,
}

impl Ioas {
    /// The IOAS id (what `VFIO_DEVICE_ATTACH_IOMMUFD_PT` takes).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The iommufd the IOAS lives in.
    #[must_use]
    pub fn iommufd(&self) -> &Iommufd {
        &self.iommufd
    }

    /// The dma-bufs this IOAS imported.
    pub(crate) fn imports(&self) -> &Imports {
        &self.imports
    }

    /// Maps the process range at `vaddr`: through an imported dma-buf
    /// where the range lies in its BAR's `mmap` (`IOMMU_IOAS_MAP_FILE`),
    /// else `IOMMU_IOAS_MAP`.
    pub(crate) fn map_imported_or_vaddr(
        &self,
        vaddr: u64,
        len: u64,
        iova: u64,
        device_reads: bool,
        device_writes: bool,
    ) -> Result<()> {
        match self.imports.source(vaddr, len) {
            Ok(Source::Vaddr) => self.map_vaddr(vaddr, len, iova, device_reads, device_writes),
            Ok(Source::DmaBuf(rec, off)) => {
                self.map_record(&rec, (off, len, iova), device_reads, device_writes)
            }
            Err(()) => Err(VfioError::invalid(
                "the range straddles the edge of an imported BAR",
            )),
        }
    }

    /// Maps `rec`'s bytes at `off` (`IOMMU_IOAS_MAP_FILE` of its dma-buf).
    fn map_record(
        &self,
        rec: &ExportRecord,
        (off, len, iova): (u64, u64, u64),
        device_reads: bool,
        device_writes: bool,
    ) -> Result<()> {
        ioas_map_file(
            self.iommufd.raw_fd(),
            self.id,
            rec.dmabuf.as_fd(),
            (off, len, iova),
            device_reads,
            device_writes,
        )
    }

    fn map_raw(&self, vaddr: u64, len: u64, iova: u64) -> Result<()> {
        self.map_vaddr(vaddr, len, iova, true, true)
    }

    /// `IOMMU_IOAS_MAP` of any virtual range at exactly `iova`, readable
    /// and/or writable by the devices. Crate-private: the callers vouch for
    /// the memory (the iommufd backend's `map` is `unsafe`).
    pub(crate) fn map_vaddr(
        &self,
        vaddr: u64,
        len: u64,
        iova: u64,
        device_reads: bool,
        device_writes: bool,
    ) -> Result<()> {
        ioas_map(
            self.iommufd.raw_fd(),
            self.id,
            vaddr,
            len,
            iova,
            device_reads,
            device_writes,
        )
    }

    /// Maps all of `mem` at exactly `iova`, readable and writable
    /// (`IOMMU_IOAS_MAP` with `FIXED_IOVA`; the kernel pins the pages).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] before the call; the ioctl's errno
    /// (`EEXIST` overlap, `EINVAL` outside the allowed ranges, ...).
    ///
    /// # Safety
    ///
    /// The IOVA range is the caller's: no [`IommuDomain`](dmaspace::iommu::IommuDomain)
    /// over this IOAS (and nothing else the program relies on) has its
    /// mappings there. A domain hands out device addresses it believes map
    /// its own buffers; a map or an unmap under it would point them at other
    /// memory, or at none.
    pub unsafe fn map(&self, mem: &PinnedMemory, iova: u64) -> Result<()> {
        self.map_raw(mem.vaddr(), mem.len() as u64, iova)
    }

    /// Tries to map another device's BAR (its `mmap`) at `iova`. Linux 6.12
    /// cannot: `IOMMU_IOAS_MAP` pins with `pin_user_pages`, which refuses the
    /// `VM_PFNMAP` mapping, so this returns [`VfioErrorKind::PfnmapNotMappable`] and
    /// maps nothing (the kernel unwinds; the range stays free). Linux 7.3
    /// refuses it too; from 6.19 the BAR is exported as a dma-buf
    /// ([`VfioDevice::export_dma_buf`](crate::VfioDevice::export_dma_buf))
    /// and mapped with [`map_dma_buf`](Self::map_dma_buf).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::PfnmapNotMappable`] for the `EFAULT`; otherwise as [`map`](Self::map).
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map).
    pub unsafe fn map_bar(&self, bar: &MappedBar, iova: u64) -> Result<()> {
        self.map_raw(bar.vaddr(), bar.len() as u64, iova)
            .map_err(|e| {
                if e.errno() == Some(libc::EFAULT) {
                    VfioError::new(
                        VfioCall::Ioctl(Ioctl::IoasMap),
                        VfioErrorKind::PfnmapNotMappable,
                    )
                } else {
                    e
                }
            })
    }

    /// Maps `[start, start + len)` of the dma-buf `buf` at exactly `iova`,
    /// readable and/or writable by the devices (`IOMMU_IOAS_MAP_FILE` with
    /// `FIXED_IOVA`): the P2P path to another device's BAR that Linux 6.19
    /// opened, where [`map_bar`](Self::map_bar) fails.
    ///
    /// The kernel checks no P2P route here: it maps whatever the exporter's
    /// BAR is, reachable or not. The typed path
    /// ([`DmaBufBar`](crate::backend::vfio_dmabuf::DmaBufBar)) maps only
    /// through a route the kernel's P2PDMA rules allow.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] before the call (empty, unaligned,
    /// or past the dma-buf); [`VfioErrorKind::Revoked`] for `ENODEV` (the
    /// exporter revoked it); the ioctl's errno otherwise (`EOPNOTSUPP`:
    /// iommufd cannot import it; `EEXIST`: overlap).
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map).
    pub unsafe fn map_dma_buf(
        &self,
        buf: &crate::DmaBuf<'_>,
        start: u64,
        len: u64,
        iova: u64,
        device_reads: bool,
        device_writes: bool,
    ) -> Result<()> {
        if start.checked_add(len).is_none_or(|end| end > buf.len()) {
            return Err(VfioError::new(
                VfioCall::Argument,
                VfioErrorKind::OutOfBounds {
                    offset: start,
                    len,
                    size: buf.len(),
                },
            ));
        }
        ioas_map_file(
            self.iommufd.raw_fd(),
            self.id,
            buf.fd(),
            (start, len, iova),
            device_reads,
            device_writes,
        )
    }

    /// Unmaps `[iova, iova + len)` (`IOMMU_IOAS_UNMAP`); returns the bytes unmapped.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] before the call; the ioctl's errno
    /// (`ENOENT`: nothing mapped there).
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map).
    pub unsafe fn unmap(&self, iova: u64, len: u64) -> Result<u64> {
        // SAFETY: forwarded from this function's contract.
        unsafe { ioas_unmap(self.iommufd.raw_fd(), self.id, iova, len) }
    }

    /// The IOVA ranges devices attached to this IOAS may use, as
    /// `(first, last)` inclusive pairs (`IOMMU_IOAS_IOVA_RANGES`), and the
    /// required IOVA alignment.
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn iova_ranges(&self) -> Result<(Vec<(u64, u64)>, u64)> {
        ioas_iova_ranges(self.iommufd.raw_fd(), self.id)
    }
}

/// The flags of a fixed-IOVA map (`IOMMU_IOAS_MAP`, `IOMMU_IOAS_MAP_FILE`).
fn map_flags(device_reads: bool, device_writes: bool) -> u32 {
    let flag = |on: bool, f: u32| if on { f } else { 0 };
    sys::IOMMU_IOAS_MAP_FIXED_IOVA
        | flag(device_reads, sys::IOMMU_IOAS_MAP_READABLE)
        | flag(device_writes, sys::IOMMU_IOAS_MAP_WRITEABLE)
}

/// `IOMMU_IOAS_MAP` (fixed IOVA) on IOAS `id` of the iommufd `fd`.
/// Crate-private: the callers vouch for the memory.
pub(crate) fn ioas_map(
    fd: BorrowedFd<'_>,
    id: u32,
    vaddr: u64,
    len: u64,
    iova: u64,
    device_reads: bool,
    device_writes: bool,
) -> Result<()> {
    check_map_args(vaddr, len, iova)?;
    let mut m = sys::IommuIoasMap {
        size: sys::argsz::<sys::IommuIoasMap>(),
        flags: map_flags(device_reads, device_writes),
        ioas_id: id,
        __reserved: 0,
        user_va: vaddr,
        length: len,
        iova,
    };
    // SAFETY: IOMMU_IOAS_MAP takes a struct iommu_ioas_map, size set; the
    // kernel reads it and pins the user pages it names.
    unsafe { sys::ioctl_ptr(fd, Ioctl::IoasMap, &mut m) }.map(drop)
}

/// `IOMMU_IOAS_MAP_FILE` (fixed IOVA) of `[start, start + len)` of the
/// file `file` at `iova`, on IOAS `id` of the iommufd `fd`. `ENODEV` (a
/// revoked dma-buf) is [`VfioErrorKind::Revoked`]. Crate-private: the
/// callers vouch for the IOVA range.
pub(crate) fn ioas_map_file(
    fd: BorrowedFd<'_>,
    id: u32,
    file: BorrowedFd<'_>,
    (start, len, iova): (u64, u64, u64),
    device_reads: bool,
    device_writes: bool,
) -> Result<()> {
    check_map_args(start, len, iova)?;
    let mut m = sys::IommuIoasMapFile {
        size: sys::argsz::<sys::IommuIoasMapFile>(),
        flags: map_flags(device_reads, device_writes),
        ioas_id: id,
        fd: file.as_raw_fd(),
        start,
        length: len,
        iova,
    };
    // SAFETY: IOMMU_IOAS_MAP_FILE takes a struct iommu_ioas_map_file, size
    // set; it holds an fd number and no pointer.
    match unsafe { sys::ioctl_ptr(fd, Ioctl::IoasMapFile, &mut m) } {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::ENODEV) => Err(VfioError::new(
            VfioCall::Ioctl(Ioctl::IoasMapFile),
            VfioErrorKind::Revoked,
        )),
        Err(e) => Err(e),
    }
}

/// `IOMMU_IOAS_UNMAP` on IOAS `id` of the iommufd `fd`; the bytes unmapped.
///
/// # Safety
/// As [`Ioas::unmap`].
pub(crate) unsafe fn ioas_unmap(fd: BorrowedFd<'_>, id: u32, iova: u64, len: u64) -> Result<u64> {
    check_map_args(0, len, iova)?;
    let mut u = sys::IommuIoasUnmap {
        size: sys::argsz::<sys::IommuIoasUnmap>(),
        ioas_id: id,
        iova,
        length: len,
    };
    // SAFETY: IOMMU_IOAS_UNMAP takes a struct iommu_ioas_unmap, size set.
    unsafe { sys::ioctl_ptr(fd, Ioctl::IoasUnmap, &mut u) }?;
    Ok(u.length)
}

/// `IOMMU_IOAS_IOVA_RANGES` on IOAS `id` of the iommufd `fd`.
pub(crate) fn ioas_iova_ranges(fd: BorrowedFd<'_>, id: u32) -> Result<(Vec<(u64, u64)>, u64)> {
    let mut ranges = std::vec![sys::IommuIovaRange::default(); 16];
    loop {
        let mut q = sys::IommuIoasIovaRanges {
            size: sys::argsz::<sys::IommuIoasIovaRanges>(),
            ioas_id: id,
            num_iovas: u32::try_from(ranges.len()).unwrap_or(u32::MAX),
            __reserved: 0,
            allowed_iovas: ranges.as_mut_ptr() as u64,
            out_iova_alignment: 0,
        };
        // SAFETY: IOMMU_IOAS_IOVA_RANGES takes a struct iommu_ioas_iova_ranges
        // whose `allowed_iovas` points at `num_iovas` writable entries.
        match unsafe { sys::ioctl_ptr(fd, Ioctl::IoasIovaRanges, &mut q) } {
            Ok(_) => {
                let n = (q.num_iovas as usize).min(ranges.len());
                let out = ranges[..n].iter().map(|r| (r.start, r.last)).collect();
                return Ok((out, q.out_iova_alignment));
            }
            Err(e)
                if e.errno() == Some(libc::EMSGSIZE) && (q.num_iovas as usize) > ranges.len() =>
            {
                ranges.resize(q.num_iovas as usize, sys::IommuIovaRange::default());
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Ioas {
    fn drop(&mut self) {
        let mut d = sys::IommuDestroy {
            size: sys::argsz::<sys::IommuDestroy>(),
            id: self.id,
        };
        // SAFETY: IOMMU_DESTROY takes a struct iommu_destroy, size set. It fails
        // with EBUSY while devices are attached; the fd's close frees it then.
        let _ = unsafe { sys::ioctl_ptr(self.iommufd.raw_fd(), Ioctl::IommuDestroy, &mut d) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "open of a device node")]
    fn a_missing_dev_iommu_is_a_typed_enoent() {
        let t = tempfile::tempdir().unwrap();
        let e = Iommufd::open(&Sysfs::at(t.path())).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(matches!(e.call(), VfioCall::Open(p) if p.ends_with("dev/iommu")));
    }
}

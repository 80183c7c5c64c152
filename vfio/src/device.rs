//! A VFIO device (from a group, or its cdev), its regions, config space, reset,
//! and its BARs mapped into the process.

use core::ptr::NonNull;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::error::{Ioctl, Result, VfioCall, VfioError, VfioErrorKind};
use super::sys;
use dmaspace::pci::Bdf;

use super::sysfs::Sysfs;

/// `VFIO_DEVICE_GET_INFO`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioDeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions (9 for a PCI function: BARs 0-5, ROM, config, VGA).
    pub num_regions: u32,
    /// Number of interrupt index types.
    pub num_irqs: u32,
}

impl VfioDeviceInfo {
    /// Whether `VFIO_DEVICE_RESET` is supported.
    #[must_use]
    pub fn can_reset(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_RESET != 0
    }

    /// Whether it is a PCI device.
    #[must_use]
    pub fn is_pci(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_PCI != 0
    }
}

/// `VFIO_DEVICE_GET_REGION_INFO`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioRegionInfo {
    /// Region index (BAR number for 0-5; 7 is config space).
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: the BAR is not implemented).
    pub size: u64,
    /// Offset of the region in the device fd (for `pread`/`pwrite`/`mmap`).
    pub offset: u64,
}

impl VfioRegionInfo {
    /// Whether the region may be `mmap`ed.
    #[must_use]
    pub fn mappable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0 && self.size > 0
    }

    /// Whether it can be read and written.
    #[must_use]
    pub fn read_write(&self) -> bool {
        let rw = sys::VFIO_REGION_INFO_FLAG_READ | sys::VFIO_REGION_INFO_FLAG_WRITE;
        self.flags & rw == rw
    }
}

/// A VFIO device fd: a PCI function this process now drives.
#[derive(Debug)]
pub struct VfioDevice {
    file: File,
    addr: Bdf,
    /// The container its group was attached to when it was opened (the
    /// legacy group path); `None` for a cdev.
    container: Option<u64>,
    /// The iommufd the cdev is bound to, and the IOAS it is attached to.
    iommufd: Option<super::Iommufd>,
    ioas: Option<u32>,
}

impl VfioDevice {
    pub(crate) fn from_fd(fd: OwnedFd, addr: Bdf, container: Option<u64>) -> Self {
        Self {
            file: File::from(fd),
            addr,
            container,
            iommufd: None,
            ioas: None,
        }
    }

    /// The id of the container the device's group was attached to.
    pub(crate) fn container_id(&self) -> Option<u64> {
        self.container
    }

    /// Opens the VFIO device cdev of `addr` (`/dev/vfio/devices/vfioN`). Bind it
    /// to an iommufd ([`bind_iommufd`](Self::bind_iommufd)) before anything else:
    /// until then the kernel refuses every other ioctl and `mmap`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::NoSuchDevice`], [`VfioErrorKind::NotBoundToVfio`],
    /// [`VfioErrorKind::NoDeviceCdev`]; the `errno` of `open`.
    pub fn open_cdev(sysfs: &Sysfs, addr: Bdf) -> Result<Self> {
        sysfs.require_vfio_pci(addr)?;
        let path = sysfs.device_cdev(addr)?;
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
            file,
            addr,
            container: None,
            iommufd: None,
            ioas: None,
        })
    }

    /// The function's address.
    #[must_use]
    pub fn address(&self) -> Bdf {
        self.addr
    }

    /// The device fd. Crate-private: every call through it is one of this
    /// crate's checked methods.
    pub(crate) fn raw_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The device fd. It reaches every region of the function (BARs, config space) by `pread`/`pwrite`/`mmap` and takes the device ioctls (reset, bind, attach), none of which this crate sees.
    ///
    /// # Safety
    /// Nothing done through the fd may (a) write a BAR region (a `pwrite`
    /// at a region's offset, or a write through an `mmap` of it) except as
    /// [`MappedBar::write32`]'s contract allows: a register write can
    /// start DMA; (b) write config space except as
    /// [`config_write`](Self::config_write)'s contract allows; (c) bind,
    /// attach, detach or reset the device while a mapper or provider built
    /// for it lives.
    #[must_use]
    pub unsafe fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// `VFIO_DEVICE_GET_INFO`.
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn info(&self) -> Result<VfioDeviceInfo> {
        let mut i = sys::VfioDeviceInfo {
            argsz: sys::argsz::<sys::VfioDeviceInfo>(),
            ..Default::default()
        };
        // SAFETY: VFIO_DEVICE_GET_INFO takes a struct vfio_device_info, argsz set.
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::DeviceGetInfo, &mut i) }?;
        Ok(VfioDeviceInfo {
            flags: i.flags,
            num_regions: i.num_regions,
            num_irqs: i.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
    ///
    /// # Errors
    ///
    /// The ioctl's errno (`EINVAL` for an index past the last region).
    pub fn region_info(&self, index: u32) -> Result<VfioRegionInfo> {
        let mut r = sys::VfioRegionInfo {
            argsz: sys::argsz::<sys::VfioRegionInfo>(),
            index,
            ..Default::default()
        };
        // SAFETY: VFIO_DEVICE_GET_REGION_INFO takes a struct vfio_region_info,
        // argsz set to its size (the kernel writes capabilities only past argsz
        // when argsz is larger; it is not).
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::DeviceGetRegionInfo, &mut r) }?;
        Ok(VfioRegionInfo {
            index,
            flags: r.flags,
            size: r.size,
            offset: r.offset,
        })
    }

    fn config_region(&self, offset: u64, len: usize) -> Result<VfioRegionInfo> {
        let r = self.region_info(sys::VFIO_PCI_CONFIG_REGION_INDEX)?;
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > r.size)
        {
            return Err(VfioError::new(
                VfioCall::Argument,
                VfioErrorKind::OutOfBounds {
                    offset,
                    len: len as u64,
                    size: r.size,
                },
            ));
        }
        Ok(r)
    }

    /// Reads `buf.len()` bytes of config space at `offset` (VFIO's virtualized
    /// view: BARs read as the kernel assigned them).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`]; the `errno` of `pread`.
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let r = self.config_region(offset, buf.len())?;
        self.file
            .read_exact_at(buf, r.offset + offset)
            .map_err(|e| VfioError::os(VfioCall::ConfigRead, e.raw_os_error().unwrap_or(libc::EIO)))
    }

    /// Writes `data` to config space at `offset` (VFIO filters what reaches the
    /// device: it virtualizes BARs and refuses some bits). The benign writes
    /// have safe methods: [`enable_bus_master`](Self::enable_bus_master).
    ///
    /// # Safety
    /// The write must not move a BAR (its base registers) or disable its
    /// decoding (Memory Space Enable) while a provider or a mapping records
    /// it: a peer's mapping of it would then name other MMIO; nor change what
    /// the device may emit (Bus Master Enable, an ATS, PASID or ACS control, a
    /// capability such as an NVMe's CMB location) except in ways the
    /// addresses handed to it already account for.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`]; the `errno` of `pwrite`.
    pub unsafe fn config_write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_config(offset, data)
    }

    fn write_config(&self, offset: u64, data: &[u8]) -> Result<()> {
        let r = self.config_region(offset, data.len())?;
        self.file
            .write_all_at(data, r.offset + offset)
            .map_err(|e| {
                VfioError::os(VfioCall::ConfigWrite, e.raw_os_error().unwrap_or(libc::EIO))
            })
    }

    /// Little-endian `u16` of config space.
    ///
    /// # Errors
    ///
    /// As [`config_read`](Self::config_read).
    pub fn config_read_u16(&self, offset: u64) -> Result<u16> {
        let mut b = [0; 2];
        self.config_read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Little-endian `u32` of config space.
    ///
    /// # Errors
    ///
    /// As [`config_read`](Self::config_read).
    pub fn config_read_u32(&self, offset: u64) -> Result<u32> {
        let mut b = [0; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// The bus address BAR `bar` (0-5) holds, from config space: what a peer puts
    /// on the wire to reach it, and what an NVMe CMB's `CBA` is set to. A 64-bit
    /// BAR takes the next register as its high half.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] for `bar > 5`, an I/O BAR, or a 64-bit BAR
    /// in register 5; the config read's errors.
    pub fn bar_bus_address(&self, bar: u32) -> Result<u64> {
        if bar > 5 {
            return Err(VfioError::invalid("BAR index above 5"));
        }
        let off = 0x10 + 4 * u64::from(bar);
        let lo = self.config_read_u32(off)?;
        if lo & 1 != 0 {
            return Err(VfioError::invalid(
                "an I/O-space BAR has no memory bus address",
            ));
        }
        let base = u64::from(lo & !0xf);
        if (lo >> 1) & 3 == 2 {
            if bar == 5 {
                return Err(VfioError::invalid(
                    "a 64-bit BAR cannot start at register 5",
                ));
            }
            let hi = self.config_read_u32(off + 4)?;
            Ok(base | (u64::from(hi) << 32))
        } else {
            Ok(base)
        }
    }

    /// Sets Memory Space and Bus Master Enable in the command register, so the
    /// device answers on its BARs and may issue DMA. Safe: it only sets the two
    /// bits (no BAR moves; the BARs decode where they were assigned), and
    /// bus mastering by itself starts no transfer: the device starts one when
    /// told through its registers, an `unsafe` write ([`MappedBar::write32`])
    /// whose contract covers the addresses it is given.
    ///
    /// # Errors
    ///
    /// As [`config_write`](Self::config_write).
    pub fn enable_bus_master(&self) -> Result<()> {
        let cmd = self.config_read_u16(0x04)? | 0x2 | 0x4;
        self.write_config(0x04, &cmd.to_le_bytes())
    }

    /// `VFIO_DEVICE_RESET` (function-level or bus reset, as the kernel can).
    ///
    /// Takes `&mut self`: a reset revokes every dma-buf export of the device
    /// ([`export_dma_buf`](Self::export_dma_buf)), and the kernel then tears
    /// down their IOMMU mappings without a word (DMA to them stops, the
    /// range stays occupied). An export borrows the device, and a mapping of
    /// it borrows the export, so none can be live across a reset.
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn reset(&mut self) -> Result<()> {
        sys::ioctl_val(self.raw_fd(), Ioctl::DeviceReset, 0).map(drop)
    }

    /// Maps BAR `index` (region `index`) into the process, shared, read/write.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::RegionNotMappable`] when VFIO does not allow `mmap` of it;
    /// the `errno` of the region query or `mmap`.
    pub fn map_bar(&self, index: u32) -> Result<MappedBar> {
        if index > 5 {
            return Err(VfioError::invalid("BAR index above 5"));
        }
        let r = self.region_info(index)?;
        if !r.mappable() {
            return Err(VfioError::new(
                VfioCall::MmapRegion { index },
                VfioErrorKind::RegionNotMappable { index },
            ));
        }
        let len = usize::try_from(r.size)
            .map_err(|_| VfioError::invalid("BAR larger than the address space"))?;
        let off = libc::off_t::try_from(r.offset)
            .map_err(|_| VfioError::invalid("region offset beyond off_t"))?;
        // SAFETY: a new shared mapping of the device fd at the region's offset, at
        // an address of the kernel's choice; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VfioError::last_os(VfioCall::MmapRegion { index }));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or(VfioError::os(VfioCall::MmapRegion { index }, libc::ENOMEM))?;
        Ok(MappedBar { ptr, len, index })
    }

    /// The device's VFIO cdev fd is bound to `iommufd`: `VFIO_DEVICE_BIND_IOMMUFD`.
    /// Returns the device id iommufd gave it.
    ///
    /// # Errors
    ///
    /// The ioctl's errno (`EBUSY`: already bound, or its group is in use through
    /// the legacy container; `EPERM`: no interrupt remapping).
    pub fn bind_iommufd(&mut self, iommufd: &super::Iommufd) -> Result<u32> {
        let mut b = sys::VfioDeviceBindIommufd {
            argsz: sys::argsz::<sys::VfioDeviceBindIommufd>(),
            flags: 0,
            iommufd: iommufd.raw_fd().as_raw_fd(),
            out_devid: 0,
            // No VFIO_DEVICE_BIND_FLAG_TOKEN: the kernel reads no token.
            token_uuid_ptr: 0,
        };
        // SAFETY: VFIO_DEVICE_BIND_IOMMUFD takes a struct vfio_device_bind_iommufd,
        // argsz set; it holds an fd number and, without the token flag, no pointer.
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::DeviceBindIommufd, &mut b) }?;
        self.iommufd = Some(iommufd.clone());
        Ok(b.out_devid)
    }

    /// Attaches the bound device to `ioas`: `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    /// From here its DMA is translated by that IOAS. Takes `&mut self`: a
    /// mapper built for the device
    /// ([`iommufd_mapper`](crate::backend::iommufd::iommufd_mapper)) borrows
    /// it, so the device cannot move to another IOAS while addresses of the
    /// old one live.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] if the device is not bound to the
    /// iommufd `ioas` belongs to (the kernel would look the IOAS id up in
    /// the other one); the ioctl's errno.
    pub fn attach_ioas(&mut self, ioas: &super::Ioas) -> Result<()> {
        if !self
            .iommufd
            .as_ref()
            .is_some_and(|fd| fd.same(ioas.iommufd()))
        {
            return Err(VfioError::invalid(
                "the device is not bound to the iommufd of this IOAS",
            ));
        }
        let mut a = sys::VfioDeviceAttachIommufdPt {
            argsz: sys::argsz::<sys::VfioDeviceAttachIommufdPt>(),
            flags: 0,
            pt_id: ioas.id(),
            pasid: 0, // read only with VFIO_DEVICE_ATTACH_PASID
        };
        // SAFETY: VFIO_DEVICE_ATTACH_IOMMUFD_PT takes a struct
        // vfio_device_attach_iommufd_pt, argsz set; no pointers.
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::DeviceAttachIommufdPt, &mut a) }?;
        self.ioas = Some(ioas.id());
        Ok(())
    }

    /// Whether the device is attached to `ioas` (bound to its iommufd and
    /// attached with [`attach_ioas`](Self::attach_ioas)).
    pub(crate) fn is_attached_to(&self, ioas: &super::Ioas) -> bool {
        self.ioas == Some(ioas.id())
            && self
                .iommufd
                .as_ref()
                .is_some_and(|fd| fd.same(ioas.iommufd()))
    }
}

/// Builds the NUL-terminated name `VFIO_GROUP_GET_DEVICE_FD` takes.
pub(crate) fn device_name(addr: Bdf) -> CString {
    // A Bdf renders as hex digits, ':' and '.', never NUL.
    CString::new(std::format!("{addr}")).unwrap_or_default()
}

/// A BAR mapped into the process (`mmap` of the VFIO device fd). Register
/// reads are safe; register writes are `unsafe`, because a write can start DMA.
#[derive(Debug)]
pub struct MappedBar {
    ptr: NonNull<u8>,
    len: usize,
    index: u32,
}

// SAFETY: the mapping is owned by this value; every access is a volatile access
// to device memory through a raw pointer, never a Rust reference.
unsafe impl Send for MappedBar {}
// SAFETY: as above.
unsafe impl Sync for MappedBar {}

impl MappedBar {
    /// The BAR number.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: empty BARs are refused).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The process virtual address of the mapping (what VFIO type1's `MAP_DMA`
    /// or iommufd's `IOAS_MAP` would be given to map this BAR for a peer).
    #[must_use]
    pub fn vaddr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn check(&self, offset: usize, len: usize, align: usize) -> Result<*mut u8> {
        if offset.checked_add(len).is_some_and(|e| e <= self.len) && offset % align == 0 {
            // SAFETY: offset + len <= self.len: inside the mapping.
            Ok(unsafe { self.ptr.as_ptr().add(offset) })
        } else {
            Err(VfioError::new(
                VfioCall::BarAccess,
                VfioErrorKind::OutOfBounds {
                    offset: offset as u64,
                    len: len as u64,
                    size: self.len as u64,
                },
            ))
        }
    }

    /// Volatile 8-bit read at `offset` (a virtio `device_status`, an
    /// ISR byte).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR.
    pub fn read8(&self, offset: usize) -> Result<u8> {
        let p = self.check(offset, 1, 1)?;
        // SAFETY: in bounds (checked); device memory, read volatile.
        Ok(unsafe { p.read_volatile() })
    }

    /// Volatile 16-bit read at `offset` (2-aligned).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    pub fn read16(&self, offset: usize) -> Result<u16> {
        let p = self.check(offset, 2, 2)?;
        // SAFETY: in bounds and aligned (checked); device memory, read volatile.
        Ok(unsafe { p.cast::<u16>().read_volatile() })
    }

    /// Volatile 32-bit read at `offset` (4-aligned).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    pub fn read32(&self, offset: usize) -> Result<u32> {
        let p = self.check(offset, 4, 4)?;
        // SAFETY: in bounds and aligned (checked); device memory, read volatile.
        Ok(unsafe { p.cast::<u32>().read_volatile() })
    }

    /// Volatile 64-bit read at `offset` (8-aligned).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    pub fn read64(&self, offset: usize) -> Result<u64> {
        let p = self.check(offset, 8, 8)?;
        // SAFETY: in bounds and aligned (checked); device memory, read volatile.
        Ok(unsafe { p.cast::<u64>().read_volatile() })
    }

    /// Volatile 8-bit write at `offset`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR.
    ///
    /// # Safety
    ///
    /// As [`write32`](Self::write32): a write of `DRIVER_OK` to a virtio
    /// `device_status` starts the device.
    pub unsafe fn write8(&self, offset: usize, value: u8) -> Result<()> {
        let p = self.check(offset, 1, 1)?;
        // SAFETY: in bounds (checked); device memory, written volatile; what
        // the device does next is the caller's contract.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Volatile 16-bit write at `offset` (2-aligned).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    ///
    /// # Safety
    ///
    /// As [`write32`](Self::write32): a 16-bit write to a virtio notify
    /// address is a doorbell.
    pub unsafe fn write16(&self, offset: usize, value: u16) -> Result<()> {
        let p = self.check(offset, 2, 2)?;
        // SAFETY: in bounds and aligned (checked); device memory, written
        // volatile; what the device does next is the caller's contract.
        unsafe { p.cast::<u16>().write_volatile(value) };
        Ok(())
    }

    /// Volatile 32-bit write at `offset` (4-aligned).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    ///
    /// # Safety
    ///
    /// A register write can make the device start DMA (a doorbell, an enable
    /// bit). The caller guarantees that every address the device may use as a
    /// result is one it may access: mapped in its IOMMU domain to memory that
    /// stays alive and is not otherwise in use until the device is done, or, in
    /// no-IOMMU mode, the physical address of such memory.
    pub unsafe fn write32(&self, offset: usize, value: u32) -> Result<()> {
        let p = self.check(offset, 4, 4)?;
        // SAFETY: in bounds and aligned (checked); device memory, written
        // volatile; what the device does next is the caller's contract.
        unsafe { p.cast::<u32>().write_volatile(value) };
        Ok(())
    }

    /// Volatile 64-bit write at `offset` (8-aligned), one access (a device
    /// that wants two 32-bit halves, as virtio's `queue_desc`, takes two
    /// [`write32`](Self::write32)s).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    ///
    /// # Safety
    ///
    /// As [`write32`](Self::write32).
    pub unsafe fn write64(&self, offset: usize, value: u64) -> Result<()> {
        let p = self.check(offset, 8, 8)?;
        // SAFETY: in bounds and aligned (checked); device memory, written
        // volatile; what the device does next is the caller's contract.
        unsafe { p.cast::<u64>().write_volatile(value) };
        Ok(())
    }

    /// Copies `dst.len()` bytes of the BAR at `offset` with 4-byte volatile reads
    /// (`offset` and the length 4-aligned): for device memory such as a CMB.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        if dst.len() % 4 != 0 {
            return Err(VfioError::new(
                VfioCall::BarAccess,
                VfioErrorKind::OutOfBounds {
                    offset: offset as u64,
                    len: dst.len() as u64,
                    size: self.len as u64,
                },
            ));
        }
        self.check(offset, dst.len(), 4)?;
        for (i, chunk) in dst.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.read32(offset + 4 * i)?.to_le_bytes());
        }
        Ok(())
    }

    /// Copies `src` into the BAR at `offset` with 4-byte volatile writes
    /// (`offset` and the length 4-aligned): for device memory such as a CMB.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::OutOfBounds`] when outside the BAR or misaligned.
    ///
    /// # Safety
    ///
    /// As [`write32`](Self::write32): the range must be memory, not registers
    /// whose writes start DMA, or the caller keeps that contract.
    pub unsafe fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<()> {
        if src.len() % 4 != 0 {
            return Err(VfioError::new(
                VfioCall::BarAccess,
                VfioErrorKind::OutOfBounds {
                    offset: offset as u64,
                    len: src.len() as u64,
                    size: self.len as u64,
                },
            ));
        }
        self.check(offset, src.len(), 4)?;
        for (i, chunk) in src.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            // SAFETY: forwarded from this function's contract.
            unsafe { self.write32(offset + 4 * i, v) }?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl MappedBar {
    /// A `MappedBar` over fresh anonymous memory: what a BAR's `mmap` gives,
    /// without a device.
    pub(crate) fn anonymous(len: usize) -> Self {
        // SAFETY: a fresh anonymous mapping; `MappedBar`'s Drop unmaps it.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        MappedBar {
            ptr: NonNull::new(p.cast()).unwrap(),
            len,
            index: 0,
        }
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: [ptr, ptr + len) is the mapping made in `map_bar`, owned here,
        // with no references handed out.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_flags_decode() {
        let r = VfioRegionInfo {
            index: 2,
            flags: 0x7,
            size: 4 << 20,
            offset: 2 << 40,
        };
        assert!(r.mappable() && r.read_write());
        let r = VfioRegionInfo { flags: 0x3, ..r };
        assert!(!r.mappable() && r.read_write());
        let r = VfioRegionInfo {
            flags: 0x7,
            size: 0,
            ..r
        };
        assert!(!r.mappable(), "an unimplemented BAR");
        let i = VfioDeviceInfo {
            flags: 0x3,
            num_regions: 9,
            num_irqs: 5,
        };
        assert!(i.can_reset() && i.is_pci());
    }

    /// A `MappedBar` over anonymous memory (what a BAR's `mmap` gives,
    /// without a device): every width reads back what was written, at the
    /// right byte, and the bounds and alignment checks hold per width.
    #[test]
    #[cfg_attr(miri, ignore = "mmap is a foreign call")]
    fn every_width_is_bounded_aligned_and_little_endian() {
        let len = crate::page_size();
        let bar = MappedBar::anonymous(len);
        // SAFETY: anonymous memory, no device behind it.
        unsafe {
            bar.write64(0, 0x0807_0605_0403_0201).unwrap();
            bar.write8(9, 0xaa).unwrap();
            bar.write16(10, 0xbbcc).unwrap();
        }
        assert_eq!(bar.read8(0).unwrap(), 0x01);
        assert_eq!(bar.read8(7).unwrap(), 0x08);
        assert_eq!(bar.read16(2).unwrap(), 0x0403);
        assert_eq!(bar.read32(4).unwrap(), 0x0807_0605);
        assert_eq!(bar.read32(8).unwrap(), 0xbbcc_aa00);
        assert_eq!(bar.read8(len - 1).unwrap(), 0);
        let oob =
            |r: Result<()>| matches!(r.unwrap_err().kind(), VfioErrorKind::OutOfBounds { .. });
        assert!(oob(bar.read8(len).map(drop)));
        assert!(oob(bar.read16(1).map(drop)), "misaligned");
        assert!(oob(bar.read16(len - 1).map(drop)));
        assert!(oob(bar.read64(4).map(drop)), "misaligned");
        // SAFETY: as above; each is refused before any access.
        unsafe {
            assert!(oob(bar.write8(len, 0)));
            assert!(oob(bar.write16(3, 0)));
            assert!(oob(bar.write64(len - 8 + 4, 0)));
            assert!(oob(bar.write8(usize::MAX, 0)));
        }
    }

    #[test]
    fn device_names_are_c_strings() {
        let a: Bdf = "0000:00:03.0".parse().unwrap();
        assert_eq!(device_name(a).as_bytes_with_nul(), b"0000:00:03.0\0");
    }

    #[test]
    #[cfg_attr(miri, ignore = "open of a device node")]
    fn a_cdev_of_a_missing_or_foreign_device_is_refused_before_open() {
        let t = tempfile::tempdir().unwrap();
        let s = Sysfs::at(t.path());
        let a: Bdf = "0000:00:09.0".parse().unwrap();
        let e = VfioDevice::open_cdev(&s, a).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::NoSuchDevice { .. }));
    }
}

//! The legacy VFIO path: a container (`/dev/vfio/vfio`) with the type1 IOMMU
//! or no-IOMMU mode, and groups (`/dev/vfio/N`, `/dev/vfio/noiommu-N`).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use super::device::{MappedBar, VfioDevice, device_name};
use super::error::{Ioctl, Result, VfioCall, VfioError, VfioErrorKind};
use super::mem::{PinnedMemory, page_size};
use super::sys;
use super::sysfs::{PciAddress, Sysfs, VfioGroupNode};

/// The IOMMU model of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfioIommuType {
    /// `VFIO_TYPE1v2_IOMMU`: a real IOMMU; DMA addresses are IOVAs the process
    /// maps with [`VfioContainer::map_dma`].
    Type1v2,
    /// `VFIO_NOIOMMU_IOMMU`: no translation; DMA addresses are physical
    /// addresses ([`PinnedMemory::phys_addr`]). Needs `vfio.enable_unsafe_noiommu_mode=1`
    /// and `CAP_SYS_RAWIO`.
    NoIommu,
}

impl VfioIommuType {
    const fn raw(self) -> u32 {
        match self {
            Self::Type1v2 => sys::VFIO_TYPE1V2_IOMMU,
            Self::NoIommu => sys::VFIO_NOIOMMU_IOMMU,
        }
    }
}

fn open_rw(path: PathBuf) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| VfioError::os(VfioCall::Open(path), e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Checks a DMA mapping's arguments the way type1 and iommufd would, before the call.
pub(crate) fn check_map_args(vaddr: u64, len: u64, iova: u64) -> Result<()> {
    let page = page_size() as u64;
    if len == 0 {
        return Err(VfioError::invalid("a DMA mapping of zero bytes"));
    }
    if vaddr % page != 0 || len % page != 0 || iova % page != 0 {
        return Err(VfioError::invalid(
            "vaddr, length and IOVA must be page-aligned",
        ));
    }
    if iova.checked_add(len - 1).is_none() || vaddr.checked_add(len - 1).is_none() {
        return Err(VfioError::invalid(
            "the range wraps around the address space",
        ));
    }
    Ok(())
}

/// A VFIO container: one IOMMU context shared by the groups attached to it.
///
/// ```no_run
/// use dmaspace::linux::{VfioContainer, PinnedMemory, VfioGroup, VfioIommuType, Sysfs};
/// let sysfs = Sysfs::live();
/// let bdf = "0000:00:03.0".parse()?;
/// let mut c = VfioContainer::open(&sysfs)?;
/// let g = VfioGroup::open_for_device(&sysfs, bdf)?;
/// g.set_container(&c)?;
/// c.set_iommu(VfioIommuType::Type1v2)?;
/// let dev = g.device(bdf)?;
/// let mem = PinnedMemory::new(1 << 20)?;
/// c.map_dma(&mem, 0x1000_0000)?; // the device now reaches `mem` at IOVA 0x1000_0000
/// # Ok::<(), dmaspace::linux::VfioError>(())
/// ```
#[derive(Debug)]
pub struct VfioContainer {
    file: File,
    iommu: Option<VfioIommuType>,
}

impl VfioContainer {
    /// Opens `/dev/vfio/vfio` and checks the API version.
    ///
    /// # Errors
    ///
    /// The `errno` of `open` (`ENOENT`: VFIO or its container support is missing);
    /// [`VfioErrorKind::ApiVersion`].
    pub fn open(sysfs: &Sysfs) -> Result<Self> {
        let file = open_rw(sysfs.path("dev/vfio/vfio"))?;
        let v = sys::ioctl_val(file.as_fd(), Ioctl::GetApiVersion, 0)?;
        if v != sys::VFIO_API_VERSION {
            return Err(VfioError::new(
                VfioCall::Ioctl(Ioctl::GetApiVersion),
                VfioErrorKind::ApiVersion { got: v },
            ));
        }
        Ok(Self { file, iommu: None })
    }

    /// The container fd.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether the kernel offers IOMMU model `t` (`VFIO_CHECK_EXTENSION`).
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn has_extension(&self, t: VfioIommuType) -> Result<bool> {
        Ok(sys::ioctl_val(
            self.fd(),
            Ioctl::CheckExtension,
            libc::c_ulong::from(t.raw()),
        )? > 0)
    }

    /// Sets the IOMMU model (`VFIO_SET_IOMMU`); at least one group must be attached.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::Unsupported`] when the model is not offered; the ioctl's errno.
    pub fn set_iommu(&mut self, t: VfioIommuType) -> Result<()> {
        if !self.has_extension(t)? {
            return Err(VfioError::new(
                VfioCall::Ioctl(Ioctl::CheckExtension),
                VfioErrorKind::Unsupported {
                    what: match t {
                        VfioIommuType::Type1v2 => "VFIO_TYPE1v2_IOMMU (CONFIG_VFIO_IOMMU_TYPE1)",
                        VfioIommuType::NoIommu => {
                            "VFIO_NOIOMMU_IOMMU (CONFIG_VFIO_NOIOMMU and vfio.enable_unsafe_noiommu_mode=1)"
                        }
                    },
                },
            ));
        }
        sys::ioctl_val(self.fd(), Ioctl::SetIommu, libc::c_ulong::from(t.raw()))?;
        self.iommu = Some(t);
        Ok(())
    }

    /// The IOMMU model set, if any.
    #[must_use]
    pub fn iommu(&self) -> Option<VfioIommuType> {
        self.iommu
    }

    fn require_type1(&self) -> Result<()> {
        match self.iommu {
            Some(VfioIommuType::Type1v2) => Ok(()),
            _ => Err(VfioError::invalid(
                "DMA mapping needs a container with the type1 IOMMU set",
            )),
        }
    }

    fn map_raw(&self, vaddr: u64, len: u64, iova: u64) -> Result<()> {
        self.require_type1()?;
        check_map_args(vaddr, len, iova)?;
        let mut m = sys::VfioIommuType1DmaMap {
            argsz: sys::argsz::<sys::VfioIommuType1DmaMap>(),
            flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size: len,
        };
        // SAFETY: VFIO_IOMMU_MAP_DMA takes a struct vfio_iommu_type1_dma_map,
        // argsz set; the kernel reads it and pins the user pages it names.
        unsafe { sys::ioctl_ptr(self.fd(), Ioctl::IommuMapDma, &mut m) }.map(drop)
    }

    /// Maps all of `mem` at `iova`, readable and writable by the devices of this
    /// container (`VFIO_IOMMU_MAP_DMA`; the kernel pins the pages).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] (no type1 IOMMU set, unaligned, wrapping)
    /// before the call; the ioctl's errno (`EEXIST` overlap, `ENOSPC`, ...).
    pub fn map_dma(&self, mem: &PinnedMemory, iova: u64) -> Result<()> {
        self.map_raw(mem.vaddr(), mem.len() as u64, iova)
    }

    /// Maps another device's BAR (its `mmap`) at `iova` for the devices of this
    /// container: peer-to-peer through the IOMMU. Type1 accepts a `VM_PFNMAP`
    /// range (it follows the PFNs without pinning).
    ///
    /// # Errors
    ///
    /// As [`map_dma`](Self::map_dma).
    pub fn map_bar(&self, bar: &MappedBar, iova: u64) -> Result<()> {
        self.map_raw(bar.vaddr(), bar.len() as u64, iova)
    }

    /// Unmaps `[iova, iova + len)` (`VFIO_IOMMU_UNMAP_DMA`); returns the bytes
    /// unmapped (0 when nothing was mapped there).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] before the call; the ioctl's errno.
    pub fn unmap_dma(&self, iova: u64, len: u64) -> Result<u64> {
        self.require_type1()?;
        check_map_args(0, len, iova)?;
        let mut u = sys::VfioIommuType1DmaUnmap {
            argsz: sys::argsz::<sys::VfioIommuType1DmaUnmap>(),
            flags: 0,
            iova,
            size: len,
        };
        // SAFETY: VFIO_IOMMU_UNMAP_DMA takes a struct vfio_iommu_type1_dma_unmap,
        // argsz set, no bitmap flag (so no data[] is read).
        unsafe { sys::ioctl_ptr(self.fd(), Ioctl::IommuUnmapDma, &mut u) }?;
        Ok(u.size)
    }
}

/// `VFIO_GROUP_GET_STATUS`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioGroupStatus {
    /// Every function of the group is bound to vfio-pci (or to a driver VFIO
    /// tolerates, such as `pcieport`).
    pub viable: bool,
    /// A container is set.
    pub container_set: bool,
}

/// A VFIO group node: `/dev/vfio/N`, or `/dev/vfio/noiommu-N` in no-IOMMU mode.
#[derive(Debug)]
pub struct VfioGroup {
    file: File,
    node: VfioGroupNode,
}

impl VfioGroup {
    /// Opens the group of `addr`, after checking in sysfs that the function
    /// exists and is bound to vfio-pci, and checks that the group is viable.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::NoSuchDevice`], [`VfioErrorKind::NotBoundToVfio`],
    /// [`VfioErrorKind::NoIommuGroup`] before any open; the `errno` of `open`;
    /// [`VfioErrorKind::GroupNotViable`].
    pub fn open_for_device(sysfs: &Sysfs, addr: PciAddress) -> Result<Self> {
        sysfs.require_vfio_pci(addr)?;
        let node = sysfs.group(addr)?;
        let file = open_rw(node.path.clone())?;
        let g = Self { file, node };
        if !g.status()?.viable {
            return Err(VfioError::new(
                VfioCall::Ioctl(Ioctl::GroupGetStatus),
                VfioErrorKind::GroupNotViable {
                    group: g.node.name(),
                },
            ));
        }
        Ok(g)
    }

    /// The group's node.
    #[must_use]
    pub fn node(&self) -> &VfioGroupNode {
        &self.node
    }

    /// The group fd.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// `VFIO_GROUP_GET_STATUS`.
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn status(&self) -> Result<VfioGroupStatus> {
        let mut s = sys::VfioGroupStatus {
            argsz: sys::argsz::<sys::VfioGroupStatus>(),
            flags: 0,
        };
        // SAFETY: VFIO_GROUP_GET_STATUS takes a struct vfio_group_status, argsz set.
        unsafe { sys::ioctl_ptr(self.fd(), Ioctl::GroupGetStatus, &mut s) }?;
        Ok(VfioGroupStatus {
            viable: s.flags & sys::VFIO_GROUP_FLAGS_VIABLE != 0,
            container_set: s.flags & sys::VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
        })
    }

    /// Attaches the group to `container` (`VFIO_GROUP_SET_CONTAINER`).
    ///
    /// # Errors
    ///
    /// The ioctl's errno (`EPERM` with an IOMMU that has no interrupt remapping).
    pub fn set_container(&self, container: &VfioContainer) -> Result<()> {
        let mut fd: libc::c_int = container.fd().as_raw_fd();
        // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to an int holding the
        // container fd, which is open for the duration of the call.
        unsafe { sys::ioctl_ptr(self.fd(), Ioctl::GroupSetContainer, &mut fd) }.map(drop)
    }

    /// Opens the device `addr` of this group (`VFIO_GROUP_GET_DEVICE_FD`); the
    /// group must have a container with an IOMMU model set.
    ///
    /// # Errors
    ///
    /// The ioctl's errno (`EPERM`: no IOMMU set; `EINVAL`: not in this group).
    pub fn device(&self, addr: PciAddress) -> Result<VfioDevice> {
        let name = device_name(addr);
        let p = name.as_ptr().cast_mut();
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a NUL-terminated device name; the
        // kernel only reads it (the `*mut` is the ioctl's signature, not a write).
        let fd = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                Ioctl::GroupGetDeviceFd.request() as libc::Ioctl,
                p,
            )
        };
        if fd < 0 {
            return Err(VfioError::last_os(VfioCall::Ioctl(Ioctl::GroupGetDeviceFd)));
        }
        // SAFETY: a non-negative return is a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(VfioDevice::from_fd(fd, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_arguments_are_checked_before_the_call() {
        check_map_args(0x1000, 0x2000, 0x10_0000).unwrap();
        for (v, l, i) in [
            (0x1000, 0, 0x1000),
            (0x1001, 0x1000, 0x1000),
            (0x1000, 0x1001, 0x1000),
            (0x1000, 0x1000, 0x1800),
            (0x1000, 0x2000, !0xfff),
        ] {
            let e = check_map_args(v, l, i).unwrap_err();
            assert_eq!(e.call(), &VfioCall::Argument, "{v:#x} {l:#x} {i:#x}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "open of a device node")]
    fn a_group_of_a_device_on_another_driver_is_refused_before_open() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("sys/bus/pci/devices/0000:00:05.0");
        std::fs::create_dir_all(&d).unwrap();
        symlink("../../../bus/pci/drivers/nvme", d.join("driver")).unwrap();
        let s = Sysfs::at(t.path());
        let e = VfioGroup::open_for_device(&s, "0000:00:05.0".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("still bound to nvme"), "{e}");
        let e = VfioContainer::open(&s).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.meaning().contains("no such node"));
    }
}

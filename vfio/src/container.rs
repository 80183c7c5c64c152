//! The legacy VFIO path: a container (`/dev/vfio/vfio`) with the type1 IOMMU
//! or no-IOMMU mode, and groups (`/dev/vfio/N`, `/dev/vfio/noiommu-N`).

use core::sync::atomic::{AtomicU64, Ordering};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::vec::Vec;

use super::device::{MappedBar, VfioDevice, device_name};
use super::error::{Ioctl, Result, VfioCall, VfioError, VfioErrorKind};
use super::mem::{PinnedMemory, page_size};
use super::sys;
use dmaspace::pci::Bdf;

use super::sysfs::{Sysfs, VfioGroupNode};

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
/// use dmaspace_vfio::{VfioContainer, PinnedMemory, VfioGroup, VfioIommuType, Sysfs};
/// let sysfs = Sysfs::live();
/// let bdf = dmaspace::pci::Bdf::new(0, 0, 3, 0);
/// let mut c = VfioContainer::open(&sysfs)?;
/// let g = VfioGroup::open_for_device(&sysfs, bdf)?;
/// g.set_container(&c)?;
/// c.set_iommu(VfioIommuType::Type1v2)?;
/// let dev = g.device(bdf)?;
/// let mem = PinnedMemory::new(1 << 20)?;
/// // SAFETY: no domain manages this container; the range is this example's.
/// unsafe { c.map_dma(&mem, 0x1000_0000)? }; // the device now reaches `mem` at IOVA 0x1000_0000
/// # Ok::<(), dmaspace_vfio::VfioError>(())
/// ```
#[derive(Debug)]
pub struct VfioContainer {
    file: File,
    iommu: Option<VfioIommuType>,
    /// This process's name for the container (never 0, never reused): what
    /// a group records when attached, and its devices carry.
    id: u64,
}

/// The next container's id.
static NEXT_CONTAINER: AtomicU64 = AtomicU64::new(1);

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
        Ok(Self {
            file,
            iommu: None,
            id: NEXT_CONTAINER.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The container fd. Crate-private: every call through it is one of this
    /// crate's checked methods.
    pub(crate) fn raw_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The container fd. It takes `VFIO_IOMMU_MAP_DMA`/`UNMAP_DMA` on any range, under any domain made over the container.
    ///
    /// # Safety
    /// Nothing done through the fd may map or unmap an IOVA range that a
    /// domain over this container manages (see
    /// [`unmap_dma`](Self::unmap_dma)), nor change the IOMMU model.
    #[must_use]
    pub unsafe fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Whether the kernel offers IOMMU model `t` (`VFIO_CHECK_EXTENSION`).
    ///
    /// # Errors
    ///
    /// The ioctl's errno.
    pub fn has_extension(&self, t: VfioIommuType) -> Result<bool> {
        Ok(sys::ioctl_val(
            self.raw_fd(),
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
        sys::ioctl_val(self.raw_fd(), Ioctl::SetIommu, libc::c_ulong::from(t.raw()))?;
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
        self.map_vaddr(vaddr, len, iova, true, true)
    }

    /// `VFIO_IOMMU_MAP_DMA` of any virtual range, readable and/or writable by
    /// the devices. Crate-private: the callers vouch for the memory (the type1
    /// backend's `map` is `unsafe`).
    pub(crate) fn map_vaddr(
        &self,
        vaddr: u64,
        len: u64,
        iova: u64,
        device_reads: bool,
        device_writes: bool,
    ) -> Result<()> {
        self.require_type1()?;
        type1_map(self.raw_fd(), vaddr, len, iova, device_reads, device_writes)
    }

    /// Maps all of `mem` at `iova`, readable and writable by the devices of this
    /// container (`VFIO_IOMMU_MAP_DMA`; the kernel pins the pages).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] (no type1 IOMMU set, unaligned, wrapping)
    /// before the call; the ioctl's errno (`EEXIST` overlap, `ENOSPC`, ...).
    ///
    /// # Safety
    ///
    /// The IOVA range is the caller's: no [`IommuDomain`](dmaspace::iommu::IommuDomain)
    /// over this container (and nothing else the program relies on) has its
    /// mappings there. A domain hands out device addresses it believes map
    /// its own buffers; a map or an unmap under it would point them at other
    /// memory, or at none.
    pub unsafe fn map_dma(&self, mem: &PinnedMemory, iova: u64) -> Result<()> {
        self.map_raw(mem.vaddr(), mem.len() as u64, iova)
    }

    /// Maps another device's BAR (its `mmap`) at `iova` for the devices of this
    /// container: peer-to-peer through the IOMMU. Type1 accepts a `VM_PFNMAP`
    /// range (it follows the PFNs without pinning).
    ///
    /// # Errors
    ///
    /// As [`map_dma`](Self::map_dma).
    ///
    /// # Safety
    ///
    /// As [`map_dma`](Self::map_dma).
    pub unsafe fn map_bar(&self, bar: &MappedBar, iova: u64) -> Result<()> {
        self.map_raw(bar.vaddr(), bar.len() as u64, iova)
    }

    /// What the type1 IOMMU of this container offers (`VFIO_IOMMU_GET_INFO`):
    /// its page sizes, the IOVA ranges devices may use (the aperture less the
    /// reserved regions of every attached group, such as x86's MSI window),
    /// and how many more mappings it accepts. Attach every group first: a
    /// group attached later may reserve more.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] without a type1 IOMMU set, or when the
    /// kernel's answer is malformed; the ioctl's errno.
    pub fn iommu_info(&self) -> Result<VfioIommuInfo> {
        self.require_type1()?;
        type1_info(self.raw_fd())
    }

    /// Unmaps `[iova, iova + len)` (`VFIO_IOMMU_UNMAP_DMA`); returns the bytes
    /// unmapped (0 when nothing was mapped there).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::InvalidArgument`] before the call; the ioctl's errno.
    ///
    /// # Safety
    ///
    /// As [`map_dma`](Self::map_dma).
    pub unsafe fn unmap_dma(&self, iova: u64, len: u64) -> Result<u64> {
        self.require_type1()?;
        // SAFETY: forwarded from this function's contract.
        unsafe { type1_unmap(self.raw_fd(), iova, len) }
    }
}

/// `VFIO_IOMMU_MAP_DMA` of any virtual range on the type1 container `fd`,
/// readable and/or writable by the devices. Crate-private: the callers vouch
/// for the memory (the backends' `map` is `unsafe`).
pub(crate) fn type1_map(
    fd: BorrowedFd<'_>,
    vaddr: u64,
    len: u64,
    iova: u64,
    device_reads: bool,
    device_writes: bool,
) -> Result<()> {
    check_map_args(vaddr, len, iova)?;
    let flag = |on: bool, f: u32| if on { f } else { 0 };
    let mut m = sys::VfioIommuType1DmaMap {
        argsz: sys::argsz::<sys::VfioIommuType1DmaMap>(),
        flags: flag(device_reads, sys::VFIO_DMA_MAP_FLAG_READ)
            | flag(device_writes, sys::VFIO_DMA_MAP_FLAG_WRITE),
        vaddr,
        iova,
        size: len,
    };
    // SAFETY: VFIO_IOMMU_MAP_DMA takes a struct vfio_iommu_type1_dma_map,
    // argsz set; the kernel reads it and pins the user pages it names.
    unsafe { sys::ioctl_ptr(fd, Ioctl::IommuMapDma, &mut m) }.map(drop)
}

/// `VFIO_IOMMU_GET_INFO` on the type1 container `fd`.
pub(crate) fn type1_info(fd: BorrowedFd<'_>) -> Result<VfioIommuInfo> {
    let fixed = core::mem::size_of::<sys::VfioIommuType1Info>();
    let mut words = 64usize; // 512 bytes: the fixed part and a few ranges
    for _ in 0..4 {
        let mut buf = std::vec![0u64; words];
        let argsz = u32::try_from(words * 8).unwrap_or(u32::MAX);
        buf[0] = u64::from(argsz); // argsz (low half), flags = 0
        // SAFETY: VFIO_IOMMU_GET_INFO takes a struct vfio_iommu_type1_info
        // at the start of the buffer, argsz set to the buffer's size; the
        // kernel writes at most argsz bytes.
        unsafe { sys::ioctl_buf(fd, Ioctl::IommuGetInfo, &mut buf) }?;
        let bytes = zerocopy::IntoBytes::as_bytes(buf.as_slice());
        let need = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if need > bytes.len() && need <= (1 << 20) {
            words = need.div_ceil(8).max(fixed / 8);
            continue;
        }
        return parse_type1_info(bytes);
    }
    Err(VfioError::new(
        VfioCall::Ioctl(Ioctl::IommuGetInfo),
        VfioErrorKind::InvalidArgument {
            what: "VFIO_IOMMU_GET_INFO kept asking for a larger buffer",
        },
    ))
}

/// `VFIO_IOMMU_UNMAP_DMA` on the type1 container `fd`; the bytes unmapped.
///
/// # Safety
/// As [`VfioContainer::unmap_dma`].
pub(crate) unsafe fn type1_unmap(fd: BorrowedFd<'_>, iova: u64, len: u64) -> Result<u64> {
    check_map_args(0, len, iova)?;
    let mut u = sys::VfioIommuType1DmaUnmap {
        argsz: sys::argsz::<sys::VfioIommuType1DmaUnmap>(),
        flags: 0,
        iova,
        size: len,
        ..Default::default()
    };
    // SAFETY: VFIO_IOMMU_UNMAP_DMA takes a struct vfio_iommu_type1_dma_unmap,
    // argsz set, no bitmap flag (so no data[] is read).
    unsafe { sys::ioctl_ptr(fd, Ioctl::IommuUnmapDma, &mut u) }?;
    Ok(u.size)
}

/// What `VFIO_IOMMU_GET_INFO` says about a type1 container
/// ([`VfioContainer::iommu_info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioIommuInfo {
    /// Bitmap of the IOMMU page sizes (bit `n`: 2^n bytes); 0 if not reported.
    pub page_sizes: u64,
    /// The IOVA ranges devices may use, `(first, last)` inclusive, in
    /// ascending order; `None` when the kernel reports no range capability
    /// (then every IOVA is valid).
    pub iova_ranges: Option<Vec<(u64, u64)>>,
    /// How many more DMA mappings the container accepts (the module's
    /// `dma_entry_limit` less the live ones), if reported.
    pub dma_avail: Option<u32>,
}

impl VfioIommuInfo {
    /// The smallest IOMMU page size, if reported.
    ///
    /// ```
    /// use dmaspace_vfio::VfioIommuInfo;
    /// let i = VfioIommuInfo { page_sizes: 0x4020_1000, iova_ranges: None, dma_avail: None };
    /// assert_eq!(i.min_page_size(), Some(4096));
    /// ```
    #[must_use]
    pub fn min_page_size(&self) -> Option<u64> {
        (self.page_sizes != 0).then(|| 1u64 << self.page_sizes.trailing_zeros())
    }
}

/// Decodes `VFIO_IOMMU_GET_INFO`'s answer: the fixed part, then the
/// capability chain (each capability's `next` is an offset from the start of
/// the buffer; 0 ends the chain). Unknown capabilities are skipped; a chain
/// that leaves the answer, goes backwards or is truncated is an error.
pub(crate) fn parse_type1_info(buf: &[u8]) -> Result<VfioIommuInfo> {
    use sys::type1_info as off;
    let bad = |what: &'static str| {
        VfioError::new(
            VfioCall::Ioctl(Ioctl::IommuGetInfo),
            VfioErrorKind::InvalidArgument { what },
        )
    };
    let u16_at = |o: usize| buf.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        buf.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        buf.get(o..o + 8)
            .map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let fixed = core::mem::size_of::<sys::VfioIommuType1Info>();
    let argsz =
        u32_at(0).ok_or(bad("VFIO_IOMMU_GET_INFO answer shorter than its header"))? as usize;
    let flags = u32_at(4).ok_or(bad("VFIO_IOMMU_GET_INFO answer shorter than its header"))?;
    if argsz < fixed || buf.len() < fixed {
        return Err(bad("VFIO_IOMMU_GET_INFO answer shorter than its header"));
    }
    let end = argsz.min(buf.len());
    let page_sizes = if flags & sys::VFIO_IOMMU_INFO_PGSIZES != 0 {
        u64_at(off::PGSIZES).unwrap_or(0)
    } else {
        0
    };
    let mut info = VfioIommuInfo {
        page_sizes,
        iova_ranges: None,
        dma_avail: None,
    };
    if flags & sys::VFIO_IOMMU_INFO_CAPS == 0 {
        return Ok(info);
    }
    let mut at = u32_at(off::CAP_OFFSET).unwrap_or(0) as usize;
    let mut seen = 0;
    while at != 0 {
        seen += 1;
        if seen > 64 || at < fixed || at + off::CAP_HEADER > end {
            return Err(bad(
                "VFIO_IOMMU_GET_INFO capability chain leaves the answer",
            ));
        }
        let id = u16_at(at + off::CAP_ID).unwrap_or(0);
        let next = u32_at(at + off::CAP_NEXT).unwrap_or(0) as usize;
        match id {
            sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                let n = u32_at(at + off::NR_IOVAS)
                    .filter(|_| at + off::IOVA_RANGES <= end)
                    .ok_or(bad("VFIO_IOMMU_GET_INFO IOVA range capability truncated"))?
                    as usize;
                let first = at + off::IOVA_RANGES;
                if n > (end - first) / off::RANGE {
                    return Err(bad("VFIO_IOMMU_GET_INFO IOVA range capability truncated"));
                }
                let mut ranges = Vec::with_capacity(n);
                for i in 0..n {
                    let o = first + off::RANGE * i;
                    let (a, b) = (
                        u64_at(o + off::RANGE_START).unwrap_or(0),
                        u64_at(o + off::RANGE_END).unwrap_or(0),
                    );
                    if b < a {
                        return Err(bad("VFIO_IOMMU_GET_INFO IOVA range ends before it starts"));
                    }
                    ranges.push((a, b));
                }
                ranges.sort_unstable();
                info.iova_ranges = Some(ranges);
            }
            sys::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => {
                info.dma_avail = Some(
                    u32_at(at + off::DMA_AVAIL)
                        .filter(|_| at + off::DMA_AVAIL + 4 <= end)
                        .ok_or(bad("VFIO_IOMMU_GET_INFO DMA capability truncated"))?,
                );
            }
            _ => {}
        }
        if next != 0 && next <= at {
            return Err(bad("VFIO_IOMMU_GET_INFO capability chain goes backwards"));
        }
        at = next;
    }
    Ok(info)
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
    /// The id of the container it was attached to (0: none).
    container: AtomicU64,
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
    pub fn open_for_device(sysfs: &Sysfs, addr: Bdf) -> Result<Self> {
        sysfs.require_vfio_pci(addr)?;
        let node = sysfs.group(addr)?;
        let file = open_rw(node.path.clone())?;
        let g = Self {
            file,
            node,
            container: AtomicU64::new(0),
        };
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

    /// The group fd. Crate-private: every call through it is one of this
    /// crate's checked methods.
    pub(crate) fn raw_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The group fd. It hands out new device fds (`VFIO_GROUP_GET_DEVICE_FD`) and moves the group between containers.
    ///
    /// # Safety
    /// Nothing done through the fd may unset or change the group's
    /// container while a domain over it or a device of the group lives,
    /// nor use a device fd it hands out other than as
    /// [`VfioDevice::fd`]'s contract allows.
    #[must_use]
    pub unsafe fn fd(&self) -> BorrowedFd<'_> {
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
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::GroupGetStatus, &mut s) }?;
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
        let mut fd: libc::c_int = container.raw_fd().as_raw_fd();
        // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to an int holding the
        // container fd, which is open for the duration of the call.
        unsafe { sys::ioctl_ptr(self.raw_fd(), Ioctl::GroupSetContainer, &mut fd) }?;
        self.container.store(container.id(), Ordering::Relaxed);
        Ok(())
    }

    /// Opens the device `addr` of this group (`VFIO_GROUP_GET_DEVICE_FD`); the
    /// group must have a container with an IOMMU model set.
    ///
    /// # Errors
    ///
    /// The ioctl's errno (`EPERM`: no IOMMU set; `EINVAL`: not in this group).
    pub fn device(&self, addr: Bdf) -> Result<VfioDevice> {
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
        let container = self.container.load(Ordering::Relaxed);
        Ok(VfioDevice::from_fd(
            fd,
            addr,
            (container != 0).then_some(container),
        ))
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

    /// A `VFIO_IOMMU_GET_INFO` answer: fixed part, then the capabilities
    /// given as (id, payload) in order.
    fn info_answer(flags: u32, pgsizes: u64, caps: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[4..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..16].copy_from_slice(&pgsizes.to_ne_bytes());
        if !caps.is_empty() {
            b[16..20].copy_from_slice(&24u32.to_ne_bytes());
        }
        for (i, (id, payload)) in caps.iter().enumerate() {
            let at = b.len();
            let next = if i + 1 == caps.len() {
                0
            } else {
                at + 8 + payload.len()
            };
            b.extend_from_slice(&id.to_ne_bytes());
            b.extend_from_slice(&1u16.to_ne_bytes());
            b.extend_from_slice(&(next as u32).to_ne_bytes());
            b.extend_from_slice(payload);
        }
        let argsz = b.len() as u32;
        b[0..4].copy_from_slice(&argsz.to_ne_bytes());
        b
    }

    fn ranges_payload(r: &[(u64, u64)]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&(r.len() as u32).to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        for (a, b) in r {
            p.extend_from_slice(&a.to_ne_bytes());
            p.extend_from_slice(&b.to_ne_bytes());
        }
        p
    }

    #[test]
    fn iommu_info_answers_decode() {
        // What Linux 6.12's intel-iommu gives with aw-bits=48: the MSI window cut out.
        let ranges = [(0xfef0_0000, 0xffff_ffff_ffff), (0, 0xfedf_ffff)];
        let caps = [
            (99, vec![1, 2, 3, 4]), // unknown: skipped
            (
                sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
                ranges_payload(&ranges),
            ),
            (
                sys::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
                65535u32.to_ne_bytes().to_vec(),
            ),
        ];
        let b = info_answer(3, 0x40_201000, &caps);
        let i = parse_type1_info(&b).unwrap();
        assert_eq!(i.min_page_size(), Some(4096));
        assert_eq!(
            i.iova_ranges,
            Some(vec![(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)])
        );
        assert_eq!(i.dma_avail, Some(65535));
        // No capabilities (an old kernel): every IOVA, page sizes only.
        let i = parse_type1_info(&info_answer(1, 0x1000, &[])).unwrap();
        assert_eq!(
            (i.iova_ranges, i.dma_avail, i.page_sizes),
            (None, None, 0x1000)
        );
    }

    #[test]
    fn malformed_iommu_info_is_an_error_not_a_panic() {
        let caps = [(
            sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
            ranges_payload(&[(0, 0xffff)]),
        )];
        let good = info_answer(3, 0x1000, &caps);
        // Truncated anywhere: an error or a shorter answer, never a panic.
        for cut in 0..good.len() {
            let _ = parse_type1_info(&good[..cut]);
        }
        // A range count larger than the answer.
        let mut b = good.clone();
        b[32..36].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_type1_info(&b).is_err());
        // A chain that loops back.
        let mut b = good.clone();
        b[28..32].copy_from_slice(&24u32.to_ne_bytes());
        assert!(parse_type1_info(&b).is_err());
        // A range that ends before it starts.
        let b = info_answer(
            3,
            0x1000,
            &[(
                sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
                ranges_payload(&[(0x2000, 0x1000)]),
            )],
        );
        assert!(parse_type1_info(&b).is_err());
        // A cap offset inside the fixed part.
        let mut b = good;
        b[16..20].copy_from_slice(&8u32.to_ne_bytes());
        assert!(parse_type1_info(&b).is_err());
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

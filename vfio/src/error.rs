//! Typed errors of the VFIO / iommufd layer: which call, which errno, what it means.

use std::fmt;
use std::path::PathBuf;
use std::string::String;

/// An ioctl of the VFIO or iommufd interface, by its uapi name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ioctl {
    /// `VFIO_GET_API_VERSION` on the container.
    GetApiVersion,
    /// `VFIO_CHECK_EXTENSION` on the container.
    CheckExtension,
    /// `VFIO_SET_IOMMU` on the container.
    SetIommu,
    /// `VFIO_GROUP_GET_STATUS` on a group.
    GroupGetStatus,
    /// `VFIO_GROUP_SET_CONTAINER` on a group.
    GroupSetContainer,
    /// `VFIO_GROUP_GET_DEVICE_FD` on a group.
    GroupGetDeviceFd,
    /// `VFIO_DEVICE_GET_INFO` on a device.
    DeviceGetInfo,
    /// `VFIO_DEVICE_GET_REGION_INFO` on a device.
    DeviceGetRegionInfo,
    /// `VFIO_DEVICE_RESET` on a device.
    DeviceReset,
    /// `VFIO_IOMMU_GET_INFO` on a type1 container.
    IommuGetInfo,
    /// `VFIO_IOMMU_MAP_DMA` on a type1 container.
    IommuMapDma,
    /// `VFIO_IOMMU_UNMAP_DMA` on a type1 container.
    IommuUnmapDma,
    /// `VFIO_DEVICE_BIND_IOMMUFD` on a device cdev.
    DeviceBindIommufd,
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` on a device cdev.
    DeviceAttachIommufdPt,
    /// `IOMMU_DESTROY` on `/dev/iommu`.
    IommuDestroy,
    /// `IOMMU_IOAS_ALLOC` on `/dev/iommu`.
    IoasAlloc,
    /// `IOMMU_IOAS_MAP` on `/dev/iommu`.
    IoasMap,
    /// `IOMMU_IOAS_UNMAP` on `/dev/iommu`.
    IoasUnmap,
    /// `IOMMU_IOAS_IOVA_RANGES` on `/dev/iommu`.
    IoasIovaRanges,
    /// `VFIO_DEVICE_FEATURE` on a device (Linux 6.19 and later: the dma-buf
    /// export of a BAR range, `VFIO_DEVICE_FEATURE_DMA_BUF`).
    DeviceFeature,
    /// `IOMMU_IOAS_MAP_FILE` on `/dev/iommu` (a memfd or, from Linux 6.19,
    /// a VFIO dma-buf).
    IoasMapFile,
}

impl Ioctl {
    /// The uapi name, as in `include/uapi/linux/vfio.h` / `iommufd.h`.
    ///
    /// ```
    /// use dmaspace_vfio::Ioctl;
    /// assert_eq!(Ioctl::IommuMapDma.name(), "VFIO_IOMMU_MAP_DMA");
    /// ```
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::GetApiVersion => "VFIO_GET_API_VERSION",
            Self::CheckExtension => "VFIO_CHECK_EXTENSION",
            Self::SetIommu => "VFIO_SET_IOMMU",
            Self::GroupGetStatus => "VFIO_GROUP_GET_STATUS",
            Self::GroupSetContainer => "VFIO_GROUP_SET_CONTAINER",
            Self::GroupGetDeviceFd => "VFIO_GROUP_GET_DEVICE_FD",
            Self::DeviceGetInfo => "VFIO_DEVICE_GET_INFO",
            Self::DeviceGetRegionInfo => "VFIO_DEVICE_GET_REGION_INFO",
            Self::DeviceReset => "VFIO_DEVICE_RESET",
            Self::IommuGetInfo => "VFIO_IOMMU_GET_INFO",
            Self::IommuMapDma => "VFIO_IOMMU_MAP_DMA",
            Self::IommuUnmapDma => "VFIO_IOMMU_UNMAP_DMA",
            Self::DeviceBindIommufd => "VFIO_DEVICE_BIND_IOMMUFD",
            Self::DeviceAttachIommufdPt => "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            Self::IommuDestroy => "IOMMU_DESTROY",
            Self::IoasAlloc => "IOMMU_IOAS_ALLOC",
            Self::IoasMap => "IOMMU_IOAS_MAP",
            Self::IoasUnmap => "IOMMU_IOAS_UNMAP",
            Self::IoasIovaRanges => "IOMMU_IOAS_IOVA_RANGES",
            Self::DeviceFeature => "VFIO_DEVICE_FEATURE",
            Self::IoasMapFile => "IOMMU_IOAS_MAP_FILE",
        }
    }
}

/// The call that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VfioCall {
    /// Checking the arguments, before any system call.
    Argument,
    /// `open(2)` of a device node or file.
    Open(PathBuf),
    /// Reading a sysfs attribute or link.
    Sysfs(PathBuf),
    /// An ioctl.
    Ioctl(Ioctl),
    /// `mmap(2)` of anonymous DMA memory.
    MmapMemory,
    /// `mlock(2)` of DMA memory.
    Mlock,
    /// `mmap(2)` of a device region (a BAR).
    MmapRegion {
        /// The VFIO region index (BAR number for BARs 0-5).
        index: u32,
    },
    /// `pread(2)` of the config-space region.
    ConfigRead,
    /// `pwrite(2)` of the config-space region.
    ConfigWrite,
    /// Reading `/proc/self/pagemap`.
    Pagemap,
    /// An access to a mapped BAR.
    BarAccess,
    /// An access to DMA memory.
    MemoryAccess,
}

impl fmt::Display for VfioCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Argument => f.write_str("argument check"),
            Self::Open(p) => write!(f, "open {}", p.display()),
            Self::Sysfs(p) => write!(f, "read {}", p.display()),
            Self::Ioctl(i) => f.write_str(i.name()),
            Self::MmapMemory => f.write_str("mmap (DMA memory)"),
            Self::Mlock => f.write_str("mlock (DMA memory)"),
            Self::MmapRegion { index } => write!(f, "mmap region {index}"),
            Self::ConfigRead => f.write_str("pread (config space)"),
            Self::ConfigWrite => f.write_str("pwrite (config space)"),
            Self::Pagemap => f.write_str("read /proc/self/pagemap"),
            Self::BarAccess => f.write_str("BAR access"),
            Self::MemoryAccess => f.write_str("DMA memory access"),
        }
    }
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VfioErrorKind {
    /// The system call failed with this errno; [`VfioError::meaning`] says what it
    /// means for that call.
    Os {
        /// The errno value.
        errno: i32,
    },
    /// An argument was refused before any system call.
    InvalidArgument {
        /// What was wrong with it.
        what: &'static str,
    },
    /// No PCI function with this address exists.
    NoSuchDevice {
        /// The address asked for, as given.
        device: String,
    },
    /// The function is not bound to `vfio-pci` (bound to `driver`, or to none).
    NotBoundToVfio {
        /// The function.
        device: String,
        /// The driver it is bound to, if any (`nvme`, say).
        driver: Option<String>,
    },
    /// The function has no IOMMU group (no IOMMU, and no-IOMMU mode is off).
    NoIommuGroup {
        /// The function.
        device: String,
    },
    /// `VFIO_GROUP_GET_STATUS` says the group is not viable: another function
    /// of the group is bound to a driver that is not VFIO-friendly.
    GroupNotViable {
        /// The group's node name (`7`, `noiommu-0`).
        group: String,
    },
    /// The function has no VFIO device cdev (`CONFIG_VFIO_DEVICE_CDEV` off, or
    /// a no-IOMMU device).
    NoDeviceCdev {
        /// The function.
        device: String,
    },
    /// `VFIO_GET_API_VERSION` returned something else than `VFIO_API_VERSION` (0).
    ApiVersion {
        /// What the kernel returned.
        got: i32,
    },
    /// The kernel does not offer what was asked for.
    Unsupported {
        /// What.
        what: &'static str,
    },
    /// iommufd cannot map this range: it is a `VM_PFNMAP`/`VM_IO` mapping (another
    /// device's BAR) and Linux 6.12's `IOMMU_IOAS_MAP` pins pages with
    /// `pin_user_pages`, which refuses such mappings (`EFAULT`). Nothing was mapped.
    PfnmapNotMappable,
    /// The exporting device revoked the dma-buf (`ENODEV` from
    /// `IOMMU_IOAS_MAP_FILE`): its memory decoding was turned off, it was
    /// reset, or its VFIO device was closed. Nothing was mapped. Mappings
    /// made before the revocation are dead for good (the kernel tears them
    /// down and says nothing): see `docs/p2p-paths.md`.
    Revoked,
    /// The region cannot be `mmap`ed (no `VFIO_REGION_INFO_FLAG_MMAP`, or empty).
    RegionNotMappable {
        /// The region index.
        index: u32,
    },
    /// An access outside a BAR or a DMA buffer, or misaligned.
    OutOfBounds {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// Size of the object.
        size: u64,
    },
    /// `/proc/self/pagemap` gave no frame number for this address (the page is not
    /// present, or the process lacks `CAP_SYS_ADMIN`, which hides PFNs).
    NoPhysAddr {
        /// The virtual address.
        vaddr: u64,
    },
}

/// An error of the VFIO / iommufd layer: the call and what went wrong.
///
/// ```
/// use dmaspace_vfio::{VfioCall, VfioError, VfioErrorKind, Ioctl};
/// let e = VfioError::os(VfioCall::Ioctl(Ioctl::IommuMapDma), libc::EEXIST);
/// assert_eq!(e.errno(), Some(libc::EEXIST));
/// assert!(e.to_string().starts_with("VFIO_IOMMU_MAP_DMA: EEXIST"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioError {
    call: VfioCall,
    kind: VfioErrorKind,
}

/// Result of this layer.
pub(crate) type Result<T> = core::result::Result<T, VfioError>;

impl VfioError {
    /// An error of `call` with kind `kind`.
    #[must_use]
    pub fn new(call: VfioCall, kind: VfioErrorKind) -> Self {
        Self { call, kind }
    }

    /// `call` failed with `errno`.
    #[must_use]
    pub fn os(call: VfioCall, errno: i32) -> Self {
        Self::new(call, VfioErrorKind::Os { errno })
    }

    /// `call` failed; the errno is taken from `errno` (the thread's last error).
    pub(crate) fn last_os(call: VfioCall) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Self::os(call, errno)
    }

    /// An argument refused before any call.
    #[must_use]
    pub fn invalid(what: &'static str) -> Self {
        Self::new(VfioCall::Argument, VfioErrorKind::InvalidArgument { what })
    }

    /// The failing call.
    #[must_use]
    pub fn call(&self) -> &VfioCall {
        &self.call
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> &VfioErrorKind {
        &self.kind
    }

    /// The errno, for [`VfioErrorKind::Os`] (and `EFAULT` for
    /// [`VfioErrorKind::PfnmapNotMappable`], which is how the kernel says it).
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self.kind {
            VfioErrorKind::Os { errno } => Some(errno),
            VfioErrorKind::PfnmapNotMappable => Some(libc::EFAULT),
            VfioErrorKind::Revoked => Some(libc::ENODEV),
            _ => None,
        }
    }

    /// What the errno of this call means, in words (empty when unknown).
    ///
    /// ```
    /// use dmaspace_vfio::{VfioCall, VfioError, Ioctl};
    /// let e = VfioError::os(VfioCall::Ioctl(Ioctl::GroupSetContainer), libc::EPERM);
    /// assert!(e.meaning().contains("interrupt remapping"));
    /// ```
    #[must_use]
    pub fn meaning(&self) -> &'static str {
        match self.kind {
            VfioErrorKind::Os { errno } => meaning(&self.call, errno),
            _ => "",
        }
    }
}

/// The symbolic name of an errno (`EFAULT`), or `"E?"`.
#[must_use]
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTTY => "ENOTTY",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::E2BIG => "E2BIG",
        _ => "E?",
    }
}

/// What `errno` means for `call`, from the Linux 6.12 sources of VFIO and iommufd.
fn meaning(call: &VfioCall, errno: i32) -> &'static str {
    use libc::{
        EACCES, EAGAIN, EBUSY, EEXIST, EFAULT, EINVAL, ENODEV, ENOENT, ENOMEM, ENOSPC, ENOTTY,
        EOPNOTSUPP, EPERM,
    };
    match (call, errno) {
        (VfioCall::Open(_), ENOENT) => {
            "no such node: the module or option is missing, or the device is not bound to vfio-pci"
        }
        (VfioCall::Open(_), EBUSY) => "already open elsewhere (a VFIO group or cdev is exclusive)",
        (VfioCall::Open(_), EPERM | EACCES) => {
            "permission denied (no-IOMMU groups need CAP_SYS_RAWIO; device nodes need root or a udev rule)"
        }
        (VfioCall::Ioctl(Ioctl::GroupSetContainer), EPERM) => {
            "the IOMMU refuses unsafe interrupts: interrupt remapping is off (intremap=off) and allow_unsafe_interrupts is not set"
        }
        (VfioCall::Ioctl(Ioctl::GroupSetContainer), EINVAL) => {
            "the group already has a container, or the container's IOMMU type does not fit this group"
        }
        (VfioCall::Ioctl(Ioctl::GroupSetContainer), EBUSY) => {
            "the group is in use by iommufd or a cdev"
        }
        (VfioCall::Ioctl(Ioctl::SetIommu), EINVAL) => {
            "no group is attached yet, an IOMMU type is already set, or the type is not offered"
        }
        (VfioCall::Ioctl(Ioctl::SetIommu), ENODEV) => {
            "no IOMMU driver offers this type for the attached groups"
        }
        (VfioCall::Ioctl(Ioctl::SetIommu), EPERM) => {
            "the IOMMU refuses unsafe interrupts (no interrupt remapping), or no-IOMMU without CAP_SYS_RAWIO"
        }
        (VfioCall::Ioctl(Ioctl::GroupGetDeviceFd), EINVAL) => "no such device in this group",
        (VfioCall::Ioctl(Ioctl::GroupGetDeviceFd), EPERM) => {
            "the group is not viable or has no container with an IOMMU set"
        }
        (VfioCall::Ioctl(Ioctl::GroupGetDeviceFd), EBUSY) => {
            "the device is already open (group fd or cdev)"
        }
        (VfioCall::Ioctl(Ioctl::IommuMapDma), EEXIST) => {
            "the IOVA range overlaps an existing mapping"
        }
        (VfioCall::Ioctl(Ioctl::IommuMapDma), EINVAL) => {
            "size zero, or vaddr/iova/size not aligned to the IOMMU page size, or no IOMMU type set"
        }
        (VfioCall::Ioctl(Ioctl::IommuMapDma), EFAULT) => {
            "the virtual range is not mapped in this process"
        }
        (VfioCall::Ioctl(Ioctl::IommuMapDma), ENOSPC) => {
            "the container's DMA mapping limit (vfio_iommu_type1 dma_entry_limit) is reached"
        }
        (VfioCall::Ioctl(Ioctl::IommuMapDma), ENOMEM) => {
            "pinning would exceed RLIMIT_MEMLOCK, or the IOVA is above the IOMMU's address width"
        }
        (VfioCall::Ioctl(Ioctl::IommuMapDma), EPERM) => {
            "the IOVA range is reserved (MSI window) or outside the aperture"
        }
        (VfioCall::Ioctl(Ioctl::IommuGetInfo), EINVAL) => "no IOMMU type is set on the container",
        (VfioCall::Ioctl(Ioctl::IommuUnmapDma), EINVAL) => {
            "unaligned range, or it would split an existing mapping"
        }
        (VfioCall::Ioctl(Ioctl::DeviceBindIommufd), EINVAL) => "bad iommufd, or flags set",
        (VfioCall::Ioctl(Ioctl::DeviceBindIommufd), EBUSY) => {
            "the device is already bound, or its group is used through the legacy container"
        }
        (VfioCall::Ioctl(Ioctl::DeviceBindIommufd), EPERM) => {
            "the IOMMU refuses unsafe interrupts (no interrupt remapping)"
        }
        (VfioCall::Ioctl(Ioctl::DeviceAttachIommufdPt), ENOENT) => "no such IOAS or HWPT id",
        (VfioCall::Ioctl(Ioctl::DeviceAttachIommufdPt), EINVAL) => {
            "the device is not bound to an iommufd"
        }
        (VfioCall::Ioctl(Ioctl::IoasMap), EFAULT) => {
            "user_va cannot be pinned: not mapped, or a PFNMAP/IO mapping such as a BAR (6.12 pins with pin_user_pages)"
        }
        (VfioCall::Ioctl(Ioctl::IoasMap), EEXIST) => "the IOVA range overlaps an existing mapping",
        (VfioCall::Ioctl(Ioctl::IoasMap), ENOENT) => "no such IOAS id",
        (VfioCall::Ioctl(Ioctl::IoasMap), EINVAL) => {
            "length zero, unaligned iova/length, or the range is outside the allowed IOVA ranges"
        }
        (VfioCall::Ioctl(Ioctl::IoasMap), ENOSPC) => "no free IOVA range of this size",
        (VfioCall::Ioctl(Ioctl::IoasUnmap), ENOENT) => "nothing is mapped at this IOVA range",
        (VfioCall::Ioctl(Ioctl::DeviceFeature), EINVAL) => {
            "offset or length not page-aligned or beyond the BAR, or a flag this kernel does not know (Linux before 6.19 has no dma-buf export)"
        }
        (VfioCall::Ioctl(Ioctl::DeviceFeature), ENODEV) => {
            "the region is not a memory BAR that can be exported (an upper half of a 64-bit BAR, config space)"
        }
        (VfioCall::Ioctl(Ioctl::DeviceFeature), ENOTTY) => {
            "this kernel cannot export a BAR as a dma-buf (Linux before 6.19, or CONFIG_VFIO_PCI_DMABUF off)"
        }
        (VfioCall::Ioctl(Ioctl::IoasMapFile), ENODEV) => {
            "the dma-buf is revoked: the exporting device's memory decoding is off, it was reset, or its VFIO device was closed"
        }
        (VfioCall::Ioctl(Ioctl::IoasMapFile), EOPNOTSUPP) => {
            "iommufd cannot import this dma-buf (vfio-pci not loaded, or more than one range)"
        }
        (VfioCall::Ioctl(Ioctl::IoasMapFile), EINVAL) => {
            "start not page-aligned, or start + length beyond the dma-buf"
        }
        (VfioCall::Ioctl(Ioctl::IoasMapFile), EEXIST) => {
            "the IOVA range overlaps an existing mapping (a revoked one stays until IOMMU_IOAS_UNMAP)"
        }
        (VfioCall::Ioctl(Ioctl::IoasUnmap), EINVAL) => "the range would split an existing mapping",
        (VfioCall::Ioctl(_), ENOTTY) => {
            "this kernel does not know the ioctl (option off, or too old)"
        }
        (VfioCall::Ioctl(_), EINVAL) => "the kernel refused the arguments",
        (VfioCall::Ioctl(Ioctl::DeviceReset), _) => {
            "the device could not be reset (no FLR and no bus reset)"
        }
        (VfioCall::Mlock, ENOMEM | EPERM | EAGAIN) => {
            "the memory cannot be locked: raise RLIMIT_MEMLOCK (ulimit -l) or run with CAP_IPC_LOCK"
        }
        (VfioCall::MmapRegion { .. }, EINVAL) => {
            "the region is not mmap-able at this offset or size"
        }
        (VfioCall::Pagemap, EPERM | EACCES) => "pagemap needs CAP_SYS_ADMIN to show frame numbers",
        _ => "",
    }
}

impl fmt::Display for VfioErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os { errno } => write!(f, "{} (errno {errno})", errno_name(*errno)),
            Self::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Self::NoSuchDevice { device } => write!(f, "no PCI function {device}"),
            Self::NotBoundToVfio {
                device,
                driver: Some(d),
            } => write!(
                f,
                "{device} is still bound to {d}, not vfio-pci (write vfio-pci to its driver_override, unbind, drivers_probe)"
            ),
            Self::NotBoundToVfio {
                device,
                driver: None,
            } => write!(f, "{device} is bound to no driver, not vfio-pci"),
            Self::NoIommuGroup { device } => write!(
                f,
                "{device} has no IOMMU group (no IOMMU; for no-IOMMU mode boot with vfio.enable_unsafe_noiommu_mode=1)"
            ),
            Self::GroupNotViable { group } => write!(
                f,
                "group {group} is not viable: another function of the group is bound to a non-VFIO driver"
            ),
            Self::NoDeviceCdev { device } => write!(
                f,
                "{device} has no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV off, or a no-IOMMU device)"
            ),
            Self::ApiVersion { got } => write!(f, "VFIO API version {got}, expected 0"),
            Self::Unsupported { what } => write!(f, "not supported by this kernel: {what}"),
            Self::PfnmapNotMappable => f.write_str(
                "EFAULT: iommufd cannot map a PFNMAP range (another device's BAR) in Linux 6.12; nothing was mapped",
            ),
            Self::Revoked => f.write_str(
                "ENODEV: the dma-buf is revoked (the exporting device's decoding is off, it was reset, or its VFIO device closed); nothing was mapped, and mappings made before it are dead",
            ),
            Self::RegionNotMappable { index } => write!(f, "region {index} cannot be mmap-ed"),
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "access of {len} bytes at {offset:#x} is outside {size:#x} bytes or misaligned"
            ),
            Self::NoPhysAddr { vaddr } => write!(
                f,
                "no frame number for {vaddr:#x} (page not present, or no CAP_SYS_ADMIN)"
            ),
        }
    }
}

impl fmt::Display for VfioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.kind)?;
        let m = self.meaning();
        if !m.is_empty() {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl core::error::Error for VfioError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_name_the_call_the_errno_and_the_meaning() {
        let e = VfioError::os(VfioCall::Ioctl(Ioctl::IoasMap), libc::EFAULT);
        let s = e.to_string();
        assert!(s.starts_with("IOMMU_IOAS_MAP: EFAULT (errno 14): "), "{s}");
        assert!(s.contains("PFNMAP"), "{s}");
        assert_eq!(e.errno(), Some(libc::EFAULT));
    }

    #[test]
    fn the_same_errno_means_different_things_per_call() {
        let a = VfioError::os(VfioCall::Ioctl(Ioctl::IommuMapDma), libc::EEXIST).meaning();
        let b = VfioError::os(VfioCall::Ioctl(Ioctl::IoasUnmap), libc::ENOENT).meaning();
        let c = VfioError::os(VfioCall::Ioctl(Ioctl::GroupSetContainer), libc::EPERM).meaning();
        assert!(a.contains("overlaps"));
        assert!(b.contains("nothing is mapped"));
        assert!(c.contains("interrupt remapping"));
        assert_eq!(VfioError::os(VfioCall::Argument, 12345).meaning(), "");
        assert_eq!(errno_name(12345), "E?");
    }

    #[test]
    fn typed_kinds_read_well() {
        let e = VfioError::new(
            VfioCall::Sysfs("/sys/bus/pci/devices/0000:00:05.0/driver".into()),
            VfioErrorKind::NotBoundToVfio {
                device: "0000:00:05.0".into(),
                driver: Some("nvme".into()),
            },
        );
        assert!(e.to_string().contains("still bound to nvme"));
        let e = VfioError::new(
            VfioCall::Ioctl(Ioctl::GroupGetStatus),
            VfioErrorKind::GroupNotViable { group: "7".into() },
        );
        assert!(e.to_string().contains("group 7 is not viable"));
        assert_eq!(e.errno(), None);
        let e = VfioError::new(
            VfioCall::Ioctl(Ioctl::IoasMap),
            VfioErrorKind::PfnmapNotMappable,
        );
        assert_eq!(e.errno(), Some(libc::EFAULT));
    }
}

//! The few VFIO and iommufd uapi structs and ioctl numbers this layer uses,
//! written from Linux 6.12's `include/uapi/linux/vfio.h` and `iommufd.h`
//! (Debian 12's system headers are 6.1 and lack the cdev/iommufd parts).
//!
//! The sizes are those of 6.12 and are asserted at compile time; the kernel
//! checks `argsz`/`size` against its own minimum, so these stay valid on newer
//! kernels, which only append fields.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::error::{Ioctl, Result, VfioCall, VfioError};

const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;
const IOMMUFD_TYPE: u32 = b';' as u32;

/// `_IO(type, nr)`: no size or direction bits (VFIO and iommufd use only `_IO`).
const fn io(ty: u32, nr: u32) -> u32 {
    (ty << 8) | nr
}

impl Ioctl {
    /// The request number, as `_IO(...)` computes it.
    pub(crate) const fn request(self) -> u32 {
        match self {
            Self::GetApiVersion => io(VFIO_TYPE, VFIO_BASE),
            Self::CheckExtension => io(VFIO_TYPE, VFIO_BASE + 1),
            Self::SetIommu => io(VFIO_TYPE, VFIO_BASE + 2),
            Self::GroupGetStatus => io(VFIO_TYPE, VFIO_BASE + 3),
            Self::GroupSetContainer => io(VFIO_TYPE, VFIO_BASE + 4),
            Self::GroupGetDeviceFd => io(VFIO_TYPE, VFIO_BASE + 6),
            Self::DeviceGetInfo => io(VFIO_TYPE, VFIO_BASE + 7),
            Self::DeviceGetRegionInfo => io(VFIO_TYPE, VFIO_BASE + 8),
            Self::DeviceReset => io(VFIO_TYPE, VFIO_BASE + 11),
            Self::IommuGetInfo => io(VFIO_TYPE, VFIO_BASE + 12),
            Self::IommuMapDma => io(VFIO_TYPE, VFIO_BASE + 13),
            Self::IommuUnmapDma => io(VFIO_TYPE, VFIO_BASE + 14),
            Self::DeviceBindIommufd => io(VFIO_TYPE, VFIO_BASE + 18),
            Self::DeviceAttachIommufdPt => io(VFIO_TYPE, VFIO_BASE + 19),
            Self::IommuDestroy => io(IOMMUFD_TYPE, 0x80),
            Self::IoasAlloc => io(IOMMUFD_TYPE, 0x81),
            Self::IoasIovaRanges => io(IOMMUFD_TYPE, 0x84),
            Self::IoasMap => io(IOMMUFD_TYPE, 0x85),
            Self::IoasUnmap => io(IOMMUFD_TYPE, 0x86),
        }
    }
}

pub(crate) const VFIO_API_VERSION: i32 = 0;
pub(crate) const VFIO_TYPE1V2_IOMMU: u32 = 3;
pub(crate) const VFIO_NOIOMMU_IOMMU: u32 = 8;
pub(crate) const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
pub(crate) const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;
pub(crate) const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub(crate) const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
pub(crate) const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub(crate) const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub(crate) const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub(crate) const VFIO_IOMMU_INFO_PGSIZES: u32 = 1 << 0;
pub(crate) const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
pub(crate) const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
pub(crate) const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: u16 = 3;
pub(crate) const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub(crate) const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub(crate) const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub(crate) const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
pub(crate) const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
pub(crate) const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioGroupStatus {
    pub argsz: u32,
    pub flags: u32,
}

/// `struct vfio_device_info` (6.12: with `cap_offset` and `pad`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioDeviceInfo {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioRegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

/// `struct vfio_iommu_type1_info` (the fixed part; capabilities follow it in
/// the caller's buffer, at `cap_offset`, each starting with a
/// `struct vfio_info_cap_header { u16 id; u16 version; u32 next; }`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioIommuType1Info {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioIommuType1DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap` (without the flexible `data[]`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioIommuType1DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_device_bind_iommufd` (6.12: 16 bytes; later kernels append a token).
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioDeviceBindIommufd {
    pub argsz: u32,
    pub flags: u32,
    pub iommufd: i32,
    pub out_devid: u32,
}

/// `struct vfio_device_attach_iommufd_pt` (6.12: 12 bytes; later kernels append `pasid`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct VfioDeviceAttachIommufdPt {
    pub argsz: u32,
    pub flags: u32,
    pub pt_id: u32,
}

/// `struct iommu_destroy`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct IommuDestroy {
    pub size: u32,
    pub id: u32,
}

/// `struct iommu_ioas_alloc`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct IommuIoasAlloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

/// `struct iommu_ioas_map`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct IommuIoasMap {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_unmap`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct IommuIoasUnmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

/// `struct iommu_ioas_iova_ranges`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct IommuIoasIovaRanges {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub reserved: u32,
    pub allowed_iovas: u64,
    pub out_iova_alignment: u64,
}

/// `struct iommu_iova_range`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct IommuIovaRange {
    pub start: u64,
    pub last: u64,
}

// Sizes of Linux 6.12 (printed by a C program against its uapi headers).
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<VfioGroupStatus>() == 8);
    assert!(size_of::<VfioDeviceInfo>() == 24);
    assert!(size_of::<VfioRegionInfo>() == 32);
    assert!(size_of::<VfioIommuType1Info>() == 24);
    assert!(size_of::<VfioIommuType1DmaMap>() == 32);
    assert!(size_of::<VfioIommuType1DmaUnmap>() == 24);
    assert!(size_of::<VfioDeviceBindIommufd>() == 16);
    assert!(size_of::<VfioDeviceAttachIommufdPt>() == 12);
    assert!(size_of::<IommuDestroy>() == 8);
    assert!(size_of::<IommuIoasAlloc>() == 12);
    assert!(size_of::<IommuIoasMap>() == 40);
    assert!(size_of::<IommuIoasUnmap>() == 24);
    assert!(size_of::<IommuIoasIovaRanges>() == 32);
    assert!(size_of::<IommuIovaRange>() == 16);
};

/// `size_of::<T>()` as the `u32` the `argsz`/`size` fields hold.
#[expect(
    clippy::cast_possible_truncation,
    reason = "every struct above is far below 4 GiB"
)]
pub(crate) const fn argsz<T>() -> u32 {
    core::mem::size_of::<T>() as u32
}

/// An ioctl whose argument is a pointer to `T`; returns the non-negative result.
///
/// # Safety
///
/// `T` must be the argument struct the kernel expects for `req` on the file
/// behind `fd`, with its `argsz`/`size` set, and every pointer inside it must be
/// valid for what the kernel reads or writes through it.
pub(crate) unsafe fn ioctl_ptr<T>(fd: BorrowedFd<'_>, req: Ioctl, arg: &mut T) -> Result<i32> {
    let p: *mut T = arg;
    // SAFETY: the fd is open (borrowed); the caller guarantees that `T` is what
    // the kernel reads and writes for `req`; `p` is valid for size_of::<T>() bytes.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req.request() as libc::Ioctl, p) };
    if r < 0 {
        Err(VfioError::last_os(VfioCall::Ioctl(req)))
    } else {
        Ok(r)
    }
}

/// An ioctl whose argument is a buffer the kernel reads and writes, whose
/// first bytes are the argument struct (with its `argsz` set to at most the
/// buffer's size) and the rest room for what the kernel appends
/// (capabilities); returns the non-negative result.
///
/// # Safety
///
/// The buffer must start with the argument struct the kernel expects for `req`
/// on the file behind `fd`, its `argsz` no larger than the buffer.
pub(crate) unsafe fn ioctl_buf(fd: BorrowedFd<'_>, req: Ioctl, buf: &mut [u64]) -> Result<i32> {
    // SAFETY: the fd is open (borrowed); the caller guarantees the layout and
    // that the kernel touches at most `argsz <= buf.len() * 8` bytes of it.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            req.request() as libc::Ioctl,
            buf.as_mut_ptr(),
        )
    };
    if r < 0 {
        Err(VfioError::last_os(VfioCall::Ioctl(req)))
    } else {
        Ok(r)
    }
}

/// An ioctl whose argument is an integer (or none); returns the non-negative result.
///
/// Safe: the kernel reads no memory of ours for these requests
/// (`VFIO_GET_API_VERSION`, `VFIO_CHECK_EXTENSION`, `VFIO_SET_IOMMU`, `VFIO_DEVICE_RESET`).
pub(crate) fn ioctl_val(fd: BorrowedFd<'_>, req: Ioctl, val: libc::c_ulong) -> Result<i32> {
    debug_assert!(matches!(
        req,
        Ioctl::GetApiVersion | Ioctl::CheckExtension | Ioctl::SetIommu | Ioctl::DeviceReset
    ));
    // SAFETY: for these requests the argument is an integer, not a pointer: the
    // kernel dereferences nothing of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req.request() as libc::Ioctl, val) };
    if r < 0 {
        Err(VfioError::last_os(VfioCall::Ioctl(req)))
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers printed by `printf("%#lx", VFIO_...)` against 6.12's headers.
    #[test]
    fn request_numbers_match_linux_6_12() {
        let table = [
            (Ioctl::GetApiVersion, 0x3b64),
            (Ioctl::CheckExtension, 0x3b65),
            (Ioctl::SetIommu, 0x3b66),
            (Ioctl::GroupGetStatus, 0x3b67),
            (Ioctl::GroupSetContainer, 0x3b68),
            (Ioctl::GroupGetDeviceFd, 0x3b6a),
            (Ioctl::DeviceGetInfo, 0x3b6b),
            (Ioctl::DeviceGetRegionInfo, 0x3b6c),
            (Ioctl::DeviceReset, 0x3b6f),
            (Ioctl::IommuGetInfo, 0x3b70),
            (Ioctl::IommuMapDma, 0x3b71),
            (Ioctl::IommuUnmapDma, 0x3b72),
            (Ioctl::DeviceBindIommufd, 0x3b76),
            (Ioctl::DeviceAttachIommufdPt, 0x3b77),
            (Ioctl::IommuDestroy, 0x3b80),
            (Ioctl::IoasAlloc, 0x3b81),
            (Ioctl::IoasIovaRanges, 0x3b84),
            (Ioctl::IoasMap, 0x3b85),
            (Ioctl::IoasUnmap, 0x3b86),
        ];
        for (ioctl, n) in table {
            assert_eq!(ioctl.request(), n, "{}", ioctl.name());
        }
    }

    #[test]
    fn argsz_is_the_struct_size() {
        assert_eq!(argsz::<IommuIoasMap>(), 40);
        assert_eq!(argsz::<VfioDeviceAttachIommufdPt>(), 12);
    }

    #[test]
    #[cfg_attr(miri, ignore = "ioctl is a foreign call")]
    fn an_ioctl_on_a_plain_file_is_a_typed_enotty() {
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        use std::os::fd::AsFd;
        let e = ioctl_val(f.as_fd(), Ioctl::GetApiVersion, 0).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOTTY));
        assert_eq!(e.call(), &VfioCall::Ioctl(Ioctl::GetApiVersion));
        assert!(e.meaning().contains("does not know"));
    }
}

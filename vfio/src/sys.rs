//! The VFIO and iommufd uapi this layer uses: the structs and constants are
//! rust-vmm's `vfio-bindings` 0.7 and `iommufd-bindings` 0.2 (bindgen output
//! of recent `vfio.h` and `iommufd.h`, their layouts asserted there), under
//! this crate's names; the ioctl request numbers are computed here (bindgen
//! cannot expand `_IO()`), and the calls go through `libc`.
//!
//! The kernel checks `argsz`/`size` against its own minimum and ignores (or
//! requires zero in) what it does not know, so structs of a newer header stay
//! valid on 6.12, and 6.12's on newer kernels.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::error::{Ioctl, Result, VfioCall, VfioError};

use iommufd_bindings::iommufd as iofd;
use vfio_bindings::bindings::vfio as uapi;

/// `_IO(type, nr)`: no size or direction bits (VFIO and iommufd use only `_IO`).
const fn io(ty: u8, nr: u32) -> u32 {
    ((ty as u32) << 8) | nr
}

impl Ioctl {
    /// The request number, as `_IO(...)` computes it.
    ///
    /// Hand-written: bindgen cannot expand `_IO()`, so `vfio-bindings`
    /// has no request numbers; the VFIO offsets from `VFIO_BASE` are
    /// `vfio.h`'s, iommufd's numbers are `iommufd-bindings`' command enum.
    pub(crate) const fn request(self) -> u32 {
        use uapi::{VFIO_BASE, VFIO_TYPE};
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
            Self::IommuDestroy => io(iofd::IOMMUFD_TYPE, iofd::IOMMUFD_CMD_DESTROY),
            Self::IoasAlloc => io(iofd::IOMMUFD_TYPE, iofd::IOMMUFD_CMD_IOAS_ALLOC),
            Self::IoasIovaRanges => io(iofd::IOMMUFD_TYPE, iofd::IOMMUFD_CMD_IOAS_IOVA_RANGES),
            Self::IoasMap => io(iofd::IOMMUFD_TYPE, iofd::IOMMUFD_CMD_IOAS_MAP),
            Self::IoasUnmap => io(iofd::IOMMUFD_TYPE, iofd::IOMMUFD_CMD_IOAS_UNMAP),
            Self::DeviceFeature => io(VFIO_TYPE, VFIO_BASE + 17),
            Self::IoasMapFile => io(iofd::IOMMUFD_TYPE, iofd::IOMMUFD_CMD_IOAS_MAP_FILE),
        }
    }
}

#[expect(
    clippy::cast_possible_wrap,
    reason = "VFIO_API_VERSION is 0; VFIO_GET_API_VERSION returns an int"
)]
pub(crate) const VFIO_API_VERSION: i32 = uapi::VFIO_API_VERSION as i32;
#[expect(
    clippy::cast_possible_truncation,
    reason = "capability ids are a u16 in vfio_info_cap_header; the values are 1 and 3"
)]
pub(crate) const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 =
    uapi::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16;
#[expect(
    clippy::cast_possible_truncation,
    reason = "capability ids are a u16 in vfio_info_cap_header; the values are 1 and 3"
)]
pub(crate) const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: u16 =
    uapi::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL as u16;
pub(crate) use iofd::{
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA as IOMMU_IOAS_MAP_FIXED_IOVA,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE as IOMMU_IOAS_MAP_READABLE,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE as IOMMU_IOAS_MAP_WRITEABLE,
};
pub(crate) use uapi::{
    VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FLAGS_PCI,
    VFIO_DEVICE_FLAGS_RESET, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_INFO_PGSIZES, VFIO_NOIOMMU_IOMMU, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
    VFIO_TYPE1v2_IOMMU as VFIO_TYPE1V2_IOMMU,
};

// The structs, under this crate's names. `vfio-bindings` 0.7 is newer than
// 6.12: `vfio_device_bind_iommufd` has the token pointer (24 bytes) and
// `vfio_device_attach_iommufd_pt` the PASID (16); 6.12 reads its minimum
// (`argsz >= offsetofend(out_devid)` / `(pt_id)`) and ignores the rest, so
// the larger `argsz`, with the new fields and flags zero, is valid on both.
pub(crate) use iofd::{
    iommu_destroy as IommuDestroy, iommu_ioas_alloc as IommuIoasAlloc,
    iommu_ioas_iova_ranges as IommuIoasIovaRanges, iommu_ioas_map as IommuIoasMap,
    iommu_ioas_map_file as IommuIoasMapFile, iommu_ioas_unmap as IommuIoasUnmap,
    iommu_iova_range as IommuIovaRange,
};
pub(crate) use uapi::{
    vfio_device_attach_iommufd_pt as VfioDeviceAttachIommufdPt,
    vfio_device_bind_iommufd as VfioDeviceBindIommufd, vfio_device_feature as VfioDeviceFeature,
    vfio_device_feature_dma_buf as VfioDeviceFeatureDmaBuf, vfio_device_info as VfioDeviceInfo,
    vfio_group_status as VfioGroupStatus, vfio_iommu_type1_dma_map as VfioIommuType1DmaMap,
    vfio_iommu_type1_dma_unmap as VfioIommuType1DmaUnmap,
    vfio_iommu_type1_info as VfioIommuType1Info, vfio_region_dma_range as VfioRegionDmaRange,
    vfio_region_info as VfioRegionInfo,
};

/// `VFIO_DEVICE_FEATURE` with `VFIO_DEVICE_FEATURE_DMA_BUF` and one range:
/// `struct vfio_device_feature` whose flexible `data` is a `struct
/// vfio_device_feature_dma_buf` whose flexible `dma_ranges` holds one
/// `struct vfio_region_dma_range` (40 bytes; iommufd imports only one range).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct DmaBufFeature {
    pub(crate) feature: VfioDeviceFeature,
    pub(crate) dma_buf: VfioDeviceFeatureDmaBuf,
    pub(crate) range: VfioRegionDmaRange,
}
const _: () = assert!(core::mem::size_of::<DmaBufFeature>() == 40);
const _: () = assert!(core::mem::offset_of!(DmaBufFeature, dma_buf) == 8);
const _: () = assert!(core::mem::offset_of!(DmaBufFeature, range) == 24);

/// Byte offsets inside `VFIO_IOMMU_GET_INFO`'s answer, which is decoded
/// from a byte buffer (a fixed part, then a chain of capabilities).
pub(crate) mod type1_info {
    use super::uapi;
    use core::mem::{offset_of, size_of};
    /// `vfio_iommu_type1_info.iova_pgsizes`.
    pub(crate) const PGSIZES: usize = offset_of!(uapi::vfio_iommu_type1_info, iova_pgsizes);
    /// `vfio_iommu_type1_info.cap_offset`.
    pub(crate) const CAP_OFFSET: usize = offset_of!(uapi::vfio_iommu_type1_info, cap_offset);
    /// `vfio_info_cap_header.id`, `.next`, and its size.
    pub(crate) const CAP_ID: usize = offset_of!(uapi::vfio_info_cap_header, id);
    pub(crate) const CAP_NEXT: usize = offset_of!(uapi::vfio_info_cap_header, next);
    pub(crate) const CAP_HEADER: usize = size_of::<uapi::vfio_info_cap_header>();
    /// `vfio_iommu_type1_info_cap_iova_range.nr_iovas`, `.iova_ranges[]`.
    pub(crate) const NR_IOVAS: usize =
        offset_of!(uapi::vfio_iommu_type1_info_cap_iova_range, nr_iovas);
    pub(crate) const IOVA_RANGES: usize =
        offset_of!(uapi::vfio_iommu_type1_info_cap_iova_range, iova_ranges);
    /// `vfio_iova_range`: its size, `.start`, `.end` (inclusive).
    pub(crate) const RANGE: usize = size_of::<uapi::vfio_iova_range>();
    pub(crate) const RANGE_START: usize = offset_of!(uapi::vfio_iova_range, start);
    pub(crate) const RANGE_END: usize = offset_of!(uapi::vfio_iova_range, end);
    /// `vfio_iommu_type1_info_dma_avail.avail`.
    pub(crate) const DMA_AVAIL: usize = offset_of!(uapi::vfio_iommu_type1_info_dma_avail, avail);
}

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
            // Linux 7.3.4's headers.
            (Ioctl::DeviceFeature, 0x3b75),
            (Ioctl::IoasMapFile, 0x3b8f),
        ];
        for (ioctl, n) in table {
            assert_eq!(ioctl.request(), n, "{}", ioctl.name());
        }
    }

    #[test]
    fn argsz_is_the_struct_size() {
        assert_eq!(argsz::<IommuIoasMap>(), 40);
        assert_eq!(argsz::<IommuIoasMapFile>(), 40);
        assert_eq!(argsz::<DmaBufFeature>(), 40);
        // Newer than 6.12's 12 and 16 bytes, which 6.12 accepts (it reads its minimum).
        assert_eq!(argsz::<VfioDeviceAttachIommufdPt>(), 16);
        assert_eq!(argsz::<VfioDeviceBindIommufd>(), 24);
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

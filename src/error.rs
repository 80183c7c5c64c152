//! Typed errors. No operation of the crate signals failure with a sentinel
//! address or a panic.

use core::fmt;

use crate::addr::{Iova, PhysAddr};
use crate::iommu::IommuPerm;

/// A brand was claimed while another live object holds it.
///
/// ```
/// dmaspace::brand!(Dev);
/// let _a = dmaspace::Claim::<Dev>::acquire()?;
/// let e = dmaspace::Claim::<Dev>::acquire().unwrap_err();
/// assert_eq!(e.to_string(), "brand `Dev` is already bound to a live device, domain or provider");
/// # Ok::<(), dmaspace::error::BrandInUse>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrandInUse {
    /// The brand's name.
    pub brand: &'static str,
}

impl fmt::Display for BrandInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "brand `{}` is already bound to a live device, domain or provider",
            self.brand
        )
    }
}
impl core::error::Error for BrandInUse {}

/// Why a mapping, an allocation or a range description failed.
///
/// ```
/// use dmaspace::error::MapError;
/// let e = MapError::OutOfCapacity { capacity: 4 };
/// assert_eq!(e.to_string(), "the output vector holds at most 4 segments");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// A range `[start, start + len)` passes the top of the 64-bit space.
    Overflow {
        /// First byte of the range (in the space it was given in).
        start: u64,
        /// Its length.
        len: u64,
    },
    /// A segment of length zero: it would map nothing and is almost always a bug.
    EmptySegment {
        /// Index of the segment in the request.
        index: usize,
    },
    /// The caller-provided output vector is full.
    OutOfCapacity {
        /// How many segments it holds.
        capacity: usize,
    },
    /// A segment cannot be linked into one contiguous IOVA range: only the
    /// first IOMMU-bound segment may start inside a granule, and only the
    /// last may end inside one (the `dma_iova_link` rule).
    Unaligned {
        /// Index of the offending segment in the request.
        index: usize,
        /// The IOMMU granule in bytes.
        granule: u64,
    },
    /// The IOMMU domain has no free IOVA range of this size.
    IovaExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// Direct mapping: the device cannot address this memory (its DMA mask
    /// is too small). Host memory could be bounced through a
    /// [`crate::swiotlb::Swiotlb`]; P2P memory never is.
    BeyondDmaMask {
        /// Index of the segment in the request.
        index: usize,
        /// Last byte the segment needs.
        last: PhysAddr,
        /// The device's DMA mask.
        mask: u64,
    },
    /// A P2P provider has no free memory of this size.
    ProviderExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// The bounce pool has no free slot large enough.
    BouncePoolExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// A range was described outside the memory it belongs to.
    OutOfBounds {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// Size of the memory.
        size: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Overflow { start, len } => {
                write!(
                    f,
                    "range {start:#x} + {len:#x} passes the top of the 64-bit address space"
                )
            }
            MapError::EmptySegment { index } => write!(f, "segment {index} has length zero"),
            MapError::OutOfCapacity { capacity } => {
                write!(f, "the output vector holds at most {capacity} segments")
            }
            MapError::Unaligned { index, granule } => write!(
                f,
                "segment {index} cannot join the contiguous IOVA range: interior segment boundaries must be aligned to the {granule:#x}-byte IOMMU granule"
            ),
            MapError::IovaExhausted { len } => {
                write!(
                    f,
                    "no free IOVA range of {len:#x} bytes in the IOMMU domain"
                )
            }
            MapError::BeyondDmaMask { index, last, mask } => write!(
                f,
                "segment {index} ends at {last:?}, beyond the device's DMA mask {mask:#x}"
            ),
            MapError::ProviderExhausted { len } => {
                write!(f, "the P2P provider has no free range of {len:#x} bytes")
            }
            MapError::BouncePoolExhausted { len } => {
                write!(f, "the bounce pool has no free slot of {len:#x} bytes")
            }
            MapError::OutOfBounds { offset, len, size } => write!(
                f,
                "range at offset {offset:#x} of {len:#x} bytes lies outside memory of {size:#x} bytes"
            ),
        }
    }
}
impl core::error::Error for MapError {}

impl MapError {
    /// `Ok` if `[offset, offset + len)` lies inside `size` bytes, else
    /// [`MapError::OutOfBounds`]: the one bounds rule for sub-ranges.
    pub(crate) fn check_within(offset: u64, len: u64, size: u64) -> Result<(), MapError> {
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(MapError::OutOfBounds { offset, len, size }),
        }
    }
}

/// What the software IOMMU reports when a device access is refused: the
/// same faults a hardware IOMMU raises.
///
/// ```
/// use dmaspace::error::IommuFault;
/// use dmaspace::Iova;
/// // SAFETY: only printed.
/// let e = IommuFault::NotPresent { iova: unsafe { Iova::new_unchecked(0x1000) } };
/// assert_eq!(e.to_string(), "IOMMU fault: Iova(0x1000) is not mapped (or not yet synced)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IommuFault {
    /// Nothing is mapped there, or the range was linked but not yet synced.
    NotPresent {
        /// The address the device used.
        iova: Iova,
    },
    /// The mapping exists but does not allow this access.
    Denied {
        /// The address the device used.
        iova: Iova,
        /// What the device tried.
        wanted: IommuPerm,
        /// What the mapping allows.
        allowed: IommuPerm,
    },
}

impl fmt::Display for IommuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IommuFault::NotPresent { iova } => {
                write!(f, "IOMMU fault: {iova:?} is not mapped (or not yet synced)")
            }
            IommuFault::Denied {
                iova,
                wanted,
                allowed,
            } => write!(
                f,
                "IOMMU fault: {iova:?} allows {allowed:?}, the device tried {wanted:?}"
            ),
        }
    }
}
impl core::error::Error for IommuFault {}

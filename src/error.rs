//! Typed errors. No operation of the crate signals failure with a sentinel
//! address or a panic.
//!
//! This module depends on nothing above the address types, so every other
//! module can use it.

use core::fmt;

use crate::backend::BackendError;
use crate::dir::IommuPerm;
use dmaspace_pci::Bdf;

/// Why a mapping, an allocation or a range description failed.
///
/// ```
/// use dmaspace::error::{MapError, MapErrorKind};
/// let e = MapError::OutOfCapacity { capacity: 4 };
/// assert_eq!(e.to_string(), "the output vector holds at most 4 segments");
/// assert_eq!(e.kind(), MapErrorKind::Exhausted);
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
    /// A segment shares an IOMMU granule with memory outside the buffer (or
    /// P2P allocation) it came from. The IOMMU maps whole granules, so the
    /// device would reach bytes the CPU still owns, or another P2P
    /// allocation; the crate refuses rather than bounce. Map whole-granule
    /// buffers (or let the segment cover its granules).
    PartialGranule {
        /// Index of the segment in the request.
        index: usize,
        /// The IOMMU granule in bytes.
        granule: u64,
    },
    /// The IOMMU domain has no free IOVA range of this size below the
    /// device's DMA mask.
    IovaExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// An address the device would be given lies beyond its DMA mask: a
    /// physical address without an IOMMU, or a bus address. Host memory
    /// could be bounced through a [`crate::swiotlb::Swiotlb`]; P2P memory
    /// never is.
    BeyondDmaMask {
        /// Index of the segment in the request.
        index: usize,
        /// Last byte the device would address.
        last: u64,
        /// The device's DMA mask.
        mask: u64,
    },
    /// A software IOMMU aperture that is not granule-aligned or passes the
    /// top of the address space.
    BadAperture {
        /// First IOVA of the aperture.
        base: u64,
        /// Its length in bytes.
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
    /// A mapping was asked for by another device than the one it was
    /// mapped for (two devices of one brand: the instance differs).
    WrongDevice,
    /// The route was classified for another client than the mapper's
    /// device (same brand, another instance).
    RouteMismatch,
    /// A P2P segment of the request belongs to another provider than the
    /// route's (same brand, another instance).
    ForeignProvider {
        /// Index of the segment in the request.
        index: usize,
    },
    /// A device-local segment (an offset in the device's own BAR) has no
    /// wire address.
    DeviceLocal,
    /// The segment is not an offset in the route's own BAR (a segment with
    /// a wire address, another BAR, or a route that is not same-device).
    NotOwnBar,
    /// The segment is not one of the mapping's segments.
    NotInMapping,
    /// The request needs more segments than the device takes
    /// ([`DmaLimits::max_segments`](crate::limits::DmaLimits::max_segments)),
    /// after merging and splitting.
    TooManySegments {
        /// Segments the device takes.
        max: usize,
        /// Segments the request needs.
        needed: usize,
    },
    /// P2P memory through an IOMMU backend that maps process virtual
    /// addresses (VFIO, iommufd), but the provider's BAR is not mapped into
    /// the process.
    NoCpuMapping {
        /// Index of the segment in the request.
        index: usize,
    },
    /// The IOMMU backend refused to map (VFIO, iommufd, or the software
    /// model out of memory). Nothing of the request stays mapped.
    Backend(BackendError),
    /// A slot of a registered pool would not be one segment for the device:
    /// larger than its maximum segment, or across a segment boundary (see
    /// [`DmaLimits`](crate::limits::DmaLimits)), or across two segments of
    /// the pool's mapping.
    PoolSlotSplit {
        /// Index of the slot.
        index: usize,
        /// Its device address.
        addr: u64,
    },
    /// Host memory whose physical address is unknown
    /// ([`HostPages::from_virt`](crate::host::HostPages::from_virt)) given to
    /// a mapper that needs it: no IOMMU ([`Mapper::direct`](crate::map::Mapper::direct)),
    /// or a backend that maps physical addresses.
    NoPhysAddr {
        /// Index of the segment in the request.
        index: usize,
    },
    /// An output segment would start at an address the device cannot take
    /// ([`DmaLimits::alignment`](crate::limits::DmaLimits::alignment)).
    Misaligned {
        /// The address.
        addr: u64,
        /// The alignment the device needs.
        align: u64,
    },
}

/// A mapping of an owned buffer was refused; the buffer comes back.
///
/// ```
/// use dmaspace::error::{MapBufError, MapError};
/// let e = MapBufError { error: MapError::IovaExhausted { len: 4096 }, buffer: vec![0u8; 4096] };
/// assert_eq!(e.to_string(), "could not map the buffer: no free IOVA range of 0x1000 bytes below the device's DMA mask");
/// let buffer = e.buffer;   // nothing is lost
/// # assert_eq!(buffer.len(), 4096);
/// ```
#[derive(Debug)]
pub struct MapBufError<Buf> {
    /// Why.
    pub error: MapError,
    /// The buffer, unmapped.
    pub buffer: Buf,
}

impl<Buf> fmt::Display for MapBufError<Buf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not map the buffer: {}", self.error)
    }
}

impl<Buf: fmt::Debug> core::error::Error for MapBufError<Buf> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The broad class of a [`MapError`], for a driver deciding what to do.
/// More classes may come: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// The request itself is wrong (empty, unaligned, out of bounds,
    /// overflowing, unreachable for the device): retrying will not help.
    InvalidRequest,
    /// A resource ran out (IOVA space, provider memory, bounce pool,
    /// output slots): retrying after others complete may succeed.
    Exhausted,
    /// An address, route or segment met another instance than its own.
    WrongInstance,
    /// Anything else the layer below reported (a backend's unclassified
    /// OS error).
    Other,
}

impl MapError {
    /// The broad class of the error.
    ///
    /// ```
    /// use dmaspace::error::{MapError, MapErrorKind};
    /// assert_eq!(MapError::WrongDevice.kind(), MapErrorKind::WrongInstance);
    /// assert_eq!(MapError::EmptySegment { index: 0 }.kind(), MapErrorKind::InvalidRequest);
    /// ```
    #[must_use]
    pub fn kind(&self) -> MapErrorKind {
        match self {
            MapError::OutOfCapacity { .. }
            | MapError::IovaExhausted { .. }
            | MapError::BouncePoolExhausted { .. } => MapErrorKind::Exhausted,
            MapError::Backend(e) => match e.kind() {
                crate::backend::BackendErrorKind::NoMemory => MapErrorKind::Exhausted,
                crate::backend::BackendErrorKind::Unmappable
                | crate::backend::BackendErrorKind::BadRange => MapErrorKind::InvalidRequest,
                _ => MapErrorKind::Other,
            },
            MapError::WrongDevice
            | MapError::RouteMismatch
            | MapError::ForeignProvider { .. }
            | MapError::NotInMapping => MapErrorKind::WrongInstance,
            MapError::Overflow { .. }
            | MapError::EmptySegment { .. }
            | MapError::Unaligned { .. }
            | MapError::PartialGranule { .. }
            | MapError::BeyondDmaMask { .. }
            | MapError::BadAperture { .. }
            | MapError::OutOfBounds { .. }
            | MapError::DeviceLocal
            | MapError::NotOwnBar
            | MapError::NoCpuMapping { .. }
            | MapError::NoPhysAddr { .. }
            | MapError::TooManySegments { .. }
            | MapError::PoolSlotSplit { .. }
            | MapError::Misaligned { .. } => MapErrorKind::InvalidRequest,
        }
    }

    /// Whether copying the memory into a bounce buffer of the driver's own
    /// (whole pages, below the device's DMA mask, with a known physical
    /// address, in one piece) and mapping that instead would succeed where
    /// mapping it in place did not: Linux's swiotlb decision. True for
    /// [`PartialGranule`](MapError::PartialGranule) (the granules hold
    /// memory outside the buffer), [`BeyondDmaMask`](MapError::BeyondDmaMask),
    /// [`NoPhysAddr`](MapError::NoPhysAddr) and
    /// [`TooManySegments`](MapError::TooManySegments); false for every error
    /// that a bounce would meet again (exhaustion, a wrong instance, an
    /// empty or overflowing request, a backend failure). Only host memory
    /// may be bounced: P2P memory never reaches a bounce buffer.
    ///
    /// ```
    /// use dmaspace::error::MapError;
    /// assert!(MapError::PartialGranule { index: 0, granule: 4096 }.bounce_would_help());
    /// assert!(!MapError::IovaExhausted { len: 4096 }.bounce_would_help());
    /// ```
    #[must_use]
    pub fn bounce_would_help(&self) -> bool {
        matches!(
            self,
            MapError::PartialGranule { .. }
                | MapError::BeyondDmaMask { .. }
                | MapError::NoPhysAddr { .. }
                | MapError::TooManySegments { .. }
        )
    }

    /// `Ok` if `[offset, offset + len)` lies inside `size` bytes, else
    /// [`MapError::OutOfBounds`]: the one bounds rule for sub-ranges.
    pub(crate) fn check_within(offset: u64, len: u64, size: u64) -> Result<(), MapError> {
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(MapError::OutOfBounds { offset, len, size }),
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Overflow { start, len } => write!(
                f,
                "range {start:#x} + {len:#x} passes the top of the 64-bit address space"
            ),
            MapError::EmptySegment { index } => write!(f, "segment {index} has length zero"),
            MapError::OutOfCapacity { capacity } => {
                write!(f, "the output vector holds at most {capacity} segments")
            }
            MapError::Unaligned { index, granule } => write!(
                f,
                "segment {index} cannot join the contiguous IOVA range: interior segment boundaries must be aligned to the {granule:#x}-byte IOMMU granule"
            ),
            MapError::PartialGranule { index, granule } => write!(
                f,
                "segment {index} shares a {granule:#x}-byte IOMMU granule with memory outside its buffer; the device would reach it too"
            ),
            MapError::IovaExhausted { len } => write!(
                f,
                "no free IOVA range of {len:#x} bytes below the device's DMA mask"
            ),
            MapError::BeyondDmaMask { index, last, mask } => write!(
                f,
                "segment {index} ends at {last:#x}, beyond the device's DMA mask {mask:#x}"
            ),
            MapError::BadAperture { base, len } => write!(
                f,
                "IOMMU aperture {base:#x} + {len:#x} is not granule-aligned or wraps"
            ),
            MapError::BouncePoolExhausted { len } => {
                write!(f, "the bounce pool has no free slot of {len:#x} bytes")
            }
            MapError::OutOfBounds { offset, len, size } => write!(
                f,
                "range at offset {offset:#x} of {len:#x} bytes lies outside memory of {size:#x} bytes"
            ),
            MapError::WrongDevice => {
                write!(f, "the mapping belongs to another device of the same brand")
            }
            MapError::RouteMismatch => write!(
                f,
                "the route was classified for another client than the mapper's device"
            ),
            MapError::ForeignProvider { index } => write!(
                f,
                "segment {index} is memory of another provider than the route's"
            ),
            MapError::DeviceLocal => write!(
                f,
                "the segment is an offset in the device's own BAR and has no wire address"
            ),
            MapError::NotOwnBar => write!(f, "the segment is not an offset in the route's own BAR"),
            MapError::NotInMapping => write!(f, "the segment is not one of the mapping's"),
            MapError::Backend(e) => write!(f, "the IOMMU backend refused: {e}"),
            MapError::NoCpuMapping { index } => write!(
                f,
                "segment {index} is P2P memory the IOMMU backend cannot reach: it maps process virtual addresses and the provider's BAR is not mapped into the process"
            ),
            MapError::NoPhysAddr { index } => write!(
                f,
                "segment {index} is host memory whose physical address is unknown, and this mapper needs it (no IOMMU, or a backend that maps physical addresses)"
            ),
            MapError::TooManySegments { max, needed } => write!(
                f,
                "the request needs {needed} segments, the device takes at most {max}"
            ),
            MapError::Misaligned { addr, align } => write!(
                f,
                "a segment would start at {addr:#x}, not aligned to the {align}-byte alignment the device needs"
            ),
            MapError::PoolSlotSplit { index, addr } => write!(
                f,
                "pool slot {index} at {addr:#x} would not be one segment for the device (maximum size or boundary)"
            ),
        }
    }
}
impl core::error::Error for MapError {}

/// What the software IOMMU reports when a device access is refused: the
/// same faults a hardware IOMMU raises. `addr` is the address as the device
/// emitted it.
///
/// ```
/// use dmaspace::error::IommuFault;
/// let e = IommuFault::NotPresent { addr: 0x1000 };
/// assert_eq!(e.to_string(), "IOMMU fault: 0x1000 is not mapped (or not yet synced)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IommuFault {
    /// Nothing is mapped there, or the range was linked but not yet synced.
    NotPresent {
        /// The address the device used.
        addr: u64,
    },
    /// The mapping exists but does not allow this access.
    Denied {
        /// The address the device used.
        addr: u64,
        /// What the device tried.
        wanted: IommuPerm,
        /// What the mapping allows.
        allowed: IommuPerm,
    },
}

impl fmt::Display for IommuFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IommuFault::NotPresent { addr } => {
                write!(
                    f,
                    "IOMMU fault: {addr:#x} is not mapped (or not yet synced)"
                )
            }
            IommuFault::Denied {
                addr,
                wanted,
                allowed,
            } => write!(
                f,
                "IOMMU fault: {addr:#x} allows {allowed:?}, the device tried {wanted:?}"
            ),
        }
    }
}
impl core::error::Error for IommuFault {}

/// Why a device could not be claimed or attached.
///
/// ```
/// use dmaspace::{error::ClaimError, pci::Bdf};
/// let e = ClaimError::AlreadyClaimed { bdf: Bdf::new(0, 3, 0, 0) };
/// assert_eq!(e.to_string(), "0000:03:00.0 is already driven by a live Device");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    /// The function is not in the machine's topology.
    NotInTopology {
        /// The function asked for.
        bdf: Bdf,
    },
    /// Another live `Device` of this machine drives the function.
    AlreadyClaimed {
        /// The function asked for.
        bdf: Bdf,
    },
    /// The device is attached to a live mapper already (one mapper, one
    /// IOMMU domain per device at a time).
    AlreadyAttached {
        /// The device's function.
        bdf: Bdf,
    },
    /// A `Machine` of this host, read from sysfs, is alive already: one
    /// process describes its host once, so each function has one claim.
    HostAlreadyLoaded,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::NotInTopology { bdf } => {
                write!(f, "{bdf} is not a function of this machine")
            }
            ClaimError::AlreadyClaimed { bdf } => {
                write!(f, "{bdf} is already driven by a live Device")
            }
            ClaimError::AlreadyAttached { bdf } => {
                write!(f, "{bdf} is already attached to a live mapper")
            }
            ClaimError::HostAlreadyLoaded => {
                write!(f, "this host's machine is already loaded in this process")
            }
        }
    }
}
impl core::error::Error for ClaimError {}

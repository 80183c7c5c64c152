//! The seam between a Hal type's static slot and the context installed in
//! it: what the slot calls, with the context's types erased.

use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use dmaspace::error::MapError;
use virtio_drivers::BufferDirection;

/// `dma_dealloc`'s answer for an address this context never handed out
/// (or already took back).
pub(crate) const DEALLOC_UNKNOWN: i32 = -1;
/// `dma_dealloc`'s answer when the address is live but the pointer or page
/// count is not the one `dma_alloc` returned.
pub(crate) const DEALLOC_MISMATCH: i32 = -2;

/// What a slot calls on the installed context (its types erased).
pub(crate) trait Bridge: Send + Sync {
    fn alloc(&self, pages: usize) -> Option<(u64, NonNull<u8>)>;
    fn dealloc(&self, paddr: u64, vaddr: NonNull<u8>, pages: usize) -> i32;
    /// # Safety
    /// `Hal::share`'s contract.
    unsafe fn share(&self, buffer: NonNull<[u8]>, dir: BufferDirection) -> Result<u64, ShareError>;
    /// # Safety
    /// `Hal::unshare`'s contract.
    unsafe fn unshare(
        &self,
        paddr: u64,
        buffer: NonNull<[u8]>,
        dir: BufferDirection,
    ) -> Result<(), UnshareError>;
    fn mmio(&self, paddr: u64, size: usize) -> Option<NonNull<u8>>;
    /// Unmaps everything live; leaks the memory of live allocations.
    fn revoke(&self) -> Revoked;
}

/// An allocation unmapped and leaked at uninstall.
pub(crate) struct Leaked {
    pub(crate) paddr: u64,
    pub(crate) vaddr: usize,
    pub(crate) pages: usize,
}

/// What [`Bridge::revoke`] did.
pub(crate) struct Revoked {
    pub(crate) leaked: Vec<Leaked>,
    pub(crate) unmapped_shares: usize,
}

/// Why `share` failed (it has no error channel: the Hal panics with this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShareError {
    /// An empty buffer.
    Empty,
    /// The memory source had no bounce buffer of `bytes` bytes.
    NoMemory {
        /// Bytes asked for.
        bytes: usize,
    },
    /// The mapper refused (no IOVA space left, the backend failed).
    Map(MapError),
    /// The mapping came out in several segments (the device's limits cut
    /// it), and virtio takes one address per buffer.
    Segments,
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty buffer"),
            Self::NoMemory { bytes } => write!(f, "no bounce buffer of {bytes} bytes"),
            Self::Map(e) => write!(f, "the mapper refused: {e}"),
            Self::Segments => f.write_str("the mapping needs several segments"),
        }
    }
}

/// Why `unshare` failed (it has no error channel: the Hal panics with this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnshareError {
    /// No live share has this device address (never shared, unshared
    /// already, or unmapped at uninstall).
    Unknown {
        /// The device address given.
        paddr: u64,
    },
    /// A share lives there, with another buffer or direction.
    Mismatch {
        /// The device address given.
        paddr: u64,
    },
}

impl fmt::Display for UnshareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown { paddr } => write!(f, "no live share at {paddr:#x}"),
            Self::Mismatch { paddr } => {
                write!(
                    f,
                    "the share at {paddr:#x} is of another buffer or direction"
                )
            }
        }
    }
}

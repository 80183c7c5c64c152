//! Host memory: the only memory the CPU may touch, bounce or cache-sync.
//!
//! [`HostPages`] pairs the CPU's view of a buffer (its bytes, at a process
//! virtual address) with its physical address. Handing it to a device
//! ([`HostPages::dma`]) borrows it exclusively, so the borrow checker keeps
//! the CPU away from the buffer for as long as any mapping of it lives.
//!
//! A device writes memory behind the compiler's back, so a buffer handed to
//! one is held as a raw pointer and turned into a reference only for the
//! moment the CPU uses it: while mapped, no reference to its bytes exists.

mod buffer;
#[cfg(feature = "alloc")]
mod simulated;

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::addr::PhysAddr;
use crate::dir::Direction;
use crate::error::MapError;
use crate::sealed::Sealed;
use crate::vec::HostSeg;

/// A buffer of host RAM: its bytes as the CPU sees them, and where they lie
/// physically.
///
/// ```
/// use dmaspace::host::{CpuAccessible, SimulatedRam};
/// // SAFETY: the simulated addresses never reach real hardware in this example.
/// let mut ram = unsafe { SimulatedRam::new(dmaspace::PhysAddr::new(0x10_0000), 2) };
/// let mut pages = ram.pages().next().unwrap();
/// pages.cpu_bytes_mut()[0] = 0xaa;
/// let seg = pages.dma();            // the device owns it now
/// assert_eq!(seg.len(), 4096);
/// // pages.cpu_bytes_mut()[0] = 0;  // would not compile while `seg` is used below
/// assert_eq!(seg.phys(), Some(dmaspace::PhysAddr::new(0x10_0000)));
/// ```
///
/// # Invariants
/// `ptr` is valid for reads and writes of `len` bytes for `'b`, exclusively
/// this value's (it stands for a `&'b mut [u8]`), `len` is below 2^61, and
/// those bytes are host RAM, at `[phys, phys + len)` when `phys` is known
/// (`Some`).
pub struct HostPages<'b> {
    ptr: NonNull<u8>,
    len: usize,
    phys: Option<PhysAddr>,
    _bytes: PhantomData<&'b mut [u8]>,
}

/// Buffers are shorter than this: [`HostSeg`] keeps flags in the top bits
/// of its length.
const MAX_LEN: u64 = 1 << 61;

// SAFETY: a `HostPages` is a `&mut [u8]` with an address: it may move to
// another thread, and `&HostPages` only reads.
unsafe impl Send for HostPages<'_> {}
// SAFETY: as above; shared access only reads the bytes.
unsafe impl Sync for HostPages<'_> {}

impl fmt::Debug for HostPages<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phys {
            Some(phys) => write!(f, "HostPages({phys:?} + {:#x})", self.len),
            None => write!(f, "HostPages(vaddr {:p} + {:#x})", self.ptr, self.len),
        }
    }
}

impl<'b> HostPages<'b> {
    /// Describes `bytes` as host RAM starting at `phys`.
    ///
    /// # Safety
    /// `bytes` must be the CPU's mapping of exactly the physical range
    /// `[phys, phys + bytes.len())` of host RAM (a kernel gets it from
    /// `page_address()`, a userspace driver from pinned, translated memory),
    /// and stay so while this value or any mapping made from it lives: a
    /// device given these addresses writes to that physical memory.
    ///
    /// # Errors
    /// [`MapError::Overflow`] if the range passes the top of the address
    /// space, or the buffer is 2^61 bytes or longer.
    ///
    /// ```
    /// use dmaspace::{host::HostPages, PhysAddr};
    /// let mut buf = [0u8; 64];
    /// // SAFETY: in this example nothing maps it for a real device.
    /// let pages = unsafe { HostPages::new(&mut buf, PhysAddr::new(0x1000)) }?;
    /// assert_eq!(pages.phys(), Some(PhysAddr::new(0x1000)));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub unsafe fn new(bytes: &'b mut [u8], phys: PhysAddr) -> Result<Self, MapError> {
        let len = bytes.len();
        // SAFETY: the slice is valid and exclusive for 'b, as the invariant needs.
        unsafe { Self::from_raw(NonNull::from(bytes).cast(), len, phys) }
    }

    /// Describes `bytes` as host RAM whose physical address the caller does
    /// not know: what a backend that maps process virtual addresses needs
    /// (VFIO type1, iommufd; the kernel pins and translates the pages). A
    /// mapper that needs the physical address (no IOMMU, or a backend that
    /// maps physical addresses) refuses its segments with
    /// [`MapError::NoPhysAddr`]; [`phys`](Self::phys) is `None`.
    ///
    /// # Safety
    /// `bytes` must be host RAM of this process (anonymous or file-backed
    /// memory, not a mapping of a device's BAR or other MMIO), and stay
    /// mapped at its address while this value or any mapping made from it
    /// lives: a backend given the address lets devices reach the pages
    /// behind it.
    ///
    /// # Errors
    /// [`MapError::Overflow`] if the buffer is 2^61 bytes or longer.
    ///
    /// ```
    /// use dmaspace::host::HostPages;
    /// let mut buf = [0u8; 64];
    /// // SAFETY: a buffer of this process; nothing maps it for a device here.
    /// let mut pages = unsafe { HostPages::from_virt(&mut buf) }?;
    /// assert_eq!(pages.phys(), None);
    /// assert_eq!(pages.dma().phys(), None);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub unsafe fn from_virt(bytes: &'b mut [u8]) -> Result<Self, MapError> {
        let len = bytes.len();
        // SAFETY: the slice is valid and exclusive for 'b, as the invariant needs.
        unsafe { Self::from_raw_parts(NonNull::from(bytes).cast(), len, None) }
    }

    /// A buffer from its parts.
    ///
    /// # Safety
    /// As the type's invariants: `ptr` valid and exclusively this value's
    /// for `len` bytes and `'b`, at physical `phys`.
    #[inline]
    pub(crate) unsafe fn from_raw(
        ptr: NonNull<u8>,
        len: usize,
        phys: PhysAddr,
    ) -> Result<Self, MapError> {
        // SAFETY: forwarded.
        unsafe { Self::from_raw_parts(ptr, len, Some(phys)) }
    }

    /// A buffer from its parts, physical address unknown when `phys` is
    /// `None`: how a [`DmaBuffer`] outside the crate (pinned memory of a VFIO
    /// process, a kernel allocation) describes memory it owns.
    ///
    /// # Safety
    /// As the type's invariants: `ptr` valid and exclusively this value's
    /// for `len` bytes and `'b`, host RAM, at physical `phys` if known.
    ///
    /// # Errors
    /// [`MapError::Overflow`] when the buffer would pass the top of the
    /// address space or exceed the largest buffer the crate describes.
    ///
    /// ```
    /// # use dmaspace::{host::HostPages, PhysAddr};
    /// let mut page = vec![0u8; 4096];
    /// let ptr = core::ptr::NonNull::new(page.as_mut_ptr()).unwrap();
    /// // SAFETY: `page` is this process's, not touched while `pages` lives,
    /// // and nothing maps it for a device here (the physical address is made up).
    /// let pages = unsafe { HostPages::from_raw_parts(ptr, 4096, Some(PhysAddr::new(0x1000_0000))) }?;
    /// assert_eq!(pages.len(), 4096);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[inline]
    pub unsafe fn from_raw_parts(
        ptr: NonNull<u8>,
        len: usize,
        phys: Option<PhysAddr>,
    ) -> Result<Self, MapError> {
        let len64 = len as u64;
        let start = phys.map_or(ptr.as_ptr() as u64, PhysAddr::as_u64);
        if len64 >= MAX_LEN || (len64 > 0 && start.checked_add(len64 - 1).is_none()) {
            return Err(MapError::Overflow { start, len: len64 });
        }
        // INVARIANT: `len < MAX_LEN` and no wrap of the range are checked above; valid,
        // exclusive for `'b` and host RAM at `phys` is the caller's contract.
        Ok(Self {
            ptr,
            len,
            phys,
            _bytes: PhantomData,
        })
    }

    /// The physical address of the first byte, `None` for memory known by
    /// its virtual address only ([`HostPages::from_virt`]).
    ///
    /// ```
    /// # let mut b = [0u8; 1];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(8)) }?;
    /// assert_eq!(p.phys(), Some(dmaspace::PhysAddr::new(8)));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn phys(&self) -> Option<PhysAddr> {
        self.phys
    }

    /// Length in bytes.
    ///
    /// ```
    /// # let mut b = [0u8; 3];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(8)) }?;
    /// assert_eq!(p.len(), 3);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the buffer is empty.
    ///
    /// ```
    /// # let mut b = [0u8; 0];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(8)) }?;
    /// assert!(p.is_empty());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hands the whole buffer to the device side. The CPU cannot touch the
    /// bytes again until the returned segment, and every mapping made from
    /// it, is gone.
    ///
    /// ```
    /// # let mut b = [0u8; 16];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x1000)) }?;
    /// let seg = p.dma();
    /// assert_eq!((seg.phys(), seg.len()), (Some(dmaspace::PhysAddr::new(0x1000)), 16));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn dma(&mut self) -> HostSeg<'_> {
        self.seg(0, self.len())
    }

    /// `[offset, offset + len)` (checked by the caller) as a segment.
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "offsets inside the buffer are below its usize length"
    )]
    fn seg(&mut self, offset: u64, len: u64) -> HostSeg<'_> {
        let own_virt = self.ptr.as_ptr() as u64;
        let covers = self
            .phys
            .is_some_and(|p| covers_granules(p.as_u64(), self.len(), offset, len));
        let covers_virt = covers_granules(own_virt, self.len(), offset, len);
        // `offset` lies inside the buffer, so the pointer stays in it.
        let vaddr = self.ptr.as_ptr() as usize + offset as usize;
        HostSeg::new(
            self.phys.map(|p| p + offset),
            vaddr,
            len,
            covers,
            covers_virt,
        )
    }

    /// Hands `[offset, offset + len)` of the buffer to the device side.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside the buffer.
    ///
    /// ```
    /// # let mut b = [0u8; 16];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x1000)) }?;
    /// let seg = p.dma_range(4, 8)?;
    /// assert_eq!(seg.phys(), Some(dmaspace::PhysAddr::new(0x1004)));
    /// assert!(p.dma_range(12, 8).is_err());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn dma_range(&mut self, offset: u64, len: u64) -> Result<HostSeg<'_>, MapError> {
        MapError::check_within(offset, len, self.len())?;
        Ok(self.seg(offset, len))
    }

    /// `[offset, offset + len)` of the buffer as a buffer of its own (for
    /// the CPU, or to hand to the device side), borrowing this one.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the range is not inside the buffer.
    ///
    /// ```
    /// # use dmaspace::host::CpuAccessible;
    /// # let mut b = [0u8; 16];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x1000)) }?;
    /// let mut part = p.sub_pages(8, 8)?;
    /// part.cpu_bytes_mut().fill(7);
    /// assert_eq!(part.phys(), Some(dmaspace::PhysAddr::new(0x1008)));
    /// assert_eq!(p.cpu_bytes()[8..], [7; 8]);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[expect(
        clippy::cast_possible_truncation,
        reason = "offset and len lie inside the buffer, whose length is a usize"
    )]
    pub fn sub_pages(&mut self, offset: u64, len: u64) -> Result<HostPages<'_>, MapError> {
        MapError::check_within(offset, len, self.len())?;
        // SAFETY: in bounds (checked above), so the pointer stays inside this
        // buffer, and the result borrows it exclusively.
        let ptr = unsafe { self.ptr.add(offset as usize) };
        // INVARIANT: `[offset, offset + len)` lies inside this buffer (checked above): host
        // RAM at `phys + offset`, shorter than 2^61, exclusive for the `&mut self` borrow.
        Ok(HostPages {
            ptr,
            len: len as usize,
            phys: self.phys.map(|p| p + offset),
            _bytes: PhantomData,
        })
    }

    /// Where the first byte is, without making a reference to the bytes
    /// (which a device may be writing): for alignment checks, and for
    /// owners that reach the bytes by raw pointer. Using it is the
    /// caller's `unsafe`.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// let expected = b.as_ptr();
    /// # // SAFETY: doc example, never mapped for hardware.
    /// let p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// assert_eq!(p.as_ptr().as_ptr().cast_const(), expected);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }
}

/// The IOMMU granule ([`iommu::GRANULE`](crate::iommu::GRANULE), which
/// asserts it is this): host memory sits below the IOMMU layer, so it names
/// the page, not the module above it.
const GRANULE: u64 = crate::addr::PAGE_SIZE;

/// Whether every IOMMU granule that `[offset, offset + len)` of a buffer
/// at `own` (of `size` bytes, `[own, own + size)` within the 64-bit space)
/// touches lies inside the buffer: then a device given those granules
/// reaches only bytes the CPU handed over with the exclusive borrow.
#[inline]
fn covers_granules(own: u64, size: u64, offset: u64, len: u64) -> bool {
    // The buffer's first granule and the one after its last byte; a buffer
    // may end at the very top of the 64-bit space.
    let start = own + offset;
    let first_ok = start & !(GRANULE - 1) >= own;
    // `start + len <= own + size`, which fits (checked where buffers are made).
    let last = start + (len.max(1) - 1);
    let buf_last = own + (size.max(1) - 1);
    first_ok && (last | (GRANULE - 1)) <= buf_last
}

/// Memory the CPU may read and write through a kernel mapping: host RAM.
///
/// P2P and MMIO memory do not implement it: the kernel refuses to kmap,
/// bounce or cache-sync them at run time; here such code does not compile.
#[diagnostic::on_unimplemented(
    message = "the CPU may not touch `{Self}` through a kernel mapping",
    label = "P2P/MMIO memory: never kmapped, bounced or cache-synced",
    note = "only host RAM (`HostPages`) is CPU-accessible; P2P memory is reached by a device, through a mapper"
)]
pub trait CpuAccessible: Sealed {
    /// The bytes, for reading.
    fn cpu_bytes(&self) -> &[u8];
    /// The bytes, for writing.
    fn cpu_bytes_mut(&mut self) -> &mut [u8];
}

impl Sealed for HostPages<'_> {}
impl CpuAccessible for HostPages<'_> {
    fn cpu_bytes(&self) -> &[u8] {
        // SAFETY: the invariant: valid for `len` bytes; `&self` shares them.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    fn cpu_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the invariant: valid and exclusive; `&mut self` makes this
        // the only reference for its lifetime.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// The memory of an owned mapping while the CPU owns it
/// ([`MappedBuf::pages`](crate::map::MappedBuf::pages)): its bytes, for
/// the CPU, and nothing to hand to a device. The memory stays linked for
/// its mapping, so it cannot go into a second mapping (there is no
/// `dma()`); that would be dma-debug's "overlapping mappings".
///
/// See [`MappedBuf`](crate::map::MappedBuf).
pub struct CpuPages<'b>(HostPages<'b>);

impl<'b> CpuPages<'b> {
    /// The CPU's view of `pages`, which stay mapped for a device.
    pub(crate) fn new(pages: HostPages<'b>) -> Self {
        Self(pages)
    }

    /// Length in bytes.
    ///
    /// See [`MappedBuf`](crate::map::MappedBuf).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether the buffer is empty.
    ///
    /// See [`MappedBuf`](crate::map::MappedBuf).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for CpuPages<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuPages({:?})", self.0)
    }
}

impl Sealed for CpuPages<'_> {}
impl CpuAccessible for CpuPages<'_> {
    fn cpu_bytes(&self) -> &[u8] {
        self.0.cpu_bytes()
    }
    fn cpu_bytes_mut(&mut self) -> &mut [u8] {
        self.0.cpu_bytes_mut()
    }
}

/// Cache maintenance of the platform, for non-coherent DMA. The mappers
/// call it for host memory only; P2P memory never reaches it (the
/// signature takes a [`HostSeg`]).
///
/// ```
/// use dmaspace::host::{CacheCoherent, CacheMaintenance};
/// let c = CacheCoherent;
/// # let _ = &c;
/// ```
pub trait CacheMaintenance {
    /// Whether both calls do nothing (a cache-coherent platform): then the
    /// mappers skip the walk over a request's segments that would make
    /// them. Leave it `false` unless that is so.
    const NOTHING_TO_DO: bool = false;
    /// Called after the CPU wrote the memory and before the device uses it
    /// (`dma_sync_single_for_device`: write back dirty lines).
    fn sync_for_device<D: Direction>(&self, seg: &HostSeg<'_>);
    /// Called after the device is done with the memory and before the CPU
    /// reads it (`dma_sync_single_for_cpu`: invalidate lines the device
    /// wrote behind the cache).
    fn sync_for_cpu<D: Direction>(&self, seg: &HostSeg<'_>);
}

/// A cache-coherent platform (x86): nothing to do.
///
/// ```
/// use dmaspace::host::{CacheCoherent, CacheMaintenance};
/// # let mut b = [0u8; 8];
/// # // SAFETY: doc example, never mapped for hardware.
/// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
/// CacheCoherent.sync_for_device::<dmaspace::dir::ToDevice>(&p.dma());
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCoherent;

impl CacheMaintenance for CacheCoherent {
    const NOTHING_TO_DO: bool = true;
    #[inline(always)]
    fn sync_for_device<D: Direction>(&self, _seg: &HostSeg<'_>) {}
    #[inline(always)]
    fn sync_for_cpu<D: Direction>(&self, _seg: &HostSeg<'_>) {}
}

pub use buffer::DmaBuffer;
#[cfg(feature = "alloc")]
pub use simulated::{RamBus, SimBuf, SimulatedRam};

#[cfg(test)]
mod tests {
    use super::*;

    /// The granule rule in plain 128-bit arithmetic, as the kernel states it.
    fn reference(phys: u64, buf_len: u64, offset: u64, len: u64) -> bool {
        let (g, own) = (u128::from(GRANULE), u128::from(phys));
        let start = own + u128::from(offset);
        let end = (start + u128::from(len)).next_multiple_of(g);
        start / g * g >= own && end <= own + u128::from(buf_len)
    }

    #[test]
    fn covers_granules_agrees_with_the_128_bit_rule() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let rounds = if cfg!(miri) { 300 } else { 200_000u64 };
        for i in 0..rounds {
            let r = next();
            // Addresses near granule edges and near the top of the space.
            let phys = match i % 3 {
                0 => (r % 64) * 1024,
                1 => u64::MAX - (r % 0x3000),
                _ => r & !0x3ff,
            };
            let buf_len = 1 + next() % 0x3000;
            let Some(_) = phys.checked_add(buf_len - 1) else {
                continue;
            };
            let offset = next() % buf_len;
            let len = 1 + next() % (buf_len - offset);
            assert_eq!(
                covers_granules(phys, buf_len, offset, len),
                reference(phys, buf_len, offset, len),
                "phys {phys:#x} buffer {buf_len:#x} range {offset:#x}+{len:#x}"
            );
        }
    }
}

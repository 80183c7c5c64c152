//! Where the adapter's host memory comes from: rings and other
//! [`Dma`](virtio_drivers::Hal::dma_alloc) regions, and bounce buffers.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use dmaspace::host::{DmaBuffer, HostPages};
use dmaspace::{PAGE_SIZE, PhysAddr};
use spin::Mutex;

/// A lookup from a driver buffer's CPU address to its physical address.
///
/// See [`HalContext::with_phys_lookup`](crate::HalContext::with_phys_lookup).
pub type PhysLookup = fn(NonNull<u8>, usize) -> Option<PhysAddr>;

/// The bytes of one page, as a `usize`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the page size, 4096, fits any usize"
)]
const PAGE: usize = PAGE_SIZE as usize;

/// A source of host memory for the adapter: a kernel's page allocator, a
/// VFIO driver's pinned memory, a test's `SimulatedRam`.
///
/// The memory contract is [`DmaBuffer`]'s (an `unsafe` trait, upheld by
/// the buffer type): each buffer is its own memory, freed only when it is
/// dropped, so a buffer the adapter leaks (on uninstall, while
/// virtio-drivers may still hold its pointer) is never handed out again.
///
/// ```
/// use dmaspace_virtio::{DmaMemory, HeapMemory, PagePool};
/// fn identity(p: core::ptr::NonNull<u8>, _: usize) -> Option<dmaspace::PhysAddr> {
///     Some(dmaspace::PhysAddr::new(p.as_ptr() as u64))
/// }
/// // SAFETY: an identity-mapped kernel's heap; in this example nothing reaches hardware.
/// let mut heap = unsafe { HeapMemory::new(identity) };
/// let pages = (0..4).filter_map(|_| heap.alloc(4096)).collect();
/// let mut pool = PagePool::new(pages);
/// let page = pool.alloc(4096).ok_or("no memory")?;
/// assert_eq!(pool.free_buffers(), 3);
/// drop(page);
/// assert_eq!(pool.free_buffers(), 4);
/// # Ok::<(), &str>(())
/// ```
pub trait DmaMemory: Send + 'static {
    /// The buffers this source hands out.
    type Buf: DmaBuffer + Send;

    /// A buffer of at least `bytes` bytes whose first byte is
    /// [`PAGE_SIZE`]-aligned (in the CPU's view and, when known, the
    /// physical one), or `None` if there is none. The adapter zeroes it.
    fn alloc(&mut self, bytes: usize) -> Option<Self::Buf>;
}

/// Page-aligned memory from the global allocator, at the physical
/// address a lookup gives: the heap of a kernel whose heap lies in its
/// linear map (rCore, ArceOS), or, in tests, simulated memory whose
/// "physical" address is its virtual one.
///
/// See [`DmaMemory`].
#[derive(Clone, Copy)]
pub struct HeapMemory {
    phys_of: PhysLookup,
}

impl HeapMemory {
    /// Memory from the global allocator, whose physical address `phys_of`
    /// gives.
    ///
    /// # Safety
    /// As [`HalContext::with_phys_lookup`](crate::HalContext::with_phys_lookup)
    /// for every block the global allocator returns: `phys_of(ptr, len)`
    /// is `Some(phys)` only if the block is host RAM at `[phys, phys +
    /// len)`, physically contiguous, for as long as it is allocated.
    ///
    /// See [`DmaMemory`].
    #[must_use]
    pub const unsafe fn new(phys_of: PhysLookup) -> Self {
        Self { phys_of }
    }
}

impl fmt::Debug for HeapMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeapMemory")
    }
}

impl DmaMemory for HeapMemory {
    type Buf = HeapBuf;

    fn alloc(&mut self, bytes: usize) -> Option<HeapBuf> {
        let len = bytes.max(1).checked_next_multiple_of(PAGE)?;
        let layout = Layout::from_size_align(len, PAGE).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) })?;
        let Some(phys) = (self.phys_of)(ptr, len) else {
            // SAFETY: allocated just above with this layout.
            unsafe { alloc::alloc::dealloc(ptr.as_ptr(), layout) };
            return None;
        };
        // SAFETY: the block is valid, this value's alone, at `phys`
        // (the constructor's contract); the check only validates the parts.
        if unsafe { HostPages::from_raw_parts(ptr, len, Some(phys)) }.is_err() {
            // SAFETY: as above.
            unsafe { alloc::alloc::dealloc(ptr.as_ptr(), layout) };
            return None;
        }
        // INVARIANT: a block of `layout` from the global allocator, at `phys`,
        // whose parts `from_raw_parts` accepted.
        Some(HeapBuf { ptr, len, phys })
    }
}

/// A block of a [`HeapMemory`], freed when dropped (never while leaked).
///
/// # Invariants
/// `ptr` is a block of the global allocator of `len` bytes, aligned to a
/// page, owned by this value, at physical `phys`; `HostPages::from_raw_parts`
/// accepts the three.
pub struct HeapBuf {
    ptr: NonNull<u8>,
    len: usize,
    phys: PhysAddr,
}

// SAFETY: an owned block of memory, as a `Box<[u8]>`.
unsafe impl Send for HeapBuf {}

impl fmt::Debug for HeapBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeapBuf({:?} + {:#x})", self.phys, self.len)
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: the invariant: allocated with this size and a page's
        // alignment, owned by this value, freed once, here.
        unsafe {
            alloc::alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, PAGE),
            );
        }
    }
}

// SAFETY: (1) the parts are fixed; (2) the block is this value's and freed
// only in `drop`; (3) `pages` touches no byte; (4) the pointer comes from
// the allocator, not from `&mut self`.
unsafe impl DmaBuffer for HeapBuf {
    fn pages(&mut self) -> HostPages<'_> {
        // SAFETY: the invariant.
        unsafe { HostPages::from_raw_parts(self.ptr, self.len, Some(self.phys)) }
            .unwrap_or_else(|_| unreachable!("checked in HeapMemory::alloc"))
    }
}

/// A [`DmaMemory`] over a fixed set of equal buffers (pages of a
/// `SimulatedRam`, chunks of VFIO pinned memory), each handed out whole
/// and taken back when dropped. Clones share the set, so a test (or a
/// driver's statistics) can watch it while a context owns another clone.
///
/// See [`DmaMemory`].
pub struct PagePool<B: DmaBuffer + Send> {
    inner: Arc<PoolInner<B>>,
}

struct PoolInner<B> {
    free: Mutex<Vec<B>>,
    chunk: usize,
}

impl<B: DmaBuffer + Send> PagePool<B> {
    /// A pool of `bufs`. Requests up to the size of the smallest buffer
    /// are served; buffers whose first byte is not page-aligned are refused
    /// at [`alloc`](DmaMemory::alloc) (dropped, not handed out).
    ///
    /// See [`DmaMemory`].
    #[must_use]
    pub fn new(mut bufs: Vec<B>) -> Self {
        let chunk = bufs
            .iter_mut()
            .map(|b| usize::try_from(b.pages().len()).unwrap_or(usize::MAX))
            .min()
            .unwrap_or(0);
        Self {
            inner: Arc::new(PoolInner {
                free: Mutex::new(bufs),
                chunk,
            }),
        }
    }

    /// Buffers not handed out now.
    ///
    /// See [`DmaMemory`].
    #[must_use]
    pub fn free_buffers(&self) -> usize {
        self.inner.free.lock().len()
    }
}

impl<B: DmaBuffer + Send> Clone for PagePool<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: DmaBuffer + Send> fmt::Debug for PagePool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagePool")
            .field("chunk", &self.inner.chunk)
            .field("free", &self.free_buffers())
            .finish()
    }
}

impl<B: DmaBuffer + Send> DmaMemory for PagePool<B> {
    type Buf = Pooled<B>;

    fn alloc(&mut self, bytes: usize) -> Option<Pooled<B>> {
        if bytes > self.inner.chunk {
            return None;
        }
        let mut free = self.inner.free.lock();
        while let Some(mut buf) = free.pop() {
            if page_aligned(&buf.pages()) {
                return Some(Pooled {
                    buf: Some(buf),
                    pool: Arc::clone(&self.inner),
                });
            }
            // Not page-aligned: never handed out (dropped here).
        }
        None
    }
}

/// Whether a buffer's first byte is page-aligned in the CPU's view and,
/// when known, the physical one. Reads no byte (only the slice's address),
/// and is called only on buffers no device holds.
pub(crate) fn page_aligned(pages: &HostPages<'_>) -> bool {
    use dmaspace::host::CpuAccessible;
    let virt = pages.cpu_bytes().as_ptr() as usize;
    virt.is_multiple_of(PAGE)
        && pages
            .phys()
            .is_none_or(|p| p.as_u64().is_multiple_of(PAGE_SIZE))
}

/// A buffer of a [`PagePool`], back in the pool when dropped (never while
/// leaked).
pub struct Pooled<B: DmaBuffer + Send> {
    /// `Some` until dropped.
    buf: Option<B>,
    pool: Arc<PoolInner<B>>,
}

impl<B: DmaBuffer + Send> fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pooled")
    }
}

impl<B: DmaBuffer + Send> Drop for Pooled<B> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.free.lock().push(buf);
        }
    }
}

// SAFETY: a `Pooled` is its inner buffer, whose contract holds (1, 3, 4:
// `pages` forwards to it); (2) the memory goes back to the pool, and so to
// someone else, only in `drop`: a leaked `Pooled` keeps its buffer out of
// the pool forever.
unsafe impl<B: DmaBuffer + Send> DmaBuffer for Pooled<B> {
    fn pages(&mut self) -> HostPages<'_> {
        match &mut self.buf {
            Some(b) => b.pages(),
            None => unreachable!("a pooled buffer is taken only in drop"),
        }
    }
}

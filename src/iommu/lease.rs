//! A reserved run of IOVA space, mapped through a backend. (Crate-internal:
//! `pub` only so that sealed traits can name it; the module is private.)

use super::GRANULE;
use super::iova_alloc::{IovaAllocator, IovaCache};
use super::link::Placed;
use crate::backend::{IommuBackend, Linker};
use crate::dir::IommuPerm;
use crate::error::MapError;

/// Where a lease's IOVA space comes from and goes back to: the shared
/// allocator, or a queue's cache in front of it.
#[derive(Clone, Copy, Debug)]
pub enum Pool<'d> {
    /// The domain's allocator.
    Shared(&'d IovaAllocator),
    /// A queue's cache.
    Cache(&'d IovaCache<'d>),
}

impl Pool<'_> {
    #[inline(always)]
    fn alloc(self, len: u64, mask: u64) -> Option<u64> {
        match self {
            Pool::Shared(a) => a.alloc(len, GRANULE, mask),
            Pool::Cache(c) => c.alloc(len, GRANULE, mask),
        }
    }

    #[inline(always)]
    fn free(self, start: u64, len: u64) {
        match self {
            Pool::Shared(a) => a.free(start, len),
            Pool::Cache(c) => c.free(start, len),
        }
    }
}

/// A reserved run of IOVA space; dropping it unmaps and frees it.
pub struct IovaLease<'d, B: IommuBackend> {
    backend: &'d B,
    pool: Pool<'d>,
    start: u64,
    len: u64,
}

// SAFETY: through `&IovaLease` only the backend is reached (`start`,
// `sync`, `unlink`, `linker`), and the backend is `Sync`. The pool is used
// only by `drop`, through `&mut`.
unsafe impl<B: IommuBackend + Sync> Sync for IovaLease<'_, B> {}
// SAFETY: the backend is `Sync`, so `&B` may move. The pool is the shared
// allocator (`Sync`) or a queue's cache, which is `!Sync` only so that its
// lock stays uncontended by design: every method of `IovaCache` takes the
// cache slot's spin lock (`Slot::pop`, `Slot::push`) or the allocator's, so
// a lease dropped on another thread frees into the cache under that lock,
// racing nothing. An owned mapping may therefore complete on another
// thread than the queue that mapped it (at the cost of a contended lock).
unsafe impl<B: IommuBackend + Sync> Send for IovaLease<'_, B> {}

impl<'d, B: IommuBackend> IovaLease<'d, B> {
    /// Reserves `bytes` (rounded up to granules) of `pool`'s space whose
    /// last byte is at most `mask`, to be mapped by `backend`. `None` if
    /// no free run is large enough (a `bytes` whose rounding passes 2^64
    /// fits no aperture).
    #[inline]
    pub fn reserve(backend: &'d B, pool: Pool<'d>, bytes: u64, mask: u64) -> Option<Self> {
        let len = bytes.div_ceil(GRANULE).checked_mul(GRANULE)?;
        let start = pool.alloc(len, mask)?;
        Some(Self {
            backend,
            pool,
            start,
            len,
        })
    }

    /// Length of the run in bytes (whole granules).
    #[inline(always)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// First IOVA of the run.
    #[inline(always)]
    pub fn start(&self) -> u64 {
        self.start
    }

    /// A linker for this run's links, all with `perm`.
    #[inline(always)]
    pub fn linker(&self, perm: IommuPerm) -> LeaseLinker<'_, B> {
        LeaseLinker {
            start: self.start,
            inner: self.backend.linker(perm),
        }
    }

    /// Links memory at `addr` where `placed` says, the run's one link, and
    /// makes it visible (`dma_iova_link` then `dma_iova_sync`, in one
    /// backend call).
    ///
    /// # Safety
    /// As [`IommuBackend::map`], for the memory at `addr`; `placed` is the
    /// whole run (its first granule, all of its granules).
    #[inline(always)]
    pub unsafe fn link_synced(
        &self,
        perm: IommuPerm,
        placed: Placed,
        addr: u64,
        mmio: bool,
    ) -> Result<(), MapError> {
        let iova = self.start + placed.first_granule as u64 * GRANULE;
        let len = placed.granules as u64 * GRANULE;
        // SAFETY: the range lies in this lease (the caller's promise); the
        // caller vouches for `addr`.
        unsafe {
            self.backend
                .map_synced(iova, addr & !(GRANULE - 1), len, perm, mmio)
        }
        .map_err(MapError::Backend)
    }

    /// Makes every link visible to the device (`dma_iova_sync`).
    #[inline]
    pub fn sync(&self) {
        // SAFETY: the run is this lease's; its owner (a `DmaVec` or an
        // `IovaRange`) unmaps only by value or `&mut` (the drop, an early
        // unmap), so no sync through `&self` runs beside the unmap.
        unsafe { self.backend.sync(self.start, self.len) };
    }

    /// Takes every link out of the device's reach now, keeping the run
    /// reserved until the lease is dropped (an early unmap).
    #[inline]
    pub fn unlink(&self) {
        // SAFETY: the range is this lease's.
        unsafe { self.backend.unmap(self.start, self.len) };
    }
}

impl<B: IommuBackend> Drop for IovaLease<'_, B> {
    #[inline]
    fn drop(&mut self) {
        self.unlink();
        self.pool.free(self.start, self.len);
    }
}

impl<B: IommuBackend> core::fmt::Debug for IovaLease<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IovaLease")
            .field("start", &format_args!("{:#x}", self.start))
            .field("len", &format_args!("{:#x}", self.len))
            .finish_non_exhaustive()
    }
}

/// Links the pieces of one lease where the link cursor placed them.
pub struct LeaseLinker<'a, B: IommuBackend + 'a> {
    start: u64,
    inner: B::Linker<'a>,
}

impl<B: IommuBackend> core::fmt::Debug for LeaseLinker<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LeaseLinker")
            .field("start", &format_args!("{:#x}", self.start))
            .finish_non_exhaustive()
    }
}

impl<B: IommuBackend> LeaseLinker<'_, B> {
    /// Links memory at `addr` (of the backend's kind) where `placed` says:
    /// whole granules of the run.
    ///
    /// # Safety
    /// As [`IommuBackend::map`], for the memory at `addr`.
    #[inline(always)]
    pub unsafe fn link(&mut self, placed: Placed, addr: u64, mmio: bool) -> Result<(), MapError> {
        // The domain accepted the backend's granule only if it is GRANULE.
        let iova = self.start + placed.first_granule as u64 * GRANULE;
        let len = placed.granules as u64 * GRANULE;
        // SAFETY: the range lies in this lease (the cursor places links
        // inside the run the plan sized); the caller vouches for `addr`.
        unsafe { self.inner.link(iova, addr & !(GRANULE - 1), len, mmio) }
            .map_err(MapError::Backend)
    }
}

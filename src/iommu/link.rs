//! The `dma_iova_link` rule, once: where each link of a run goes.
//! (Crate-internal: the items are `pub` only so that sealed traits can
//! name them; the module is private.)

use super::GRANULE;
use crate::dir::IommuPerm;
use crate::error::MapError;

/// The `dma_iova_link` rule, once: where each link of a run goes. Only the
/// first link may start inside a granule (it keeps its offset), and a link
/// that ends inside one must be the last.
#[derive(Clone, Copy, Default)]
pub(crate) struct LinkCursor {
    /// Bytes of the run so far, counted from its first granule; zero until
    /// the first link (links are never empty).
    end: u64,
}

/// Where one link lands in its run.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    /// Byte offset of the link's first byte from the run's first granule.
    pub at: u64,
    /// Index of the first granule it touches.
    pub first_granule: usize,
    /// Granules it touches.
    pub granules: usize,
}

impl LinkCursor {
    /// Checks a link of `len > 0` bytes at `addr`, the `index`-th segment of
    /// the request, against the rule and advances past it; returns its
    /// offset in the run.
    #[inline(always)]
    pub(crate) fn check(&mut self, addr: u64, len: u64, index: usize) -> Result<u64, MapError> {
        let lead = addr % GRANULE;
        let first = self.end == 0;
        if self.end % GRANULE != 0 || (!first && lead != 0) {
            return Err(MapError::Unaligned {
                index,
                granule: GRANULE,
            });
        }
        let at = if first { lead } else { self.end };
        self.end = at
            .checked_add(len)
            .ok_or(MapError::Overflow { start: addr, len })?;
        Ok(at)
    }

    /// Advances past a link that [`check`](Self::check) accepted in the
    /// same order, and says where it lands.
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the granules of one link: its length is a buffer's, a usize"
    )]
    pub(crate) fn advance(&mut self, addr: u64, len: u64) -> Placed {
        let lead = addr % GRANULE;
        let at = if self.end == 0 { lead } else { self.end };
        self.end = at + len;
        Placed {
            at,
            first_granule: (at / GRANULE) as usize,
            granules: (lead + len).div_ceil(GRANULE) as usize,
        }
    }

    /// Bytes the run needs, from its first granule (zero: no link).
    #[inline(always)]
    pub(crate) fn bytes(&self) -> u64 {
        self.end
    }
}
/// A reserved IOVA run, as a mapping's view uses it (object-safe).
pub trait Lease {
    /// First IOVA of the run.
    #[doc(hidden)]
    fn start(&self) -> u64;
    /// `dma_iova_sync`.
    #[doc(hidden)]
    fn sync(&self);
    /// Unmaps now (the run stays reserved until dropped).
    #[doc(hidden)]
    fn unlink(&self);
}

/// A reserved IOVA run, as the mapper links it.
pub trait LinkLease: Lease {
    /// The linker of one request.
    #[doc(hidden)]
    type Linker<'a>: LeaseLink
    where
        Self: 'a;
    /// A linker for the request's links, all with `perm`.
    #[doc(hidden)]
    fn linker(&self, perm: IommuPerm) -> Self::Linker<'_>;
    /// Links the run's one link, placed by a fresh cursor, and syncs it:
    /// as `linker(perm).link(..)` then [`Lease::sync`].
    ///
    /// # Safety
    /// As [`LeaseLink::link`]; `placed` covers the whole run.
    #[doc(hidden)]
    #[inline(always)]
    unsafe fn link_synced(
        &self,
        perm: IommuPerm,
        placed: Placed,
        addr: u64,
        mmio: bool,
    ) -> Result<(), MapError> {
        // SAFETY: forwarded; the caller upholds the contract.
        unsafe { self.linker(perm).link(placed, addr, mmio) }?;
        self.sync();
        Ok(())
    }
}

/// Links the pieces of a run.
pub trait LeaseLink {
    /// Links memory at `addr` where `placed` says.
    ///
    /// # Safety
    /// As [`IommuBackend::map`](crate::backend::IommuBackend::map).
    #[doc(hidden)]
    unsafe fn link(&mut self, placed: Placed, addr: u64, mmio: bool) -> Result<(), MapError>;
}

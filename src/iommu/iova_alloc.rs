//! A thread-safe IOVA allocator that never refuses a request a free hole
//! can hold, with per-queue caches in front (Linux's `iova_rcache` idea).
//!
//! # Structure
//!
//! - **Shared path** ([`IovaAllocator::alloc`], [`IovaAllocator::free`]):
//!   one spinlock around a tree of the free holes (an AVL tree
//!   keyed by start, each node augmented per alignment class with the
//!   longest aligned run its subtree can give) and a
//!   `BTreeMap` of the live allocations (start → length). Allocation takes
//!   the *highest* fitting place whose last byte is at most the limit
//!   (top-down, as Linux, which keeps low IOVAs for devices with a narrow
//!   DMA mask). Both are O(log n) in the number of live ranges, for any
//!   size, alignment and limit; nothing is sized by the aperture, so a
//!   48-bit (or 64-bit) aperture costs one tree node up front.
//! - **Per-queue caches** ([`IovaCache`]): for requests up to
//!   [`CACHE_MAX_GRANULES`] granules, a cache keeps two magazines of freed
//!   ranges per exact size and serves from them; full and empty magazines
//!   are traded with a per-size depot, so the shared tree is touched once
//!   per magazine, not once per request. Each cache has its own lock, which
//!   only the cache's owner takes in normal operation: it is there so that
//!   a refused request can take back what every cache holds (Linux's
//!   `free_cpu_cached_iovas`) and retry before refusing. That is what keeps
//!   the "never refuses" guarantee with caches in front. A cache's miss
//!   takes the highest place that starts a line of 8 granules (the 64
//!   bytes of their page-table entries), and only if there is none the
//!   place as asked: the ranges two queues keep cycling then never share a
//!   cache line of entries, which their threads would otherwise bounce
//!   between them on every map and unmap.
//!
//! # Bad frees
//!
//! Every range out of the tree is recorded in the *live record* (start →
//! length, and whether it is handed out or parked in a cache), sharded by
//! start under 64 small locks, so a cache's fast path takes one of them and
//! never the tree's lock. Every free, through the allocator or any cache,
//! on any thread, is checked against it at the call, and a bad one changes
//! nothing:
//!
//! - a range not handed out: never allocated, already freed into the tree,
//!   or already freed into a cache (this one, another one, or a depot the
//!   cache's magazine moved to): [`FreeError::NotAllocated`];
//! - a live range freed with another length: [`FreeError::WrongLength`];
//! - empty, not granule-aligned, or outside the aperture:
//!   [`FreeError::OutsideAperture`].
//!
//! `try_free` returns the [`FreeError`]; `free` counts it in
//! [`IovaAllocator::bad_frees`] (and `debug_assert`s). Not detected: a free
//! by a second owner after the range was legitimately freed *and handed
//! out again* (it looks like the new owner's free; the typed API above,
//! where a lease frees its own range once, rules that out).
//!
//! ```
//! use dmaspace::iommu::iova_alloc::IovaAllocator;
//! // A 48-bit aperture above 4 GiB, 4 KiB granules: nothing allocated up front.
//! let iova = IovaAllocator::new(1 << 32, (1 << 48) - (1 << 32), 4096)?;
//! let a = iova.alloc(3 * 4096, 4096, u64::MAX).ok_or("no IOVA")?;
//! // 2 MiB, 2 MiB-aligned, for a device with a 40-bit DMA mask.
//! let b = iova.alloc(2 << 20, 2 << 20, (1 << 40) - 1).ok_or("no IOVA")?;
//! assert_eq!(b % (2 << 20), 0);
//! assert!(b + (2 << 20) - 1 <= (1 << 40) - 1);
//! assert_eq!(iova.allocated_bytes(), 3 * 4096 + (2 << 20));
//!
//! let q = iova.cache(); // one per queue
//! let c = q.alloc(4096, 4096, u64::MAX).ok_or("no IOVA")?;
//! q.free(c, 4096);
//! iova.free(a, 3 * 4096);
//! iova.free(b, 2 << 20);
//! assert_eq!(iova.allocated_bytes(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
// Also the P2P provider's lock.
mod tree;

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

pub use cache::{CACHE_MAX_GRANULES, IovaCache};

use crate::error::MapError;
use crate::sync::SpinLock;
use cache::{Depot, Slot};
use tree::HoleTree;

/// The IOVA space `[base, base + len)`, handed out in whole granules.
///
/// `Send + Sync`: share it (`&IovaAllocator`, or an `Arc`) between all the
/// queues of a domain, and give each queue its own [`IovaCache`].
///
/// ```
/// use dmaspace::iommu::iova_alloc::IovaAllocator;
/// fn assert_send_sync<T: Send + Sync>() {}
/// assert_send_sync::<IovaAllocator>();
/// let iova = IovaAllocator::new(0x1000_0000, 1 << 30, 4096)?;
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let q = iova.cache();
///             let a = q.alloc(8192, 4096, u64::MAX).expect("space left");
///             q.free(a, 8192);
///         });
///     }
/// });
/// assert_eq!(iova.allocated_bytes(), 0);
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
pub struct IovaAllocator {
    base: u64,
    len: u64,
    shift: u32,
    /// Aperture in granule numbers: `[lo, hi)`.
    lo: u64,
    hi: u64,
    shared: SpinLock<Shared>,
    /// The live record; see the module's "Bad frees".
    live: Vec<LiveShard>,
    /// One depot per cached size (index: granules - 1).
    depots: Vec<Depot>,
    /// Every cache's slot, reused when a cache is dropped.
    slots: SpinLock<Vec<Arc<Slot>>>,
    /// Granules out of the tree (handed out or parked in caches), mirrored
    /// from `shared` for lock-free reads.
    out_granules: AtomicU64,
    bad_frees: AtomicU64,
}

/// Granules whose page-table entries fill one 64-byte cache line (8-byte
/// entries); see [`IovaAllocator::alloc_req_spread`].
const LINE_GRANULES: u64 = 8;
/// Its alignment class.
const LINE_CLASS: u32 = LINE_GRANULES.trailing_zeros();

/// What the shared lock protects.
struct Shared {
    holes: HoleTree,
    out: u64,
}

/// Shards of the live record (a power of two).
const LIVE_SHARDS: usize = 64;

/// One shard of the live record: start granule → [`Live`] entry, for the
/// ranges out of the tree whose start hashes here. Entries are added and
/// removed only under the tree's lock (the slow path); a cache's alloc
/// and free only flip an entry's parked bit (no allocation).
#[repr(align(64))] // its own cache line: queues on other cores use other shards
struct LiveShard(SpinLock<BTreeMap<u64, u64>>);

/// A live record entry: granules `<< 1`, with [`PARKED`] set while the
/// range sits in a cache or depot (free, ready to be handed out again)
/// and clear while its owner holds it.
struct Live;

impl Live {
    const PARKED: u64 = 1;

    #[inline(always)]
    const fn handed(n: u64) -> u64 {
        n << 1
    }

    #[inline(always)]
    const fn parked(n: u64) -> u64 {
        n << 1 | Self::PARKED
    }

    /// Checks a free of `n` granules at byte `start` against the entry
    /// `e`: the range must be handed out, with this length.
    #[inline(always)]
    fn check_free(
        e: Option<u64>,
        n: u64,
        start: u64,
        len: u64,
        shift: u32,
    ) -> Result<(), FreeError> {
        match e {
            Some(e) if e == Self::handed(n) => Ok(()),
            Some(e) if e & Self::PARKED == 0 && e >> 1 != n => Err(FreeError::WrongLength {
                start,
                len,
                allocated: (e >> 1) << shift,
            }),
            // Absent, or parked: never allocated, or freed already.
            _ => Err(FreeError::NotAllocated { start, len }),
        }
    }
}

/// A normalised request, in granules.
#[derive(Clone, Copy)]
pub(crate) struct Req {
    n: u64,
    class: u32,
    lim_end: u64,
}

impl Req {
    /// Whether a range starting at granule `g` satisfies the request.
    /// (`lim_end >= n`: [`IovaAllocator::request`] checks it; `g + n`
    /// could pass 2^64 with a one-byte granule at the top of the space.)
    #[inline(always)]
    fn accepts(&self, g: u64) -> bool {
        g & ((1u64 << self.class) - 1) == 0 && g <= self.lim_end - self.n
    }
}

/// Why a free was refused; the allocator is unchanged.
///
/// ```
/// use dmaspace::iommu::iova_alloc::{FreeError, IovaAllocator};
/// let iova = IovaAllocator::new(0, 1 << 20, 4096)?;
/// let a = iova.alloc(8192, 4096, u64::MAX).ok_or("full")?;
/// assert_eq!(iova.try_free(a, 4096), Err(FreeError::WrongLength { start: a, len: 4096, allocated: 8192 }));
/// iova.try_free(a, 8192)?;
/// assert_eq!(iova.try_free(a, 8192), Err(FreeError::NotAllocated { start: a, len: 8192 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreeError {
    /// The range is empty, or does not start on a granule, or leaves the
    /// aperture.
    OutsideAperture {
        /// First byte given.
        start: u64,
        /// Length given.
        len: u64,
    },
    /// No live allocation starts there: never allocated, or already freed.
    NotAllocated {
        /// First byte given.
        start: u64,
        /// Length given.
        len: u64,
    },
    /// A live allocation starts there with another length (rounded to
    /// granules).
    WrongLength {
        /// First byte given.
        start: u64,
        /// Length given.
        len: u64,
        /// Length of the live allocation, in bytes.
        allocated: u64,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeError::OutsideAperture { start, len } => write!(
                f,
                "IOVA free {start:#x} + {len:#x} is empty, unaligned or outside the aperture"
            ),
            FreeError::NotAllocated { start, len } => write!(
                f,
                "IOVA free {start:#x} + {len:#x}: not allocated (double free?)"
            ),
            FreeError::WrongLength {
                start,
                len,
                allocated,
            } => write!(
                f,
                "IOVA free {start:#x} + {len:#x}: the allocation there is {allocated:#x} bytes"
            ),
        }
    }
}

impl core::error::Error for FreeError {}

impl IovaAllocator {
    /// The IOVA space `[base, base + len)`, handed out in whole `granule`s
    /// (a power of two).
    ///
    /// # Errors
    /// [`MapError::BadAperture`] if `granule` is not a power of two, `base`
    /// or `len` is not a multiple of it, `len` is zero, or the aperture
    /// passes the top of the 64-bit space.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// use dmaspace::error::MapError;
    /// let iova = IovaAllocator::new(0, 1 << 48, 4096)?;
    /// assert_eq!(iova.allocated_bytes(), 0);
    /// assert!(matches!(IovaAllocator::new(0x800, 1 << 20, 4096), Err(MapError::BadAperture { .. })));
    /// assert!(IovaAllocator::new(0, 1 << 20, 3000).is_err());
    /// assert!(IovaAllocator::new(u64::MAX - 4095, 8192, 4096).is_err());
    /// # Ok::<(), MapError>(())
    /// ```
    pub fn new(base: u64, len: u64, granule: u64) -> Result<Self, MapError> {
        let bad = MapError::BadAperture { base, len };
        if !granule.is_power_of_two()
            || base % granule != 0
            || len % granule != 0
            || len == 0
            || base.checked_add(len).is_none()
        {
            return Err(bad);
        }
        let shift = granule.trailing_zeros();
        let (lo, hi) = (base >> shift, (base + len) >> shift);
        Ok(Self {
            base,
            len,
            shift,
            lo,
            hi,
            shared: SpinLock::new(Shared {
                holes: HoleTree::new(lo, hi),
                out: 0,
            }),
            live: (0..LIVE_SHARDS)
                .map(|_| LiveShard(SpinLock::new(BTreeMap::new())))
                .collect(),
            depots: (1..=CACHE_MAX_GRANULES).map(Depot::new).collect(),
            slots: SpinLock::new(Vec::new()),
            out_granules: AtomicU64::new(0),
            bad_frees: AtomicU64::new(0),
        })
    }

    /// `len` bytes (rounded up to granules), starting at a multiple of
    /// `align`, last byte at most `limit` (a device's DMA mask); the highest
    /// such place. `None` only if no free hole can hold it.
    ///
    /// `align` below the granule counts as the granule, and one that is not
    /// a power of two as the next power of two. A `len` of zero asks for
    /// nothing and gets `None`.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 30, 4096)?;
    /// let a = iova.alloc(5000, 1 << 16, 0xFFFF_FFFF).ok_or("full")?;
    /// assert_eq!(a, (1 << 30) - (1 << 16)); // top-down, two granules, 64 KiB aligned
    /// assert_eq!(iova.allocated_bytes(), 8192);
    /// assert_eq!(iova.alloc(8192, 4096, 0xFFF), None); // below 4 KiB: no room for two granules
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use = "an allocated range leaks unless freed"]
    pub fn alloc(&self, len: u64, align: u64, limit: u64) -> Option<u64> {
        let r = self.request(len, align, limit)?;
        self.alloc_req(r)
    }

    /// Gives back a range [`alloc`](Self::alloc) returned, with the same
    /// `len`. A bad free changes nothing; it is counted in
    /// [`bad_frees`](Self::bad_frees) (and `debug_assert`s): use
    /// [`try_free`](Self::try_free) to get the reason.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 20, 4096)?;
    /// let a = iova.alloc(1 << 20, 4096, u64::MAX).ok_or("full")?;
    /// iova.free(a, 1 << 20);
    /// assert_eq!(iova.alloc(1 << 20, 4096, u64::MAX), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn free(&self, start: u64, len: u64) {
        if let Err(e) = self.try_free(start, len) {
            self.report(e);
        }
    }

    /// [`free`](Self::free), saying why a bad free was refused.
    ///
    /// # Errors
    /// [`FreeError`]: the range is outside the aperture, not handed out
    /// (never allocated, or freed already, into the tree or into any
    /// cache), or of another length. The allocator is unchanged.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::{FreeError, IovaAllocator};
    /// let iova = IovaAllocator::new(1 << 20, 1 << 20, 4096)?;
    /// assert!(matches!(iova.try_free(0, 4096), Err(FreeError::OutsideAperture { .. })));
    /// assert!(matches!(iova.try_free(1 << 20, 4096), Err(FreeError::NotAllocated { .. })));
    /// // Freed into a cache is freed: the tree refuses a second free.
    /// let q = iova.cache();
    /// let a = q.alloc(4096, 4096, u64::MAX).ok_or("full")?;
    /// q.try_free(a, 4096)?;
    /// assert_eq!(iova.try_free(a, 4096), Err(FreeError::NotAllocated { start: a, len: 4096 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_free(&self, start: u64, len: u64) -> Result<(), FreeError> {
        let (g, n) = self.granules_of(start, len)?;
        self.shared.with(|s| {
            self.live_shard(g).with(|live| {
                Live::check_free(live.get(&g).copied(), n, start, len, self.shift)?;
                if s.release(g, n, self.shift, &self.out_granules) {
                    live.remove(&g);
                }
                Ok(())
            })
        })
    }

    /// A per-queue (per-CPU) cache in front of the shared allocator: sizes
    /// up to [`CACHE_MAX_GRANULES`] granules are served and returned
    /// without touching the shared tree. Dropping it returns what it holds.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 30, 4096)?;
    /// let q = iova.cache();
    /// let a = q.alloc(4096, 4096, u64::MAX).ok_or("full")?;
    /// q.free(a, 4096);
    /// assert_eq!(q.alloc(4096, 4096, u64::MAX), Some(a)); // served from the cache
    /// q.free(a, 4096);
    /// drop(q);
    /// assert_eq!(iova.allocated_bytes(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache(&self) -> IovaCache<'_> {
        IovaCache::new(self)
    }

    /// Bytes handed out and not yet freed (ranges parked in caches count as
    /// free). Exact when no call is in flight; a snapshot otherwise.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 20, 4096)?;
    /// let _a = iova.alloc(1, 4096, u64::MAX).ok_or("full")?;
    /// assert_eq!(iova.allocated_bytes(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn allocated_bytes(&self) -> u64 {
        let parked_in_depots: u64 = self.depots.iter().map(Depot::parked).sum();
        let parked_in_caches: u64 = self.slots.with(|v| v.iter().map(|s| s.parked()).sum());
        let out = self.out_granules.load(Ordering::Relaxed);
        out.saturating_sub(parked_in_depots + parked_in_caches) << self.shift
    }

    /// How many frees were refused as bad (double, never allocated, wrong
    /// length, outside the aperture) by [`free`](Self::free) or
    /// [`IovaCache::free`] ([`try_free`](Self::try_free) returns the
    /// reason instead). A parked range that the tree refuses when a
    /// magazine reaches it would count too; the live record makes that
    /// impossible.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 20, 4096)?;
    /// assert_eq!(iova.bad_frees(), 0);
    /// assert!(iova.try_free(0, 4096).is_err()); // try_free reports, not counts
    /// assert_eq!(iova.bad_frees(), 0);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn bad_frees(&self) -> u64 {
        self.bad_frees.load(Ordering::Relaxed)
    }

    // --- crate-internal ---

    fn report(&self, e: FreeError) {
        self.bad_frees.fetch_add(1, Ordering::Relaxed);
        debug_assert!(false, "{e}");
    }

    /// Normalises a request; `None` if no hole could ever hold it.
    #[inline]
    pub(crate) fn request(&self, len: u64, align: u64, limit: u64) -> Option<Req> {
        if len == 0 {
            return None;
        }
        let g = 1u64 << self.shift;
        let n = len.div_ceil(g);
        let align = align.max(g).checked_next_power_of_two()?;
        let class = (align >> self.shift).trailing_zeros();
        // Granules whose last byte is at most `limit`: floor((limit + 1) / g).
        let below = (limit >> self.shift).saturating_add(u64::from(limit & (g - 1) == g - 1));
        let lim_end = below.min(self.hi);
        if lim_end < self.lo.checked_add(n)? {
            return None;
        }
        Some(Req { n, class, lim_end })
    }

    /// The shared path: the tree, and if it refuses, everything the caches
    /// hold back into it and one more try.
    pub(crate) fn alloc_req(&self, r: Req) -> Option<u64> {
        let got = self.alloc_tree(r);
        let g = match got {
            Some(g) => g,
            None if self.reclaim() => self.alloc_tree(r)?,
            None => return None,
        };
        Some(g << self.shift)
    }

    /// One try of the tree: carves the range and records it handed out.
    #[inline]
    fn alloc_tree(&self, r: Req) -> Option<u64> {
        self.shared.with(|s| {
            let g = s.alloc(r, &self.out_granules)?;
            self.live_shard(g)
                .with(|live| live.insert(g, Live::handed(r.n)));
            Some(g)
        })
    }

    /// The shard of the live record that holds the range starting at `g`.
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the hash's top bits, below LIVE_SHARDS"
    )]
    fn live_shard(&self, g: u64) -> &SpinLock<BTreeMap<u64, u64>> {
        // Fibonacci hashing: neighbouring ranges land in different shards.
        let h = g.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - LIVE_SHARDS.trailing_zeros());
        &self.live[h as usize].0
    }

    /// A cache's free of the handed-out range `g` of `n` granules (byte
    /// `start`, `len` as given): marks it parked, or says why not.
    #[inline]
    pub(crate) fn park(&self, g: u64, n: u64, start: u64, len: u64) -> Result<(), FreeError> {
        self.live_shard(g).with(|live| {
            let e = live.get_mut(&g);
            Live::check_free(e.as_deref().copied(), n, start, len, self.shift)?;
            if let Some(e) = e {
                *e = Live::parked(n);
            }
            Ok(())
        })
    }

    /// A cache hands out the parked range `g` of `n` granules.
    #[inline]
    pub(crate) fn unpark(&self, g: u64, n: u64) {
        self.live_shard(g).with(|live| {
            let e = live.get_mut(&g);
            debug_assert!(
                e.as_deref() == Some(&Live::parked(n)),
                "a cached range is parked in the live record"
            );
            if let Some(e) = e {
                *e = Live::handed(n);
            }
        });
    }

    /// Ranges in the live record (handed out or parked).
    #[cfg(all(test, not(loom)))]
    fn live_count(&self) -> usize {
        self.live.iter().map(|l| l.0.with(|m| m.len())).sum()
    }

    /// A queue cache's miss: as [`alloc_req`](Self::alloc_req), but first
    /// tries a place that starts a line of [`LINE_GRANULES`] granules, so
    /// that the ranges two queues keep cycling never share a cache line of
    /// page-table entries (false sharing between their threads). Falls back
    /// to `r` as asked: never refuses what `alloc_req` would give.
    #[inline]
    pub(crate) fn alloc_req_spread(&self, r: Req) -> Option<u64> {
        if r.class < LINE_CLASS {
            let spread = Req {
                class: LINE_CLASS,
                ..r
            };
            if let Some(g) = self.alloc_tree(spread) {
                return Some(g << self.shift);
            }
        }
        self.alloc_req(r)
    }

    /// `(start, len)` in granules, checked against the aperture.
    #[inline]
    pub(crate) fn granules_of(&self, start: u64, len: u64) -> Result<(u64, u64), FreeError> {
        let g = 1u64 << self.shift;
        let n = len.div_ceil(g);
        let first = start >> self.shift;
        let ok = len != 0
            && start % g == 0
            && first >= self.lo
            && first.checked_add(n).is_some_and(|end| end <= self.hi);
        if ok {
            Ok((first, n))
        } else {
            Err(FreeError::OutsideAperture { start, len })
        }
    }

    /// Frees parked ranges back into the tree; counts those it refuses
    /// (none: a range is parked only by a checked free).
    pub(crate) fn release_parked(&self, n: u64, starts: &[u64]) {
        if starts.is_empty() {
            return;
        }
        let bad = self.shared.with(|s| {
            starts
                .iter()
                .filter(|&&g| {
                    self.live_shard(g).with(|live| {
                        let ok = live.get(&g) == Some(&Live::parked(n))
                            && s.release(g, n, self.shift, &self.out_granules);
                        if ok {
                            live.remove(&g);
                        }
                        !ok
                    })
                })
                .count()
        });
        if bad > 0 {
            self.bad_frees.fetch_add(bad as u64, Ordering::Relaxed);
        }
    }

    /// Returns everything the depots and the caches hold to the tree;
    /// whether there was anything.
    fn reclaim(&self) -> bool {
        let mut any = false;
        for d in &self.depots {
            any |= d.drain(|n, starts| self.release_parked(n, starts));
        }
        self.slots.with(|slots| {
            for s in slots.iter() {
                any |= s.drain(self);
            }
        });
        any
    }
}

impl Shared {
    /// Carves `r` out of the holes; the caller records it live.
    fn alloc(&mut self, r: Req, out: &AtomicU64) -> Option<u64> {
        let (h, pos) = self.holes.find(r.n, r.class, r.lim_end)?;
        self.holes.carve(h, pos, r.n);
        self.out += r.n;
        out.store(self.out, Ordering::Relaxed);
        Some(pos)
    }

    /// Gives the live range `g` of `n` granules back to the holes; whether
    /// it did (the caller then drops it from the live record).
    fn release(&mut self, g: u64, n: u64, shift: u32, out: &AtomicU64) -> bool {
        // A live range never overlaps a hole: the release cannot fail.
        let released = self.holes.release(g, n).is_ok();
        debug_assert!(released, "live range {:#x} overlaps a hole", g << shift);
        if released {
            self.out -= n;
            out.store(self.out, Ordering::Relaxed);
        }
        released
    }
}

impl fmt::Debug for IovaAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IovaAllocator")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &format_args!("{:#x}", self.len))
            .field("granule", &format_args!("{:#x}", 1u64 << self.shift))
            .field("allocated_bytes", &self.allocated_bytes())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    static_assertions::assert_impl_all!(IovaAllocator: Send, Sync);
    static_assertions::assert_impl_all!(IovaCache<'static>: Send);
    static_assertions::assert_not_impl_any!(IovaCache<'static>: Sync);

    const G: u64 = 4096;

    #[test]
    fn exact_fit_after_fragmentation() {
        // 16 granules; take all, free every other one, then a 2-aligned
        // single granule must still be found where it exists.
        let a = IovaAllocator::new(0, 16 * G, G).unwrap();
        let got: Vec<u64> = (0..16).map(|_| a.alloc(G, G, u64::MAX).unwrap()).collect();
        assert_eq!(a.alloc(G, G, u64::MAX), None);
        for &x in got.iter().filter(|&&x| (x / G) % 2 == 1) {
            a.free(x, G);
        }
        // Only odd granules are free: nothing 8 KiB-aligned, no 2 granules.
        assert_eq!(a.alloc(G, 2 * G, u64::MAX), None);
        assert_eq!(a.alloc(2 * G, G, u64::MAX), None);
        assert_eq!(a.alloc(G, G, 2 * G - 1), Some(G));
        a.shared.with(|s| s.holes.check());
        assert_eq!(a.bad_frees(), 0);
    }

    #[test]
    fn bad_frees_change_nothing() {
        let a = IovaAllocator::new(1 << 20, 1 << 20, G).unwrap();
        let x = a.alloc(3 * G, G, u64::MAX).unwrap();
        let before = a.shared.with(|s| s.holes.to_vec());
        assert!(matches!(
            a.try_free(x + G, G),
            Err(FreeError::NotAllocated { .. })
        ));
        assert!(matches!(
            a.try_free(x, 2 * G),
            Err(FreeError::WrongLength { .. })
        ));
        assert!(matches!(
            a.try_free(x + 1, G),
            Err(FreeError::OutsideAperture { .. })
        ));
        assert!(matches!(
            a.try_free(u64::MAX - G + 1, G),
            Err(FreeError::OutsideAperture { .. })
        ));
        assert_eq!(a.shared.with(|s| s.holes.to_vec()), before);
        a.try_free(x, 3 * G).unwrap();
        assert!(matches!(
            a.try_free(x, 3 * G),
            Err(FreeError::NotAllocated { .. })
        ));
        assert_eq!(a.allocated_bytes(), 0);
    }

    #[test]
    fn limits_and_alignments() {
        let a = IovaAllocator::new(G, (1 << 33) - G, G).unwrap();
        let x = a.alloc(G, 1 << 32, u64::MAX).unwrap();
        assert_eq!(x, 1 << 32);
        let y = a.alloc(1 << 20, 1 << 20, u32::MAX.into()).unwrap();
        assert_eq!(y, (1 << 32) - (1 << 20));
        // Below a limit that is not granule-aligned: the last whole granule.
        let z = a.alloc(G, G, 0x2_0FFE).unwrap();
        assert_eq!(z, 0x1_F000);
        // A 64 GiB alignment has no place in an 8 GiB aperture at G.
        assert_eq!(a.alloc(G, 1 << 36, u64::MAX), None);
        assert_eq!(a.alloc(0, G, u64::MAX), None);
        assert_eq!(a.alloc(G, G, 0), None);
        // Alignment 3 counts as 4, below the granule as the granule.
        assert!(a.alloc(G, 3, u64::MAX).is_some());
    }

    #[test]
    fn cache_serves_its_own_frees_and_gives_back_on_drop() {
        let a = IovaAllocator::new(0, 1 << 30, G).unwrap();
        let q = a.cache();
        let x = q.alloc(3 * G, G, u64::MAX).unwrap();
        q.free(x, 3 * G);
        assert_eq!(a.allocated_bytes(), 0);
        assert_eq!(q.alloc(3 * G, G, u64::MAX), Some(x), "from the magazine");
        assert_eq!(q.alloc(3 * G, G, u64::MAX).map(|y| y < x), Some(true));
        assert_eq!(a.allocated_bytes(), 6 * G);
        q.free(x, 3 * G);
        assert_eq!(
            q.try_free(x, 3 * G),
            Err(FreeError::NotAllocated {
                start: x,
                len: 3 * G
            })
        );
        drop(q);
        // What the cache held is back in the tree, merged.
        assert_eq!(a.live_count(), 1);
        assert_eq!(a.bad_frees(), 0);
    }

    #[test]
    fn magazines_overflow_into_depot_and_tree() {
        let a = IovaAllocator::new(0, 1 << 30, G).unwrap();
        let q = a.cache();
        let n = if cfg!(miri) { 80 } else { 2000 };
        let got: Vec<u64> = (0..n).map(|_| q.alloc(G, G, u64::MAX).unwrap()).collect();
        for &x in &got {
            q.free(x, G);
        }
        assert_eq!(a.allocated_bytes(), 0);
        let parked = a.depots[0].parked() + a.slots.with(|v| v[0].parked());
        assert!(parked <= n as u64);
        // Everything comes back from somewhere, without overlap.
        let mut again: Vec<u64> = (0..n).map(|_| q.alloc(G, G, u64::MAX).unwrap()).collect();
        again.sort_unstable();
        again.dedup();
        assert_eq!(again.len(), n);
        for &x in &again {
            a.free(x, G);
        }
        drop(q);
        assert_eq!(a.allocated_bytes(), 0);
        assert_eq!(a.shared.with(|s| s.holes.to_vec()), [(0, (1 << 30) / G)]);
        assert_eq!(a.bad_frees(), 0);
    }

    #[test]
    fn refusal_takes_back_what_caches_hold() {
        // 8 granules. Two caches park everything; a 8-granule request
        // from the allocator must still succeed.
        let a = IovaAllocator::new(0, 8 * G, G).unwrap();
        let (q1, q2) = (a.cache(), a.cache());
        let xs: Vec<u64> = (0..8).map(|_| a.alloc(G, G, u64::MAX).unwrap()).collect();
        for (i, &x) in xs.iter().enumerate() {
            if i % 2 == 0 {
                q1.free(x, G)
            } else {
                q2.free(x, G)
            }
        }
        assert_eq!(a.allocated_bytes(), 0);
        let all = a.alloc(8 * G, G, u64::MAX).unwrap();
        assert_eq!(all, 0);
        assert_eq!(q1.alloc(G, G, u64::MAX), None);
        a.free(all, 8 * G);
        // A cache's miss takes the highest place that starts a line of
        // page-table entries (8 granules): here the only one, 0.
        assert_eq!(q2.alloc(2 * G, 2 * G, u64::MAX), Some(0));
        assert_eq!(q2.alloc(2 * G, 2 * G, u64::MAX), Some(6 * G));
        assert_eq!(a.bad_frees(), 0);
    }

    #[test]
    fn cache_misses_start_their_own_line_of_entries() {
        // Two queues' first ranges: never within one line of 8 entries.
        let a = IovaAllocator::new(0, 1 << 30, G).unwrap();
        let (q1, q2) = (a.cache(), a.cache());
        let x = q1.alloc(G, G, u64::MAX).unwrap();
        let y = q2.alloc(G, G, u64::MAX).unwrap();
        assert_eq!(x / G % LINE_GRANULES, 0);
        assert_eq!(y / G % LINE_GRANULES, 0);
        assert_ne!(x / G / LINE_GRANULES, y / G / LINE_GRANULES);
        // When no line start fits, the place as asked: nothing refused.
        let b = IovaAllocator::new(G, 4 * G, G).unwrap();
        let q = b.cache();
        let got: Vec<u64> = (0..4).map(|_| q.alloc(G, G, u64::MAX).unwrap()).collect();
        assert_eq!(got, [4 * G, 3 * G, 2 * G, G]);
        assert_eq!(q.alloc(G, G, u64::MAX), None);
        // Frees are checked as before.
        q1.free(x, G);
        assert_eq!(
            q1.try_free(x, G),
            Err(FreeError::NotAllocated { start: x, len: G })
        );
        drop((q1, q2));
        assert_eq!(a.bad_frees(), 0);
        assert!(matches!(
            a.try_free(x, G),
            Err(FreeError::NotAllocated { .. })
        ));
        assert!(matches!(
            a.try_free(y, 2 * G),
            Err(FreeError::WrongLength { .. })
        ));
    }

    #[test]
    fn never_allocated_cache_free_is_caught_at_the_call() {
        let a = IovaAllocator::new(0, 1 << 20, G).unwrap();
        let q = a.cache();
        // Never allocated: the live record says so, before anything is parked.
        assert_eq!(
            q.try_free(5 * G, G),
            Err(FreeError::NotAllocated {
                start: 5 * G,
                len: G
            })
        );
        assert_eq!(q.alloc(G, G, 6 * G - 1).map(|x| x != 5 * G), Some(true));
        drop(q);
        assert_eq!(a.bad_frees(), 0);
        assert_eq!(a.live_count(), 1);
    }

    #[test]
    fn whole_top_of_the_space() {
        // The aperture may end one granule short of 2^64.
        let base = u64::MAX - (1 << 20) + 1 - G;
        let a = IovaAllocator::new(base, 1 << 20, G).unwrap();
        assert_eq!(a.alloc(1 << 20, G, u64::MAX), Some(base));
        a.free(base, 1 << 20);
        let one = IovaAllocator::new(0, 1 << 12, 1).unwrap();
        assert_eq!(one.alloc(1, 1 << 11, u64::MAX), Some(1 << 11));
    }
}

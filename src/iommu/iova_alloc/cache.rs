//! Per-queue caches of freed ranges ("magazines", Bonwick's and Linux's
//! `iova_rcache`), and the per-size depots they trade magazines with.
//!
//! Lock order, always taken in this order and never the other way:
//! the slot registry, a cache's slot, a depot, the shared tree, a shard of
//! the live record.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::mem;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{FreeError, IovaAllocator, Req};
use crate::sync::SpinLock;

/// The largest request, in granules, that an [`IovaCache`] serves from
/// its magazines: 128 granules, 512 KiB with 4 KiB granules, a common
/// NVMe transfer limit (MDTS), so that a full-size request does not take
/// the shared lock and tree (Linux caches up to 128 KiB, and rounds sizes
/// up to a power of two; here each size in granules is its own class, so
/// nothing is rounded up, and a class's magazines are made on first use).
/// Larger requests go to the shared tree.
///
/// ```
/// use dmaspace::iommu::iova_alloc::CACHE_MAX_GRANULES;
/// assert_eq!(CACHE_MAX_GRANULES * 4096, 512 << 10);
/// ```
pub const CACHE_MAX_GRANULES: u64 = 128;

/// Ranges per magazine.
const MAG: usize = 32;
/// Full magazines a depot keeps per size before giving ranges back to the
/// tree (and empty ones it keeps for reuse).
const DEPOT_MAX: usize = 16;

/// A stack of range starts (granule numbers), all of one size.
struct Mag {
    n: usize,
    items: [u64; MAG],
}

impl Mag {
    fn boxed() -> Box<Self> {
        Box::new(Mag {
            n: 0,
            items: [0; MAG],
        })
    }

    #[inline(always)]
    fn is_full(&self) -> bool {
        self.n == MAG
    }

    #[inline(always)]
    fn starts(&self) -> &[u64] {
        &self.items[..self.n]
    }

    /// Takes the most recent range that satisfies `r` (the top one, unless
    /// alignment or limit say otherwise).
    #[inline]
    fn take_fit(&mut self, r: &Req) -> Option<u64> {
        let j = self.starts().iter().rposition(|&g| r.accepts(g))?;
        let g = self.items[j];
        self.n -= 1;
        self.items[j] = self.items[self.n];
        Some(g)
    }
}

/// The shared stock of magazines of one size.
pub(crate) struct Depot {
    /// Granules per range in this depot.
    size: u64,
    inner: SpinLock<DepotInner>,
    /// Granules parked here (for `allocated_bytes`).
    parked: AtomicU64,
}

#[expect(
    clippy::vec_box,
    reason = "magazines move between caches and the depot as pointers, not 264-byte copies"
)]
struct DepotInner {
    full: Vec<Box<Mag>>,
    empty: Vec<Box<Mag>>,
    parked: u64,
}

impl Depot {
    pub(crate) fn new(size: u64) -> Self {
        Self {
            size,
            inner: SpinLock::new(DepotInner {
                full: Vec::new(),
                empty: Vec::new(),
                parked: 0,
            }),
            parked: AtomicU64::new(0),
        }
    }

    pub(crate) fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    fn set_parked(&self, d: &mut DepotInner, parked: u64) {
        d.parked = parked;
        self.parked.store(parked, Ordering::Relaxed);
    }

    /// Takes the full magazine `mag` for an empty one, if there is room.
    fn put_full(&self, mag: &mut Box<Mag>) -> bool {
        self.inner.with(|d| {
            if d.full.len() >= DEPOT_MAX {
                return false;
            }
            let empty = d.empty.pop().unwrap_or_else(Mag::boxed);
            let full = mem::replace(mag, empty);
            let parked = d.parked + full.n as u64 * self.size;
            d.full.push(full);
            self.set_parked(d, parked);
            true
        })
    }

    /// Swaps the empty magazine `mag` for a full one, if there is one.
    /// Returns the granules moved out of the depot.
    fn take_full(&self, mag: &mut Box<Mag>) -> u64 {
        self.inner.with(|d| {
            let Some(full) = d.full.pop() else { return 0 };
            let moved = full.n as u64 * self.size;
            let mut empty = mem::replace(mag, full);
            empty.n = 0;
            if d.empty.len() < DEPOT_MAX {
                d.empty.push(empty);
            }
            let parked = d.parked - moved;
            self.set_parked(d, parked);
            moved
        })
    }

    /// Gives every parked range to `release`; whether there was any.
    pub(crate) fn drain(&self, mut release: impl FnMut(u64, &[u64])) -> bool {
        self.inner.with(|d| {
            let any = !d.full.is_empty();
            while let Some(mut m) = d.full.pop() {
                release(self.size, m.starts());
                m.n = 0;
                if d.empty.len() < DEPOT_MAX {
                    d.empty.push(m);
                }
            }
            self.set_parked(d, 0);
            any
        })
    }
}

/// What one cache holds: two magazines per size, made on first use.
/// Reused by the next cache when its cache is dropped.
#[repr(align(64))] // its own cache line: only its owner writes it
pub(crate) struct Slot {
    mags: SpinLock<SlotMags>,
    in_use: AtomicBool,
    /// Granules parked in `mags` (for `allocated_bytes`).
    parked: AtomicU64,
}

struct SlotMags {
    classes: Vec<Option<Box<ClassMags>>>,
    parked: u64,
}

struct ClassMags {
    loaded: Box<Mag>,
    prev: Box<Mag>,
}

impl SlotMags {
    #[inline(always)]
    fn class(classes: &mut [Option<Box<ClassMags>>], c: usize) -> &mut ClassMags {
        classes[c].get_or_insert_with(|| {
            Box::new(ClassMags {
                loaded: Mag::boxed(),
                prev: Mag::boxed(),
            })
        })
    }
}

impl Slot {
    fn new() -> Self {
        Self {
            mags: SpinLock::new(SlotMags {
                classes: (0..CACHE_MAX_GRANULES).map(|_| None).collect(),
                parked: 0,
            }),
            in_use: AtomicBool::new(true),
            parked: AtomicU64::new(0),
        }
    }

    pub(crate) fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// A cached range for `r` (of `r.n <= CACHE_MAX_GRANULES` granules).
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a size class, below the number of classes"
    )]
    fn pop(&self, r: &Req, depot: &Depot, alloc: &IovaAllocator) -> Option<u64> {
        let c = (r.n - 1) as usize;
        self.mags.with(|m| {
            let cm = SlotMags::class(&mut m.classes, c);
            let got = match cm.loaded.take_fit(r) {
                Some(g) => Some(g),
                None => cm.prev.take_fit(r),
            };
            let got = match got {
                Some(g) => Some(g),
                // Both magazines spent: a full one from the depot.
                None if cm.loaded.n == 0 => {
                    let moved = depot.take_full(&mut cm.loaded);
                    m.parked += moved;
                    cm.loaded.take_fit(r)
                }
                // Ranges held, none aligned or low enough: the tree decides.
                None => None,
            };
            if let Some(g) = got {
                m.parked -= r.n;
                alloc.unpark(g, r.n);
            }
            self.parked.store(m.parked, Ordering::Relaxed);
            got
        })
    }

    /// Parks the range `g` of `n <= CACHE_MAX_GRANULES` granules (byte
    /// `start`, `len` as given); `Err` if the live record refuses the free
    /// (see [`IovaAllocator::park`]).
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a size class, below the number of classes"
    )]
    fn push(
        &self,
        (g, n): (u64, u64),
        (start, len): (u64, u64),
        depot: &Depot,
        alloc: &IovaAllocator,
    ) -> Result<(), FreeError> {
        let c = (n - 1) as usize;
        self.mags.with(|m| {
            alloc.park(g, n, start, len)?;
            let cm = SlotMags::class(&mut m.classes, c);
            if cm.loaded.is_full() {
                if cm.prev.is_full() {
                    let out = cm.prev.n as u64 * n;
                    if !depot.put_full(&mut cm.prev) {
                        // The depot is full too: back to the tree.
                        alloc.release_parked(n, cm.prev.starts());
                        cm.prev.n = 0;
                    }
                    m.parked -= out;
                }
                // `prev` has room; make it the loaded one.
                mem::swap(&mut cm.loaded, &mut cm.prev);
            }
            cm.loaded.items[cm.loaded.n] = g;
            cm.loaded.n += 1;
            m.parked += n;
            self.parked.store(m.parked, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Gives every parked range back to the tree; whether there was any.
    pub(crate) fn drain(&self, alloc: &IovaAllocator) -> bool {
        self.mags.with(|m| {
            let mut any = false;
            for (c, cm) in m.classes.iter_mut().enumerate() {
                let Some(cm) = cm else { continue };
                for mag in [&mut cm.loaded, &mut cm.prev] {
                    any |= mag.n > 0;
                    alloc.release_parked(c as u64 + 1, mag.starts());
                    mag.n = 0;
                }
            }
            m.parked = 0;
            self.parked.store(0, Ordering::Relaxed);
            any
        })
    }
}

/// A per-queue cache in front of an [`IovaAllocator`]: requests up to
/// [`CACHE_MAX_GRANULES`] granules are served from, and freed into, its
/// own magazines; the shared tree is touched once per magazine (32 ranges),
/// through a per-size depot. `Send`, not `Sync`: one per queue or CPU.
/// Dropping it gives back what it holds.
///
/// Ranges may be freed through another cache, or through the allocator,
/// than the one they came from. Every free through a cache is checked
/// against the allocator's live record (one of its 64 shard locks, not the
/// tree's lock): a second free, wherever the first one went, a free of a
/// range never allocated and a free with another length are refused at the
/// call (see the module's "Bad frees").
///
/// ```
/// use dmaspace::iommu::iova_alloc::IovaAllocator;
/// let iova = IovaAllocator::new(0, 1 << 30, 4096)?;
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         let q = iova.cache(); // made here, used (Send) on the queue's thread
///         s.spawn(move || {
///             for _ in 0..1000 {
///                 let a = q.alloc(16384, 4096, u64::MAX).expect("space");
///                 q.free(a, 16384);
///             }
///         });
///     }
/// });
/// assert_eq!(iova.allocated_bytes(), 0);
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
pub struct IovaCache<'a> {
    alloc: &'a IovaAllocator,
    slot: Arc<Slot>,
    /// `!Sync`: a cache's lock is meant to stay uncontended.
    _not_sync: PhantomData<Cell<()>>,
}

impl<'a> IovaCache<'a> {
    pub(crate) fn new(alloc: &'a IovaAllocator) -> Self {
        let slot = alloc.slots.with(|slots| {
            let reuse = slots.iter().find(|s| {
                s.in_use
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            });
            match reuse {
                Some(s) => Arc::clone(s),
                None => {
                    let s = Arc::new(Slot::new());
                    slots.push(Arc::clone(&s));
                    s
                }
            }
        });
        Self {
            alloc,
            slot,
            _not_sync: PhantomData,
        }
    }

    /// As [`IovaAllocator::alloc`]: `len` bytes (rounded up to granules),
    /// aligned to `align`, last byte at most `limit`; from this cache when
    /// it holds a fitting range, else from the shared tree. `None` only if
    /// no free hole can hold it (after taking back what every cache holds).
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 30, 4096)?;
    /// let q = iova.cache();
    /// let a = q.alloc(4096, 4096, u64::MAX).ok_or("full")?;
    /// q.free(a, 4096);
    /// // The cached range is below 1 GiB but not 2 MiB-aligned: the tree serves.
    /// let b = q.alloc(4096, 2 << 20, u64::MAX).ok_or("full")?;
    /// assert_eq!(b % (2 << 20), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use = "an allocated range leaks unless freed"]
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a size class, below the number of classes"
    )]
    pub fn alloc(&self, len: u64, align: u64, limit: u64) -> Option<u64> {
        let r = self.alloc.request(len, align, limit)?;
        if r.n <= CACHE_MAX_GRANULES {
            let depot = &self.alloc.depots[(r.n - 1) as usize];
            if let Some(g) = self.slot.pop(&r, depot, self.alloc) {
                return Some(g << self.alloc.shift);
            }
            // A miss: a range on a line of page-table entries of its own.
            return self.alloc.alloc_req_spread(r);
        }
        self.alloc.alloc_req(r)
    }

    /// As [`IovaAllocator::free`]: gives back a range an `alloc` returned
    /// (through any cache or the allocator), with the same `len`. A bad
    /// free is counted in [`IovaAllocator::bad_frees`] (and
    /// `debug_assert`s); [`try_free`](Self::try_free) says why.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::IovaAllocator;
    /// let iova = IovaAllocator::new(0, 1 << 30, 4096)?;
    /// let a = iova.alloc(8192, 4096, u64::MAX).ok_or("full")?;
    /// let q = iova.cache();
    /// q.free(a, 8192); // parked in the cache, no longer allocated
    /// assert_eq!(iova.allocated_bytes(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn free(&self, start: u64, len: u64) {
        if let Err(e) = self.try_free(start, len) {
            self.alloc.report(e);
        }
    }

    /// [`free`](Self::free), saying why a bad free was refused.
    ///
    /// # Errors
    /// As [`IovaAllocator::try_free`]: [`FreeError::OutsideAperture`] for
    /// a range outside the aperture or not granule-aligned;
    /// [`FreeError::NotAllocated`] for a range not handed out (never
    /// allocated, or freed already through this cache, another cache or
    /// the allocator); [`FreeError::WrongLength`] for a live range freed
    /// with another length. The allocator is unchanged.
    ///
    /// ```
    /// use dmaspace::iommu::iova_alloc::{FreeError, IovaAllocator};
    /// let iova = IovaAllocator::new(0, 1 << 30, 4096)?;
    /// let q = iova.cache();
    /// let a = q.alloc(4096, 4096, u64::MAX).ok_or("full")?;
    /// q.try_free(a, 4096)?;
    /// assert_eq!(q.try_free(a, 4096), Err(FreeError::NotAllocated { start: a, len: 4096 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a size class, below the number of classes"
    )]
    pub fn try_free(&self, start: u64, len: u64) -> Result<(), FreeError> {
        let (g, n) = self.alloc.granules_of(start, len)?;
        if n > CACHE_MAX_GRANULES {
            return self.alloc.try_free(start, len);
        }
        let depot = &self.alloc.depots[(n - 1) as usize];
        self.slot.push((g, n), (start, len), depot, self.alloc)
    }
}

impl Drop for IovaCache<'_> {
    fn drop(&mut self) {
        self.slot.drain(self.alloc);
        self.slot.in_use.store(false, Ordering::Release);
    }
}

impl fmt::Debug for IovaCache<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IovaCache")
            .field("parked_bytes", &(self.slot.parked() << self.alloc.shift))
            .finish_non_exhaustive()
    }
}

//! A sparse, thread-safe software IOMMU page table: a radix tree like a
//! hardware IOMMU's (4 levels of 512 entries over a 48-bit IOVA space,
//! 4 KiB granule), its entries `AtomicU64`s whose bits belong to the caller
//! (0 means empty).
//!
//! - Tables below the root are allocated when a non-zero entry first needs
//!   them, installed with one compare-and-swap (a thread that loses the race
//!   frees its own and uses the winner's), and freed only when the whole
//!   table drops: a reader never meets a freed table, so reads take no lock
//!   and no reference count.
//! - [`SoftPageTable::set`] and [`SoftPageTable::update`] walk from the root
//!   once per leaf table (512 granules), not once per granule.
//! - Memory: 4 KiB per table in use; an empty table is one null pointer.
//!
//! # Concurrency contract
//!
//! Any number of threads may call any method at once. Entry writes are
//! `Release` stores and reads `Acquire` loads, so a thread that reads an
//! entry sees everything its writer did before writing it (the bytes of a
//! buffer mapped there, say). [`SoftPageTable::update`] is a load then a
//! store per entry, not an atomic read-modify-write: two threads updating
//! the *same* entry at once may lose one update. The IOMMU layer never does
//! that, because each IOVA range has one owner (the allocator hands it out
//! once); threads working on disjoint ranges, even within one leaf table,
//! never interfere.
//!
//! Under `--cfg loom` the geometry shrinks (3 levels of 2 entries) so that
//! the model tests can explore every interleaving of table installs.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use core::fmt;
use core::ptr::{self, NonNull};

use super::GRANULE;

const GRANULE_SHIFT: u32 = 12;
const _: () = assert!(GRANULE == 1 << GRANULE_SHIFT);

#[cfg(not(loom))]
const LEVEL_BITS: u32 = 9;
#[cfg(not(loom))]
const LEVELS: u32 = 4;
#[cfg(loom)]
const LEVEL_BITS: u32 = 1;
#[cfg(loom)]
const LEVELS: u32 = 3;

/// Entries per table.
const FANOUT: usize = 1 << LEVEL_BITS;
/// Bits of IOVA the table translates: 48.
pub(crate) const IOVA_BITS: u32 = GRANULE_SHIFT + LEVELS * LEVEL_BITS;
/// Granules the table covers: IOVAs `[0, 2^IOVA_BITS)`.
const GRANULES: u64 = 1 << (IOVA_BITS - GRANULE_SHIFT);

/// One table: `FANOUT` slots of one kind.
#[repr(C)]
struct Table<T> {
    slots: [T; FANOUT],
}

/// A leaf: the entries.
type Leaf = Table<AtomicU64>;
/// A directory: pointers to the next level (directories, or leaves in the
/// last directory level), null while absent.
type Dir = Table<AtomicPtr<()>>;

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// `iova` is not granule-aligned, or the range passes `2^48`.
    BadRange { iova: u64, count: usize },
    /// A table could not be allocated. [`SoftPageTable::set`] has written
    /// nothing; [`SoftPageTable::update`] has updated the entries before
    /// the first one that needed the missing table.
    NoMemory,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableError::BadRange { iova, count } => write!(
                f,
                "{count} granules from IOVA {iova:#x}: unaligned or beyond the {IOVA_BITS}-bit table"
            ),
            TableError::NoMemory => f.write_str("out of memory for a page table level"),
        }
    }
}

/// The page table. `Send + Sync`; see the module's concurrency contract.
pub(crate) struct SoftPageTable {
    /// The top directory, made on first use.
    root: AtomicPtr<()>,
}

impl Default for SoftPageTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftPageTable {
    /// An empty table: no memory until the first entry is written.
    pub(crate) fn new() -> Self {
        Self {
            root: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Writes `entries[i] = make(i)` for the `count` granules from `iova`
    /// (granule-aligned). All or nothing: the tables the range needs are
    /// made before any entry is written.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "masked to the table's fan-out right after"
    )]
    pub(crate) fn set(
        &self,
        iova: u64,
        count: usize,
        mut make: impl FnMut(usize) -> u64,
    ) -> Result<(), TableError> {
        let first = check(iova, count)?;
        let off = first as usize & (FANOUT - 1);
        if off + count <= FANOUT {
            // The common case, kept tight: one leaf, made first if absent.
            let leaf = match self.find_leaf(first) {
                Some(l) => l,
                None => self.leaf(first)?,
            };
            for (i, e) in leaf.slots[off..off + count].iter().enumerate() {
                e.store(make(i), Ordering::Release);
            }
            return Ok(());
        }
        {
            // Make every leaf first, so that running out of memory half
            // way writes nothing.
            let mut made = Ok(());
            runs(first, count, |g, _, _, _| {
                if made.is_ok() {
                    made = self.leaf(g).map(drop);
                }
            });
            made?;
        }
        let mut out = Ok(());
        runs(first, count, |g, off, len, done| {
            let leaf = match self.leaf(g) {
                Ok(leaf) => leaf,
                Err(e) => {
                    out = Err(e);
                    return;
                }
            };
            for (i, e) in leaf.slots[off..off + len].iter().enumerate() {
                e.store(make(done + i), Ordering::Release);
            }
        });
        out
    }

    /// Applies `f` to each of the `count` entries from `iova`
    /// (granule-aligned); absent entries read as 0, and stay absent (no
    /// table is made) while `f` leaves them 0. The range must be the
    /// caller's: an entry may be written back unchanged.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "masked to the table's fan-out right after"
    )]
    pub(crate) fn update(
        &self,
        iova: u64,
        count: usize,
        mut f: impl FnMut(u64) -> u64,
    ) -> Result<(), TableError> {
        let first = check(iova, count)?;
        let off = first as usize & (FANOUT - 1);
        if off + count <= FANOUT {
            if let Some(l) = self.find_leaf(first) {
                // The common case, kept tight: one leaf, and it exists.
                // Every entry is written back, changed or not: the range is
                // the caller's, so no other thread writes there meanwhile.
                for e in &l.slots[off..off + count] {
                    e.store(f(e.load(Ordering::Acquire)), Ordering::Release);
                }
                return Ok(());
            }
        }
        let mut out = Ok(());
        runs(first, count, |g, off, len, _| {
            if out.is_err() {
                return;
            }
            let mut leaf = self.find_leaf(g);
            if let Some(l) = leaf {
                // The common case, kept tight: the leaf exists (written
                // back as above).
                for e in &l.slots[off..off + len] {
                    e.store(f(e.load(Ordering::Acquire)), Ordering::Release);
                }
                return;
            }
            for j in off..off + len {
                let old = leaf.map_or(0, |l| l.slots[j].load(Ordering::Acquire));
                let new = f(old);
                if new == old {
                    continue;
                }
                let l = match leaf {
                    Some(l) => l,
                    None => match self.leaf(g) {
                        Ok(l) => {
                            leaf = Some(l);
                            l
                        }
                        Err(e) => {
                            out = Err(e);
                            return;
                        }
                    },
                };
                l.slots[j].store(new, Ordering::Release);
            }
        });
        out
    }

    /// Zeroes the `count` entries from `iova` (granule-aligned): as
    /// `update(iova, count, |_| 0)`, without reading them. Makes no table
    /// (an absent leaf's entries are zero already), so it cannot fail for
    /// lack of memory.
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "masked to the table's fan-out right after"
    )]
    pub(crate) fn clear(&self, iova: u64, count: usize) -> Result<(), TableError> {
        let first = check(iova, count)?;
        let off = first as usize & (FANOUT - 1);
        if off + count <= FANOUT {
            // The common case, kept tight: one leaf.
            if let Some(l) = self.find_leaf(first) {
                for e in &l.slots[off..off + count] {
                    e.store(0, Ordering::Release);
                }
            }
            return Ok(());
        }
        runs(first, count, |g, off, len, _| {
            if let Some(l) = self.find_leaf(g) {
                for e in &l.slots[off..off + len] {
                    e.store(0, Ordering::Release);
                }
            }
        });
        Ok(())
    }

    /// The entry for the granule holding `iova` (0 if none, or beyond the
    /// table).
    #[inline]
    pub(crate) fn get(&self, iova: u64) -> u64 {
        let g = iova >> GRANULE_SHIFT;
        if g >= GRANULES {
            return 0;
        }
        self.find_leaf(g).map_or(0, |l| {
            l.slots[g as usize & (FANOUT - 1)].load(Ordering::Acquire)
        })
    }

    // --- walks ---

    /// The leaf holding granule `g`, if it exists.
    #[inline]
    fn find_leaf(&self, g: u64) -> Option<&Leaf> {
        let mut p = self.root.load(Ordering::Acquire);
        for level in (1..LEVELS).rev() {
            if p.is_null() {
                return None;
            }
            // SAFETY: a non-null directory pointer was installed by
            // `child` (a live, initialised `Dir`; the Acquire load pairs
            // with its Release CAS) and is freed only by `Drop`, which
            // `&self` excludes.
            let dir = unsafe { &*p.cast::<Dir>() };
            p = dir.slots[index(g, level)].load(Ordering::Acquire);
        }
        // SAFETY: as above; the last directory level points at leaves.
        (!p.is_null()).then(|| unsafe { &*p.cast::<Leaf>() })
    }

    /// The leaf holding granule `g`, made (with the directories above it)
    /// if absent.
    #[inline]
    fn leaf(&self, g: u64) -> Result<&Leaf, TableError> {
        let mut slot = &self.root;
        for level in (1..LEVELS).rev() {
            let dir = child::<AtomicPtr<()>>(slot)?;
            // SAFETY: `child` returns a live `Dir`, freed only by `Drop`.
            slot = unsafe { &dir.as_ref().slots[index(g, level)] };
        }
        let leaf = child::<AtomicU64>(slot)?;
        // SAFETY: `child` returns a live `Leaf`, freed only by `Drop`.
        Ok(unsafe { leaf.as_ref() })
    }
}

/// A writer of one mapping's entries that remembers the last leaf it wrote:
/// the links of one IOVA run land in the same leaf 512 granules in a row,
/// so most writes skip the walk from the root.
pub(crate) struct TableWriter<'t> {
    table: &'t SoftPageTable,
    /// Granule number of the cached leaf's first entry, and the leaf.
    cached: Option<(u64, &'t Leaf)>,
}

impl<'t> TableWriter<'t> {
    pub(crate) fn new(table: &'t SoftPageTable) -> Self {
        Self {
            table,
            cached: None,
        }
    }

    /// Writes `first + i * GRANULE` into the `count` entries from `iova`
    /// (the entries of a physically contiguous mapping). Inline fast path:
    /// the range lies in the leaf written last.
    #[inline(always)]
    pub(crate) fn set_run(
        &mut self,
        iova: u64,
        count: usize,
        first: u64,
    ) -> Result<(), TableError> {
        let g = iova >> GRANULE_SHIFT;
        if let Some((base, leaf)) = self.cached {
            // The cached leaf lies inside the table, so a range inside it is
            // in bounds. `d` is `g`'s place in that leaf when below `FANOUT`
            // (a `g` below `base` wraps far above).
            let d = g.wrapping_sub(base);
            let off = d as usize;
            if d < FANOUT as u64 && count <= FANOUT - off && iova % GRANULE == 0 {
                if count == 1 {
                    leaf.slots[off].store(first, Ordering::Release);
                    return Ok(());
                }
                let mut e = first;
                for slot in &leaf.slots[off..off + count] {
                    slot.store(e, Ordering::Release);
                    e = e.wrapping_add(GRANULE);
                }
                return Ok(());
            }
        }
        self.set_slow(iova, count, |i| first.wrapping_add(i as u64 * GRANULE))
    }

    /// [`set`](Self::set) through the table, caching the leaf.
    #[cold]
    #[inline(never)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "masked to the table's fan-out right after"
    )]
    fn set_slow(
        &mut self,
        iova: u64,
        count: usize,
        mut make: impl FnMut(usize) -> u64,
    ) -> Result<(), TableError> {
        let first = check(iova, count)?;
        let off = first as usize & (FANOUT - 1);
        if off + count > FANOUT {
            return self.table.set(iova, count, make);
        }
        let leaf = match self.table.find_leaf(first) {
            Some(l) => l,
            None => self.table.leaf(first)?,
        };
        self.cached = Some((first - off as u64, leaf));
        for (i, e) in leaf.slots[off..off + count].iter().enumerate() {
            e.store(make(i), Ordering::Release);
        }
        Ok(())
    }
}

impl Drop for SoftPageTable {
    fn drop(&mut self) {
        if let Some(root) = NonNull::new(self.root.load(Ordering::Acquire)) {
            // SAFETY: `&mut self`: no other reference to any table is left;
            // the root is a directory at level `LEVELS - 1`.
            unsafe { free_dir(root.cast(), LEVELS - 1) };
        }
    }
}

/// Index into the table at `level` (0: the leaf) for granule `g`.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "masked to the table's fan-out right after"
)]
fn index(g: u64, level: u32) -> usize {
    (g >> (level * LEVEL_BITS)) as usize & (FANOUT - 1)
}

/// The first granule of `[iova, iova + count granules)`, checked.
#[inline]
fn check(iova: u64, count: usize) -> Result<u64, TableError> {
    let g = iova >> GRANULE_SHIFT;
    let fits = iova % GRANULE == 0
        && (count as u64)
            .checked_add(g)
            .is_some_and(|end| end <= GRANULES);
    if fits {
        Ok(g)
    } else {
        Err(TableError::BadRange { iova, count })
    }
}

/// Calls `f(first granule, offset in its leaf, length, entries before)`
/// for each leaf-sized run of `[first, first + count)`.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "masked to the table's fan-out right after"
)]
fn runs(first: u64, count: usize, mut f: impl FnMut(u64, usize, usize, usize)) {
    let (mut g, mut done) = (first, 0);
    while done < count {
        let off = g as usize & (FANOUT - 1);
        let len = (FANOUT - off).min(count - done);
        f(g, off, len, done);
        g += len as u64;
        done += len;
    }
}

/// A slot type whose all-zero bit pattern is its empty value.
trait Zeroable: Sized {
    #[cfg(loom)]
    fn empty() -> Self;
}

impl Zeroable for AtomicU64 {
    #[cfg(loom)]
    fn empty() -> Self {
        AtomicU64::new(0)
    }
}

impl Zeroable for AtomicPtr<()> {
    #[cfg(loom)]
    fn empty() -> Self {
        AtomicPtr::new(ptr::null_mut())
    }
}

/// The table `slot` points at, installed (zeroed) if absent.
#[inline]
fn child<T: Zeroable>(slot: &AtomicPtr<()>) -> Result<NonNull<Table<T>>, TableError> {
    if let Some(p) = NonNull::new(slot.load(Ordering::Acquire)) {
        return Ok(p.cast());
    }
    let new = alloc_table::<T>()?;
    match slot.compare_exchange(
        ptr::null_mut(),
        new.as_ptr().cast(),
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Ok(new),
        Err(won) => {
            // SAFETY: `new` came from `alloc_table` and was never shared.
            unsafe { free_table(new) };
            // The winner's table: non-null, since the slot only goes from
            // null to a table, and published with Release.
            NonNull::new(won)
                .map(NonNull::cast)
                .ok_or(TableError::NoMemory)
        }
    }
}

#[cfg(not(loom))]
fn alloc_table<T: Zeroable>() -> Result<NonNull<Table<T>>, TableError> {
    let layout = core::alloc::Layout::new::<Table<T>>();
    // SAFETY: the layout is a 4 KiB array, not zero-sized.
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    // All zeros is a valid `Table<T>`: `Zeroable` slots are atomics whose
    // zero is their empty value (0, or null).
    NonNull::new(p.cast()).ok_or(TableError::NoMemory)
}

#[cfg(loom)]
fn alloc_table<T: Zeroable>() -> Result<NonNull<Table<T>>, TableError> {
    let t = alloc::boxed::Box::new(Table {
        slots: core::array::from_fn(|_| T::empty()),
    });
    Ok(NonNull::from(alloc::boxed::Box::leak(t)))
}

/// # Safety
/// `t` came from `alloc_table::<T>` and nothing refers to it any more.
unsafe fn free_table<T>(t: NonNull<Table<T>>) {
    // SAFETY: `alloc_table` allocated it with the global allocator and the
    // layout of `Table<T>` (as `Box` does), and it holds a valid value;
    // the caller gives up the last reference.
    drop(unsafe { alloc::boxed::Box::from_raw(t.as_ptr()) });
}

/// Frees a directory at `level` and every table below it.
///
/// # Safety
/// `dir` is a live directory at `level` (≥ 1) that nothing else refers to.
unsafe fn free_dir(dir: NonNull<Dir>, level: u32) {
    // SAFETY: live and unshared (the caller's contract).
    let slots = unsafe { &dir.as_ref().slots };
    for s in slots {
        let Some(c) = NonNull::new(s.load(Ordering::Acquire)) else {
            continue;
        };
        if level == 1 {
            // SAFETY: the last directory level points at leaves from
            // `alloc_table`, referred to only through this directory.
            unsafe { free_table::<AtomicU64>(c.cast()) };
        } else {
            // SAFETY: a directory one level down, only reachable from here.
            unsafe { free_dir(c.cast(), level - 1) };
        }
    }
    // SAFETY: `dir` came from `alloc_table` (or is the root, made the same
    // way) and its children are gone.
    unsafe { free_table(dir) };
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const G: u64 = GRANULE;

    static_assertions::assert_impl_all!(SoftPageTable: Send, Sync);

    #[test]
    fn empty_table_reads_zero_everywhere() {
        let t = SoftPageTable::new();
        for iova in [0, G, 1 << 40, (1 << 48) - 1, 1 << 48, u64::MAX] {
            assert_eq!(t.get(iova), 0);
        }
        assert!(
            t.root.load(Ordering::Relaxed).is_null(),
            "nothing allocated"
        );
    }

    #[test]
    fn the_writer_uses_its_cached_leaf_only_for_ranges_inside_it() {
        let t = SoftPageTable::new();
        let mut w = TableWriter::new(&t);
        let leaf = FANOUT as u64 * G; // bytes one leaf covers
        let base = 8 * leaf;
        w.set_run(base + 3 * G, 2, 0x10_0000).unwrap(); // caches leaf 8
        // Around the cached leaf: the last granule of the leaf below, the
        // first of the one above, a run that starts inside and ends beyond,
        // and a granule 2^32 granules above (the same low 32 bits).
        let cases = [
            (base - G, 1),
            (base + leaf, 1),
            (base + leaf - 2 * G, 4),
            (base + (1 << 32) * G + 5 * G, 1),
        ];
        for (i, &(iova, count)) in cases.iter().enumerate() {
            let first = 0x100_0000 * (i as u64 + 1);
            w.set_run(iova, count, first).unwrap();
            for k in 0..count as u64 {
                assert_eq!(t.get(iova + k * G), first + k * G, "case {i}, granule {k}");
            }
        }
        // The cached leaf's own entries are where they were put, and the
        // writes above did not land in it.
        assert_eq!(t.get(base + 3 * G), 0x10_0000);
        assert_eq!(t.get(base + 4 * G), 0x10_0000 + G);
        assert_eq!(t.get(base + 5 * G), 0);
        assert_eq!(t.get(base), 0);
        // Unaligned: refused, nothing written.
        assert!(w.set_run(base + 7 * G + 1, 1, 0x42).is_err());
        assert_eq!(t.get(base + 7 * G), 0);
    }

    #[test]
    fn clear_zeroes_like_update_and_makes_no_table() {
        let (a, b) = (SoftPageTable::new(), SoftPageTable::new());
        let start = (1 << 30) - 3 * G;
        for t in [&a, &b] {
            t.set(start, 600, |i| ((i as u64 + 1) << 12) | 1).unwrap();
        }
        // Part of the range, across the boundary, and beyond it into
        // granules whose leaves do not exist.
        let from = start + 2 * G;
        a.clear(from, 1200).unwrap();
        b.update(from, 1200, |_| 0).unwrap();
        for i in 0..1300u64 {
            let iova = start + i * G;
            assert_eq!(a.get(iova), b.get(iova), "granule {i}");
        }
        assert_eq!(a.get(start + G), (2 << 12) | 1);
        assert_eq!(a.get(from), 0);
        // An empty table stays empty; a bad range is refused as by update.
        let e = SoftPageTable::new();
        e.clear(1 << 40, 4).unwrap();
        assert!(e.root.load(Ordering::Relaxed).is_null());
        assert_eq!(
            e.clear(1, 1),
            Err(TableError::BadRange { iova: 1, count: 1 })
        );
        assert_eq!(e.clear(1 << 48, 1), e.update(1 << 48, 1, |_| 0));
    }

    #[test]
    fn set_get_update_across_leaf_and_directory_boundaries() {
        let t = SoftPageTable::new();
        // 1 GiB boundary (a level-2 directory boundary) in the middle.
        let start = (1 << 30) - 3 * G;
        t.set(start, 600, |i| ((i as u64 + 1) << 12) | 1).unwrap();
        for i in 0..600u64 {
            let iova = start + i * G;
            assert_eq!(t.get(iova + 17), ((i + 1) << 12) | 1, "granule {i}");
        }
        assert_eq!(t.get(start - G), 0);
        assert_eq!(t.get(start + 600 * G), 0);
        t.update(start, 600, |e| e | 2).unwrap();
        assert_eq!(t.get(start + 599 * G), (600 << 12) | 3);
        t.update(start, 600, |_| 0).unwrap();
        assert!((0..600).all(|i| t.get(start + i * G) == 0));
    }

    #[test]
    fn update_of_absent_entries_makes_no_table_unless_needed() {
        let t = SoftPageTable::new();
        let mut seen = Vec::new();
        t.update(1 << 39, 3, |e| {
            seen.push(e);
            e
        })
        .unwrap();
        assert_eq!(seen, [0, 0, 0]);
        assert!(t.root.load(Ordering::Relaxed).is_null());
        t.update(1 << 39, 1, |_| 7).unwrap();
        assert_eq!(t.get(1 << 39), 7);
    }

    #[test]
    fn bad_ranges_are_refused_without_writing() {
        let t = SoftPageTable::new();
        let top = 1u64 << 48;
        assert_eq!(
            t.set(top - G, 2, |_| 1),
            Err(TableError::BadRange {
                iova: top - G,
                count: 2
            })
        );
        assert_eq!(t.get(top - G), 0);
        assert!(t.set(G + 1, 1, |_| 1).is_err());
        assert!(t.update(top, 1, |_| 1).is_err());
        assert!(t.set(0, usize::MAX, |_| 1).is_err());
        t.set(top - G, 1, |_| 9).unwrap();
        assert_eq!(t.get(u64::MAX >> 16), 9, "last granule of the space");
        t.set(0, 0, |_| unreachable!()).unwrap();
    }

    #[test]
    fn two_threads_map_disjoint_ranges_and_read_back() {
        let t = SoftPageTable::new();
        // Both ranges share leaves (interleaved granules) and directories.
        let n = if cfg!(miri) { 24 } else { 4096 };
        let base = 7 << 30;
        std::thread::scope(|s| {
            for who in 0..2u64 {
                let t = &t;
                s.spawn(move || {
                    for i in (who..n).step_by(2) {
                        let iova = base + i * G;
                        t.set(iova, 1, |_| (i << 12) | 1).unwrap();
                        assert_eq!(t.get(iova), (i << 12) | 1);
                    }
                    // And a run of several leaves each, in separate halves.
                    let run = base + (1 << 30) + who * (1 << 29);
                    t.set(run, 1100, |j| ((j as u64) << 12) | 5).unwrap();
                });
            }
        });
        for i in 0..n {
            assert_eq!(t.get(base + i * G), (i << 12) | 1, "granule {i}");
        }
        for who in 0..2u64 {
            let run = base + (1 << 30) + who * (1 << 29);
            assert!((0..1100u64).all(|j| t.get(run + j * G) == ((j << 12) | 5)));
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two threads write entries under one absent root: both race to
    /// install the same directories and leaf; each must see its own entry
    /// and, after the join, the other's. Loom checks every interleaving
    /// (and that the loser's tables are freed, not leaked or used).
    #[test]
    fn racing_installs_lose_nothing() {
        loom::model(|| {
            let t = Arc::new(SoftPageTable::new());
            let other = Arc::clone(&t);
            let h = loom::thread::spawn(move || {
                other.set(GRANULE, 1, |_| 0x2001).unwrap();
                other.update(GRANULE, 1, |e| e | 2).unwrap();
                assert_eq!(other.get(GRANULE), 0x2003);
            });
            t.set(0, 1, |_| 0x1001).unwrap();
            assert_eq!(t.get(0), 0x1001);
            h.join().unwrap();
            assert_eq!(t.get(GRANULE), 0x2003);
        });
    }

    /// A reader that sees an entry sees the table it lives in fully made.
    #[test]
    fn reader_sees_published_entry() {
        loom::model(|| {
            let t = Arc::new(SoftPageTable::new());
            let r = Arc::clone(&t);
            let h = loom::thread::spawn(move || {
                let e = r.get(3 * GRANULE);
                assert!(e == 0 || e == 0x3003);
            });
            t.set(3 * GRANULE, 1, |_| 0x3003).unwrap();
            h.join().unwrap();
        });
    }
}

//! Twins on the crate's own machinery (included as `atomic_twin` beside
//! `plain_map.rs` as `plain`, whose request and first pass they share): the same IOVA cache
//! (`IovaCache`), the same software IOMMU (`SoftIommu`: atomic entries, a
//! 4-level table, the linker and sync a typed mapping uses) and, for the
//! pool, the same slot bitmap algorithm, all driven with plain `u64`s and
//! no typed layer. The typed path against these twins measures what the
//! types cost (devices, brands, routes, segments, typestates, checks);
//! against the flat-array twins of `plain_map.rs` it measures the design
//! as well (atomic entries a device emulator may read from another thread).
#![allow(dead_code, reason = "each bench uses the twins of its own paths")]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dmaspace::backend::{IommuBackend, Linker};
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::SoftIommu;
use dmaspace::iommu::iova_alloc::IovaCache;

use super::plain::{PlainSeg, plan};

/// The IOMMU granule (4 KiB).
const G: u64 = 4096;

/// A domain of plain numbers on the crate's machinery: a software IOMMU
/// and a queue's IOVA cache in front of an allocator of the same aperture.
pub struct AtomicDomain<'a> {
    pub iommu: SoftIommu,
    pub cache: IovaCache<'a>,
}

/// `map_bvec`'s work on plain numbers through `dom`: validate every segment
/// as the crate does (the plain twin's first pass, `plain::plan`), reserve one IOVA run from the cache, link each host
/// segment through the IOMMU's linker (read permission, to-device), sync the
/// run, merge consecutive IOVA segments and translate P2P ones to bus
/// addresses into `out`. Returns the run `(iova, len)` and the count.
///
/// # Errors
/// The check that failed, by name; nothing stays mapped or reserved.
pub fn atomic_map(
    dom: &AtomicDomain<'_>,
    segs: &[PlainSeg],
    provider: u64,
    bus_offset: u64,
    dma_mask: u64,
    out: &mut [(u64, u64)],
) -> Result<((u64, u64), usize), &'static str> {
    let (iova_bytes, outputs) = plan(segs, provider, bus_offset, dma_mask)?;
    if outputs > out.len() {
        return Err("out of capacity");
    }
    let run_len = iova_bytes.div_ceil(G).checked_mul(G).ok_or("overflow")?;
    let iova = dom
        .cache
        .alloc(run_len, G, dma_mask)
        .ok_or("iova exhausted")?;
    let mut linker = dom.iommu.linker(IommuPerm::READ);
    let mut cursor = 0u64;
    let mut n = 0;
    let mut run_open = false;
    for s in segs {
        if s.p2p {
            out[n] = (s.phys.wrapping_add(bus_offset), s.len);
            n += 1;
            run_open = false;
            continue;
        }
        let lead = s.phys & (G - 1);
        let at = if cursor == 0 { lead } else { cursor };
        let granules = (lead + s.len).div_ceil(G);
        // SAFETY: the granules lie in the run reserved above, where nothing
        // is mapped; the memory is simulated, reached by the software
        // IOMMU's translation only.
        let linked = unsafe {
            linker.link(
                iova + (at & !(G - 1)),
                s.phys & !(G - 1),
                granules * G,
                false,
            )
        };
        if linked.is_err() {
            // SAFETY: the run is ours; nothing else maps there.
            unsafe { dom.iommu.unmap(iova, run_len) };
            dom.cache.free(iova, run_len);
            return Err("backend");
        }
        cursor = at + s.len;
        if run_open {
            out[n - 1].1 += s.len;
            continue;
        }
        out[n] = (iova + at, s.len);
        n += 1;
        run_open = true;
    }
    // SAFETY: the run is ours, and this thread alone maps in it.
    unsafe { dom.iommu.sync(iova, run_len) };
    Ok(((iova, run_len), n))
}

/// Unmaps and frees a run of [`atomic_map`].
pub fn atomic_unmap(dom: &AtomicDomain<'_>, (iova, len): (u64, u64)) {
    // SAFETY: the run is the caller's, from `atomic_map`.
    unsafe { dom.iommu.unmap(iova, len) };
    dom.cache.free(iova, len);
}

/// One I/O of an owned one-segment buffer on plain numbers through `dom`,
/// as `MappedBuf` does it: reserve from the cache, link and sync in one
/// backend call (`map_synced`), the NVMe PRP entries from the IOVA, unmap,
/// free.
pub fn atomic_io(dom: &AtomicDomain<'_>, phys: u64, pages: u64, mask: u64) {
    let len = pages * G;
    let iova = dom.cache.alloc(len, G, mask).expect("bench IOVA");
    // SAFETY: the run was just reserved and nothing is mapped there; the
    // memory is simulated, reached by the software IOMMU only.
    unsafe {
        dom.iommu
            .map_synced(iova, phys, len, IommuPerm::READ, false)
    }
    .expect("bench mapping");
    let prp1 = iova;
    let mut prp2 = 0;
    let mut off = G;
    while off < len {
        prp2 ^= iova + off;
        off += G;
    }
    black_box((prp1, prp2));
    // SAFETY: the run is this I/O's.
    unsafe { dom.iommu.unmap(iova, len) };
    dom.cache.free(iova, len);
}

/// A registered pool on plain numbers: the crate's slot bitmap (a word
/// search from a hint, `fetch_or` to claim, `fetch_and` to give back), the
/// mapping's segments walked for the slot's address, as
/// `RegisteredPool::take` and `PoolSlot` do.
pub struct AtomicPool {
    words: Box<[AtomicU64]>,
    hint: AtomicUsize,
    /// The pool mapping's segments: `(device address, length)`.
    segs: Vec<(u64, u64)>,
    slot_size: u64,
    base: *mut u8,
}

impl AtomicPool {
    /// A pool of `count` slots of `slot_size` bytes over a mapping whose
    /// segments are `segs`, its CPU bytes at `base`.
    pub fn new(count: usize, slot_size: u64, segs: Vec<(u64, u64)>, base: *mut u8) -> Self {
        let mut words: Vec<AtomicU64> =
            (0..count.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        if count % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last.get_mut() = !0 << (count % 64);
            }
        }
        Self {
            words: words.into_boxed_slice(),
            hint: AtomicUsize::new(0),
            segs,
            slot_size,
            base,
        }
    }

    fn take(&self) -> Option<usize> {
        let n = self.words.len();
        let start = self.hint.load(Ordering::Relaxed);
        let mut w = if start < n { start } else { 0 };
        for _ in 0..n {
            let word = &self.words[w];
            let mut seen = word.load(Ordering::Relaxed);
            while seen != !0 {
                let bit = (!seen).trailing_zeros();
                let prev = word.fetch_or(1 << bit, Ordering::Acquire);
                if prev & (1 << bit) == 0 {
                    if w != start {
                        self.hint.store(w, Ordering::Relaxed);
                    }
                    return Some(w * 64 + bit as usize);
                }
                seen = prev | (1 << bit);
            }
            w += 1;
            if w == n {
                w = 0;
            }
        }
        None
    }

    fn give(&self, i: usize) {
        self.words[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Release);
    }

    /// One I/O: take a slot, its CPU pointer and device address, the PRP
    /// entry, give it back.
    pub fn io(&self) {
        let index = self.take().expect("a free slot");
        let offset = index as u64 * self.slot_size;
        let mut seg_start = 0u64;
        let mut addr = 0u64;
        for &(a, l) in &self.segs {
            if offset < seg_start + l {
                addr = a + (offset - seg_start);
                break;
            }
            seg_start += l;
        }
        let ptr = self.base.wrapping_add(offset as usize);
        black_box((ptr, addr));
        self.give(index);
    }
}

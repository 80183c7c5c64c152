//! The plain-`u64` baseline of `map_bvec`: validate every segment (provider
//! identity, whole granules, the IOVA link rule, overflow, output capacity),
//! reserve one contiguous IOVA run below the DMA mask (next-fit over a flat
//! page table), write one entry per granule, merge consecutive IOVA
//! segments, translate P2P segments to bus addresses, then unmap. Included
//! as `plain` by every bench with a plain-integer twin; `atomic_twin.rs`
//! shares its first pass ([`plan`]).
#![allow(dead_code, reason = "each bench uses the twins of its own paths")]

use dmaspace::PAGE_SIZE;

pub const GRANULE: u64 = PAGE_SIZE;
pub const HOST_BASE: u64 = 0x1_0000_0000;
pub const BAR_CPU: u64 = 0x40_0000_0000;
pub const BAR_BUS: u64 = 0x8000_0000;
pub const IOVA_BASE: u64 = 0x1000_0000;
/// The provider the plain request's P2P segments must belong to.
pub const PROVIDER: u64 = 7;

/// The baseline: everything a `u64`, one flat page table, one function.
pub struct PlainDomain {
    pub table: Vec<u64>,
    pub rover: usize,
}

const P_READ: u64 = 1;
const P_RESERVED: u64 = 1 << 3;
const P_LINKED: u64 = 1 << 4;
const P_PRESENT: u64 = 1 << 5;

impl PlainDomain {
    /// `count` free entries whose IOVAs are at most `mask`.
    fn reserve(&mut self, count: usize, mask: u64) -> Option<usize> {
        let below = if mask < IOVA_BASE {
            0
        } else {
            ((u128::from(mask - IOVA_BASE) + 1) / u128::from(GRANULE)) as usize
        };
        let n = self.table.len().min(below);
        if count == 0 || count > n {
            return None;
        }
        let mut start = self.rover % n;
        let mut scanned = 0;
        while scanned < n {
            if start + count > n {
                scanned += n - start;
                start = 0;
                continue;
            }
            match self.table[start..start + count]
                .iter()
                .rposition(|&e| e != 0)
            {
                None => {
                    self.table[start..start + count].fill(P_RESERVED);
                    self.rover = start + count;
                    return Some(start);
                }
                Some(b) => {
                    scanned += b + 1;
                    start += b + 1;
                }
            }
        }
        None
    }
}

/// One segment of the plain request.
#[derive(Clone, Copy)]
pub struct PlainSeg {
    pub p2p: bool,
    /// Host: the granules it touches lie inside its buffer.
    pub covers: bool,
    /// P2P: the provider it belongs to.
    pub provider: u64,
    pub phys: u64,
    pub len: u64,
}

/// The first pass over a request, shared by both twins: the checks the
/// crate makes, in its order, and the sizes they imply. Returns the IOVA
/// bytes of the run (from its first granule) and the number of outputs.
#[inline(always)]
pub fn plan(
    segs: &[PlainSeg],
    provider: u64,
    bus_offset: u64,
    dma_mask: u64,
) -> Result<(u64, usize), &'static str> {
    let mut iova_bytes = 0u64;
    let mut links = 0usize;
    let mut outputs = 0usize;
    let mut run_open = false;
    for s in segs {
        if s.len == 0 {
            return Err("empty");
        }
        // The same checks the crate makes: the provider is the route's, the
        // range the device will see must not wrap, bus addresses must be
        // within the DMA mask, IOMMU-bound memory covers its granules, the
        // link rule, the IOVA size must not overflow, the output must fit.
        if s.p2p && s.provider != provider {
            return Err("foreign provider");
        }
        let start = if s.p2p {
            s.phys.wrapping_add(bus_offset)
        } else {
            s.phys
        };
        let last = start.checked_add(s.len - 1).ok_or("overflow")?;
        if s.p2p {
            if last > dma_mask {
                return Err("beyond dma mask");
            }
            outputs += 1;
            run_open = false;
            continue;
        }
        if !s.covers {
            return Err("partial granule");
        }
        let lead = s.phys & (GRANULE - 1);
        if iova_bytes % GRANULE != 0 || (links > 0 && lead != 0) {
            return Err("unaligned");
        }
        let at = if links == 0 { lead } else { iova_bytes };
        iova_bytes = at.checked_add(s.len).ok_or("overflow")?;
        links += 1;
        outputs += usize::from(!run_open);
        run_open = true;
    }
    Ok((iova_bytes, outputs))
}

/// Segments -> (addr, len) into `out`; returns the reserved run and the count.
pub fn plain_map(
    dom: &mut PlainDomain,
    segs: &[PlainSeg],
    bus_offset: u64,
    dma_mask: u64,
    out: &mut [(u64, u64)],
) -> Result<((usize, usize), usize), &'static str> {
    let (iova_bytes, outputs) = plan(segs, PROVIDER, bus_offset, dma_mask)?;
    if outputs > out.len() {
        return Err("out of capacity");
    }
    let count = iova_bytes.div_ceil(GRANULE) as usize;
    let first = dom.reserve(count, dma_mask).ok_or("iova exhausted")?;
    let start = IOVA_BASE + first as u64 * GRANULE;
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
        let lead = s.phys & (GRANULE - 1);
        let at = if cursor == 0 { lead } else { cursor };
        let pages = (lead + s.len).div_ceil(GRANULE) as usize;
        let mut pa = s.phys & !(GRANULE - 1);
        for e in &mut dom.table[first + (at / GRANULE) as usize..][..pages] {
            *e = pa | P_READ | P_RESERVED | P_LINKED;
            pa += GRANULE;
        }
        cursor = at + s.len;
        if run_open {
            out[n - 1].1 += s.len;
            continue;
        }
        out[n] = (start + at, s.len);
        n += 1;
        run_open = true;
    }
    for e in &mut dom.table[first..first + count] {
        if *e & P_LINKED != 0 {
            *e |= P_PRESENT;
        }
    }
    Ok(((first, count), n))
}

pub fn plain_unmap(dom: &mut PlainDomain, (first, count): (usize, usize)) {
    dom.table[first..first + count].fill(0);
}

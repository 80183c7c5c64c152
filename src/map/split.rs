//! The device's segment limits, applied after emit: cut merged segments at
//! the maximum size and at segment boundaries, check alignment and the
//! segment count. Runs only for devices that have such limits, so the
//! common path does not pay for it.

use crate::error::MapError;
use crate::limits::DmaLimits;
use crate::vec::SegBuf;

/// Cuts the `merged` segments in `out` to `limits`; returns how many there
/// are now. On error `out`'s content is unspecified (the caller unmaps).
pub(super) fn cut(
    out: &mut SegBuf<'_>,
    merged: usize,
    limits: &DmaLimits,
) -> Result<usize, MapError> {
    let max = limits.max_segments_per_request();
    let bound = out.limit().min(max);
    // Count the pieces (stopping once past what could fit) and check that
    // each starts aligned.
    let mut total = 0usize;
    for s in out.as_raw() {
        let (mut addr, mut left) = (s.addr, s.len);
        while left > 0 {
            check_aligned(addr, limits)?;
            let p = limits.piece(addr, left);
            total += 1;
            if total > bound {
                break;
            }
            addr += p;
            left -= p;
        }
        if total > bound {
            break;
        }
    }
    if total > max {
        // The error path: count all of them, for an honest message.
        let needed = out
            .as_raw()
            .iter()
            .map(|s| pieces(s.addr, s.len, limits))
            .sum();
        return Err(MapError::TooManySegments { max, needed });
    }
    let slots = out.grow(total)?;
    // Expand from the back: segment i's pieces land at or after index i,
    // and it is read before anything is written there.
    let mut w = total;
    for i in (0..merged).rev() {
        let s = slots[i].raw();
        let pieces = pieces(s.addr, s.len, limits);
        w -= pieces;
        let (mut addr, mut left) = (s.addr, s.len);
        for slot in &mut slots[w..w + pieces] {
            let p = limits.piece(addr, left);
            let mut piece = s;
            piece.addr = addr;
            piece.len = p;
            *slot = crate::vec::SegSlot::new(piece);
            addr += p;
            left -= p;
        }
    }
    debug_assert_eq!(w, 0);
    Ok(total)
}

fn pieces(mut addr: u64, mut left: u64, limits: &DmaLimits) -> usize {
    let mut n = 0;
    while left > 0 {
        let p = limits.piece(addr, left);
        n += 1;
        addr += p;
        left -= p;
    }
    n
}

fn check_aligned(addr: u64, limits: &DmaLimits) -> Result<(), MapError> {
    let align = limits.segment_alignment();
    if addr % align == 0 {
        Ok(())
    } else {
        Err(MapError::Misaligned { addr, align })
    }
}

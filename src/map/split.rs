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
        // Mappers plan (and refuse) wrapping segments before they get
        // here; checked again, so that no path reaches `Pieces` with one.
        if s.len > 0 && s.addr.checked_add(s.len - 1).is_none() {
            return Err(MapError::Overflow {
                start: s.addr,
                len: s.len,
            });
        }
        for (addr, _) in Pieces::new(s.addr, s.len, limits) {
            check_aligned(addr, limits)?;
            total += 1;
            if total > bound {
                break;
            }
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
        for (slot, (addr, len)) in slots[w..w + pieces]
            .iter_mut()
            .zip(Pieces::new(s.addr, s.len, limits))
        {
            let mut piece = s;
            piece.addr = addr;
            piece.len = len;
            *slot = crate::vec::SegSlot::new(piece);
        }
    }
    debug_assert_eq!(w, 0);
    Ok(total)
}

fn pieces(addr: u64, len: u64, limits: &DmaLimits) -> usize {
    Pieces::new(addr, len, limits).count()
}

/// The pieces `(addr, len)` of the segment `[addr, addr + len)` cut to
/// `limits`. The segment may end exactly at 2^64 (a BAR at the top of the
/// bus space): the cursor moves past a piece only while bytes are left, so
/// it never computes the address 2^64.
struct Pieces<'l> {
    addr: u64,
    left: u64,
    limits: &'l DmaLimits,
}

impl<'l> Pieces<'l> {
    /// The plan checked that `addr + len - 1` does not wrap.
    fn new(addr: u64, len: u64, limits: &'l DmaLimits) -> Self {
        debug_assert!(len == 0 || addr.checked_add(len - 1).is_some());
        Self {
            addr,
            left: len,
            limits,
        }
    }
}

impl Iterator for Pieces<'_> {
    type Item = (u64, u64);

    #[inline]
    fn next(&mut self) -> Option<(u64, u64)> {
        if self.left == 0 {
            return None;
        }
        let at = self.addr;
        let p = self.limits.piece(at, self.left);
        self.left -= p;
        if self.left > 0 {
            // Bytes remain after this piece, so `at + p <= addr + len - 1`.
            self.addr = at + p;
        }
        Some((at, p))
    }
}

fn check_aligned(addr: u64, limits: &DmaLimits) -> Result<(), MapError> {
    let align = limits.segment_alignment();
    if addr % align == 0 {
        Ok(())
    } else {
        Err(MapError::Misaligned { addr, align })
    }
}

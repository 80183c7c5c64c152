//! Caller-chosen storage for a mapper's output.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;
use core::fmt;

use crate::error::MapError;
use crate::vec::mapped::RawSeg;

/// One slot of mapper output. Opaque: the caller provides empty slots
/// ([`SegSlot::EMPTY`]) and reads the mapped segments only through the
/// [`DmaVec`](crate::vec::DmaVec) that borrows them, so nothing read from a
/// slot outlives its mapping.
///
/// ```
/// use dmaspace::vec::{SegBuf, SegSlot};
/// let mut slots = [SegSlot::EMPTY; 16];
/// assert_eq!(SegBuf::from_slots(&mut slots).capacity(), 16);
/// ```
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct SegSlot(RawSeg);

impl SegSlot {
    /// A slot holding nothing.
    pub const EMPTY: SegSlot = SegSlot(RawSeg::EMPTY);
}

impl fmt::Debug for SegSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SegSlot")
    }
}

/// Where a mapper writes its segments: slots the caller owns (works
/// without `alloc`, never allocates) or, with `alloc`, a growable vector.
///
/// ```
/// use dmaspace::vec::{SegBuf, SegSlot};
/// let mut slots = [SegSlot::EMPTY; 4];
/// let fixed = SegBuf::from_slots(&mut slots);
/// assert_eq!(fixed.capacity(), 4);
/// let growable = SegBuf::with_capacity(8);
/// assert!(growable.capacity() >= 8);
/// ```
pub struct SegBuf<'o> {
    inner: Store<'o>,
}

enum Store<'o> {
    Slots {
        slots: &'o mut [SegSlot],
        len: usize,
    },
    #[cfg(feature = "alloc")]
    Vec(Vec<SegSlot>),
}

impl<'o> SegBuf<'o> {
    /// Storage in caller-owned slots; filling past them is an error
    /// ([`MapError::OutOfCapacity`]), never an allocation.
    ///
    /// See the type-level example.
    pub fn from_slots(slots: &'o mut [SegSlot]) -> Self {
        Self {
            inner: Store::Slots { slots, len: 0 },
        }
    }

    /// Growable storage with room for `n` segments before it allocates.
    ///
    /// See the type-level example.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            inner: Store::Vec(Vec::with_capacity(n)),
        }
    }

    /// How many segments fit without allocating.
    ///
    /// See the type-level example.
    #[must_use]
    pub fn capacity(&self) -> usize {
        match &self.inner {
            Store::Slots { slots, .. } => slots.len(),
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v.capacity(),
        }
    }

    /// How many segments a mapping may emit here: the slots, or no limit
    /// for a growable store.
    pub(crate) fn limit(&self) -> usize {
        match &self.inner {
            Store::Slots { slots, .. } => slots.len(),
            #[cfg(feature = "alloc")]
            Store::Vec(_) => usize::MAX,
        }
    }

    /// `n` slots to write (`n <= limit()`), emptied of any earlier output.
    pub(crate) fn prepare(&mut self, n: usize) -> Result<&mut [SegSlot], MapError> {
        match &mut self.inner {
            Store::Slots { slots, len } => {
                *len = 0;
                let capacity = slots.len();
                slots
                    .get_mut(..n)
                    .ok_or(MapError::OutOfCapacity { capacity })
            }
            #[cfg(feature = "alloc")]
            Store::Vec(v) => {
                v.clear();
                v.try_reserve(n).map_err(|_| MapError::OutOfCapacity {
                    capacity: v.capacity(),
                })?;
                v.resize(n, SegSlot::EMPTY);
                Ok(v)
            }
        }
    }

    /// `n` slots to write, keeping what the first `set_len` slots hold
    /// (`n` at least that many).
    pub(crate) fn grow(&mut self, n: usize) -> Result<&mut [SegSlot], MapError> {
        match &mut self.inner {
            Store::Slots { slots, .. } => {
                let capacity = slots.len();
                slots
                    .get_mut(..n)
                    .ok_or(MapError::OutOfCapacity { capacity })
            }
            #[cfg(feature = "alloc")]
            Store::Vec(v) => {
                v.try_reserve(n.saturating_sub(v.len()))
                    .map_err(|_| MapError::OutOfCapacity {
                        capacity: v.capacity(),
                    })?;
                v.resize(n, SegSlot::EMPTY);
                Ok(v)
            }
        }
    }

    /// Records that the first `n` prepared slots hold output.
    pub(crate) fn set_len(&mut self, n: usize) {
        match &mut self.inner {
            Store::Slots { len, .. } => *len = n,
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v.truncate(n),
        }
    }

    /// The segments written so far.
    pub(crate) fn as_raw(&self) -> &[RawSeg] {
        let slots: &[SegSlot] = match &self.inner {
            Store::Slots { slots, len } => &slots[..*len],
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v,
        };
        SegSlot::as_raw(slots)
    }
}

impl SegSlot {
    /// The raw segments in `slots`.
    pub(crate) fn as_raw(slots: &[SegSlot]) -> &[RawSeg] {
        // SAFETY: `SegSlot` is `repr(transparent)` over `RawSeg`, so the two
        // slices have the same layout; the lifetime is kept.
        unsafe { core::slice::from_raw_parts(slots.as_ptr().cast::<RawSeg>(), slots.len()) }
    }

    /// Wraps a raw segment.
    #[inline(always)]
    pub(crate) fn new(seg: RawSeg) -> Self {
        Self(seg)
    }

    /// The raw segment, to extend an IOVA run in place.
    #[inline(always)]
    pub(crate) fn raw_mut(&mut self) -> &mut RawSeg {
        &mut self.0
    }

    /// The raw segment.
    #[inline(always)]
    pub(crate) fn raw(&self) -> RawSeg {
        self.0
    }
}

impl fmt::Debug for SegBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegBuf")
            .field("len", &self.as_raw().len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vec::mapped::Via;

    fn raw(addr: u64) -> RawSeg {
        RawSeg::wire(addr, 1, Via::Direct)
    }

    #[test]
    fn slots_prepare_and_len() {
        let mut slots = [SegSlot::EMPTY; 2];
        let mut b = SegBuf::from_slots(&mut slots);
        assert!(b.as_raw().is_empty());
        assert_eq!(b.limit(), 2);
        let out = b.prepare(2).unwrap();
        out[0] = SegSlot::new(raw(1));
        out[1] = SegSlot::new(raw(2));
        out[1].raw_mut().len += 40;
        b.set_len(2);
        let got: std::vec::Vec<_> = b.as_raw().iter().map(|s| (s.addr, s.len)).collect();
        assert_eq!(got, [(1, 1), (2, 41)]);
        assert_eq!(
            b.prepare(3).unwrap_err(),
            MapError::OutOfCapacity { capacity: 2 }
        );
        assert!(
            b.as_raw().is_empty(),
            "a failed prepare leaves no stale output"
        );
    }

    #[test]
    fn growable_store_grows() {
        let mut b = SegBuf::with_capacity(1);
        assert_eq!(b.limit(), usize::MAX);
        let out = b.prepare(10).unwrap();
        for (i, s) in out.iter_mut().enumerate() {
            *s = SegSlot::new(raw(i as u64));
        }
        b.set_len(10);
        assert_eq!(b.as_raw().len(), 10);
        assert_eq!(b.as_raw()[9].addr, 9);
    }
}

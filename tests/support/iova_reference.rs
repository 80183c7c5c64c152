//! A naive reference IOVA allocator, obviously correct and slow: a sorted
//! map of the live ranges, and "does a request fit?" answered by walking
//! every hole between them in `u128` arithmetic. The property tests and
//! the `iova` benchmark use it as the oracle: an allocator that returns
//! `None` while `fits` says yes has refused a request it could serve.

use std::collections::BTreeMap;

/// The live ranges of one aperture.
pub struct Reference {
    base: u64,
    end: u128,
    granule: u64,
    /// start → end (exclusive), in bytes, granule-rounded.
    live: BTreeMap<u64, u128>,
    bytes: u64,
}

impl Reference {
    /// The empty aperture `[base, base + len)`.
    pub fn new(base: u64, len: u64, granule: u64) -> Self {
        Self {
            base,
            end: u128::from(base) + u128::from(len),
            granule,
            live: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn rounded(&self, len: u64) -> u128 {
        u128::from(len.div_ceil(self.granule)) * u128::from(self.granule)
    }

    /// Whether some hole holds `len` bytes (granule-rounded) at a multiple
    /// of `align` (at least the granule), ending at most at `limit + 1`.
    pub fn fits(&self, len: u64, align: u64, limit: u64) -> bool {
        if len == 0 {
            return false;
        }
        let len = self.rounded(len);
        let align = u128::from(align.max(self.granule).next_power_of_two());
        let top = self.end.min(u128::from(limit) + 1);
        let fits_in = |from: u128, to: u128| {
            let at = from.div_ceil(align) * align;
            at + len <= to.min(top)
        };
        let mut cursor = u128::from(self.base);
        for (&start, &end) in &self.live {
            if fits_in(cursor, u128::from(start)) {
                return true;
            }
            cursor = end;
        }
        fits_in(cursor, self.end)
    }

    /// Records an allocation; `Err` says what is wrong with it (outside
    /// the aperture, unaligned, overlapping a live range).
    pub fn insert(&mut self, start: u64, len: u64) -> Result<(), String> {
        let end = u128::from(start) + self.rounded(len);
        if start < self.base || end > self.end || start % self.granule != 0 {
            return Err(format!(
                "{start:#x}+{len:#x} outside the aperture or unaligned"
            ));
        }
        if let Some((&s, &e)) = self.live.range(..=start).next_back() {
            if e > u128::from(start) {
                return Err(format!("{start:#x}+{len:#x} overlaps {s:#x}..{e:#x}"));
            }
        }
        if let Some((&s, &e)) = self.live.range(start..).next() {
            if u128::from(s) < end {
                return Err(format!("{start:#x}+{len:#x} overlaps {s:#x}..{e:#x}"));
            }
        }
        self.live.insert(start, end);
        self.bytes += (end - u128::from(start)) as u64;
        Ok(())
    }

    /// Whether `(start, len)` is exactly a live allocation.
    pub fn is_live(&self, start: u64, len: u64) -> bool {
        len != 0 && self.live.get(&start) == Some(&(u128::from(start) + self.rounded(len)))
    }

    /// Forgets a live allocation (which must be live).
    pub fn remove(&mut self, start: u64) {
        let end = self.live.remove(&start).expect("removing a live range");
        self.bytes -= (end - u128::from(start)) as u64;
    }

    /// Bytes allocated.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Live ranges.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

//! What a device can take: the kernel's `dma_parms` and block queue limits
//! as one value, [`DmaLimits`], checked by the mapper where an address is
//! minted and where a request is cut into segments.

use core::fmt;

/// What a device can address and how its descriptors cut memory, in the
/// style of Linux's `struct device_dma_parameters` and block queue limits:
///
/// | field | Linux | what the mapper does |
/// |---|---|---|
/// | [`dma_mask`](Self::dma_mask) | `dma_set_mask` | refuses a physical or bus address above it, reserves IOVAs below it |
/// | [`max_segment_size`](Self::max_segment_size) | `dma_set_max_seg_size` | splits longer segments |
/// | [`segment_boundary`](Self::segment_boundary) | `dma_set_seg_boundary` | splits segments that would cross a `mask + 1` boundary |
/// | [`max_segments`](Self::max_segments) | `blk_queue_max_segments` | refuses a request that needs more ([`MapError::TooManySegments`]) |
/// | [`alignment`](Self::alignment) | e.g. NVMe's dword-aligned PRPs | refuses a segment that starts unaligned ([`MapError::Misaligned`]) |
///
/// A request is never silently truncated: it is split, or refused.
///
/// [`MapError::TooManySegments`]: crate::error::MapError::TooManySegments
/// [`MapError::Misaligned`]: crate::error::MapError::Misaligned
///
/// ```
/// use dmaspace::limits::DmaLimits;
/// let nvme = DmaLimits::BITS_64.max_segment_size(1 << 20).segment_boundary(0xffff_ffff).alignment(4);
/// assert_eq!(nvme.dma_mask(), u64::MAX);
/// assert_eq!(nvme.max_segment_size_bytes(), 1 << 20);
/// assert_eq!(DmaLimits::BITS_32.dma_mask(), 0xffff_ffff);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DmaLimits {
    dma_mask: u64,
    max_segment_size: u64,
    segment_boundary: u64,
    max_segments: usize,
    alignment: u64,
}

impl DmaLimits {
    /// A device that addresses all 64 bits, with no other limit.
    pub const BITS_64: DmaLimits = DmaLimits::with_mask(u64::MAX);
    /// A device that addresses the low 4 GiB only, with no other limit.
    pub const BITS_32: DmaLimits = DmaLimits::with_mask(u32::MAX as u64);

    /// A device that addresses `bits` bits (`DMA_BIT_MASK(bits)`); `bits`
    /// is clamped to 1..=64.
    ///
    /// ```
    /// assert_eq!(dmaspace::limits::DmaLimits::bits(40).dma_mask(), (1 << 40) - 1);
    /// ```
    #[must_use]
    pub const fn bits(bits: u32) -> Self {
        let bits = if bits == 0 {
            1
        } else if bits > 64 {
            64
        } else {
            bits
        };
        Self::with_mask(u64::MAX >> (64 - bits))
    }

    /// A device whose highest address is `mask`, with no other limit.
    ///
    /// ```
    /// assert_eq!(dmaspace::limits::DmaLimits::with_mask(0xfff).dma_mask(), 0xfff);
    /// ```
    #[must_use]
    pub const fn with_mask(mask: u64) -> Self {
        Self {
            dma_mask: mask,
            max_segment_size: u64::MAX,
            segment_boundary: u64::MAX,
            max_segments: usize::MAX,
            alignment: 1,
        }
    }

    /// The same limits with no segment longer than `bytes` (at least 1).
    ///
    /// ```
    /// let l = dmaspace::limits::DmaLimits::BITS_64.max_segment_size(0);
    /// assert_eq!(l.max_segment_size_bytes(), 1);
    /// ```
    #[must_use]
    pub const fn max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = if bytes == 0 { 1 } else { bytes };
        self
    }

    /// The same limits with no segment crossing a multiple of `mask + 1`
    /// (`mask` is a power of two minus one, e.g. `0xffff_ffff`; others are
    /// rounded down to one).
    ///
    /// ```
    /// let l = dmaspace::limits::DmaLimits::BITS_64.segment_boundary(0x1_2345);
    /// assert_eq!(l.segment_boundary_mask(), 0xffff);
    /// ```
    #[must_use]
    pub const fn segment_boundary(mut self, mask: u64) -> Self {
        // The largest 2^k - 1 not above `mask`.
        self.segment_boundary = if mask == u64::MAX {
            u64::MAX
        } else {
            let k = 64 - (mask + 1).leading_zeros() - 1;
            (1u64 << k) - 1
        };
        self
    }

    /// The same limits with at most `n` segments per request (at least 1).
    ///
    /// ```
    /// assert_eq!(dmaspace::limits::DmaLimits::BITS_64.max_segments(0).max_segments_per_request(), 1);
    /// ```
    #[must_use]
    pub const fn max_segments(mut self, n: usize) -> Self {
        self.max_segments = if n == 0 { 1 } else { n };
        self
    }

    /// The same limits with every segment starting at a multiple of `align`
    /// (a power of two; others are rounded up to one).
    ///
    /// ```
    /// assert_eq!(dmaspace::limits::DmaLimits::BITS_64.alignment(3).segment_alignment(), 4);
    /// ```
    #[must_use]
    pub const fn alignment(mut self, align: u64) -> Self {
        self.alignment = match align.checked_next_power_of_two() {
            Some(a) => a,
            None => 1 << 63,
        };
        self
    }

    /// The highest address the device can emit.
    ///
    /// ```
    /// assert_eq!(dmaspace::limits::DmaLimits::BITS_64.dma_mask(), u64::MAX);
    /// ```
    #[must_use]
    pub const fn dma_mask(&self) -> u64 {
        self.dma_mask
    }

    /// The longest segment.
    ///
    /// See [`DmaLimits::max_segment_size`].
    #[must_use]
    pub const fn max_segment_size_bytes(&self) -> u64 {
        self.max_segment_size
    }

    /// The boundary mask no segment crosses.
    ///
    /// See [`DmaLimits::segment_boundary`].
    #[must_use]
    pub const fn segment_boundary_mask(&self) -> u64 {
        self.segment_boundary
    }

    /// The most segments per request.
    ///
    /// See [`DmaLimits::max_segments`].
    #[must_use]
    pub const fn max_segments_per_request(&self) -> usize {
        self.max_segments
    }

    /// The alignment of every segment's first byte.
    ///
    /// See [`DmaLimits::alignment`].
    #[must_use]
    pub const fn segment_alignment(&self) -> u64 {
        self.alignment
    }

    /// Whether segments are ever split or counted (the mapper's slow path).
    pub(crate) const fn cuts_segments(&self) -> bool {
        self.max_segment_size != u64::MAX
            || self.segment_boundary != u64::MAX
            || self.max_segments != usize::MAX
            || self.alignment != 1
    }

    /// The length of the first piece of a segment at `addr` of `len` bytes:
    /// up to the next boundary and at most the maximum size.
    #[inline]
    pub(crate) const fn piece(&self, addr: u64, len: u64) -> u64 {
        let to_boundary =
            (self.segment_boundary - (addr & self.segment_boundary)).saturating_add(1);
        let max = if to_boundary < self.max_segment_size {
            to_boundary
        } else {
            self.max_segment_size
        };
        if len < max { len } else { max }
    }
}

impl fmt::Debug for DmaLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DmaLimits");
        d.field("dma_mask", &format_args!("{:#x}", self.dma_mask));
        if self.max_segment_size != u64::MAX {
            d.field(
                "max_segment_size",
                &format_args!("{:#x}", self.max_segment_size),
            );
        }
        if self.segment_boundary != u64::MAX {
            d.field(
                "segment_boundary",
                &format_args!("{:#x}", self.segment_boundary),
            );
        }
        if self.max_segments != usize::MAX {
            d.field("max_segments", &self.max_segments);
        }
        if self.alignment != 1 {
            d.field("alignment", &self.alignment);
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_stop_at_boundaries_and_the_maximum() {
        let l = DmaLimits::BITS_64
            .max_segment_size(0x3000)
            .segment_boundary(0xffff);
        assert_eq!(l.piece(0xf000, 0x4000), 0x1000, "up to the 64 KiB boundary");
        assert_eq!(l.piece(0x1_0000, 0x4000), 0x3000, "then the maximum size");
        assert_eq!(l.piece(0x1_3000, 0x800), 0x800, "then what is left");
        let open = DmaLimits::BITS_64;
        assert_eq!(open.piece(u64::MAX - 1, 2), 2);
        assert!(!open.cuts_segments());
        assert!(l.cuts_segments());
    }
}

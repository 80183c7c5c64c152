//! Requests: the segments of one I/O, gathered for one mapper call.
//!
//! Without the `alloc` feature, a plain slice (`&mut [HostSeg]`,
//! `&mut [BvecSeg<PB>]`) is the same thing: mappers take slices by `&mut`
//! (a request is in one live mapping at a time), and these deref to them.

use alloc::vec::Vec;
use core::fmt;

use crate::brand::Brand;
use crate::vec::seg::{BvecSeg, HostSeg, SegOf};

/// Host memory only: the only memory the CPU may touch, bounce or sync.
/// Holds [`HostSeg`]s and nothing else: the design card's `PfnVec`, the
/// kernel's page vectors (page frames, never a BAR).
///
/// ```
/// use dmaspace::{host::SimulatedRam, vec::PfnVec, PhysAddr};
/// // SAFETY: simulated addresses, never given to hardware.
/// let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10000), 2) };
/// let mut pages: Vec<_> = ram.pages().collect();
/// let v: PfnVec = pages.iter_mut().map(|p| p.dma()).collect();
/// assert_eq!(v.total_len(), 8192);
/// ```
#[derive(Debug, Default)]
pub struct PfnVec<'m> {
    segs: Vec<HostSeg<'m>>,
}

impl<'m> PfnVec<'m> {
    /// An empty vector.
    ///
    /// ```
    /// assert!(dmaspace::vec::PfnVec::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self { segs: Vec::new() }
    }

    /// Appends a host segment.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// let mut v = dmaspace::vec::PfnVec::new();
    /// v.push(p.dma());
    /// assert_eq!(v.len(), 1);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn push(&mut self, seg: HostSeg<'m>) {
        self.segs.push(seg);
    }

    /// Total bytes.
    ///
    /// ```
    /// assert_eq!(dmaspace::vec::PfnVec::new().total_len(), 0);
    /// ```
    #[must_use]
    pub fn total_len(&self) -> u64 {
        self.segs.iter().map(HostSeg::len).sum()
    }
}

impl<'m> core::ops::Deref for PfnVec<'m> {
    type Target = [HostSeg<'m>];
    fn deref(&self) -> &[HostSeg<'m>] {
        &self.segs
    }
}

impl<'m> core::ops::DerefMut for PfnVec<'m> {
    fn deref_mut(&mut self) -> &mut [HostSeg<'m>] {
        &mut self.segs
    }
}

impl<'m> IntoIterator for PfnVec<'m> {
    type Item = HostSeg<'m>;
    type IntoIter = alloc::vec::IntoIter<HostSeg<'m>>;
    fn into_iter(self) -> Self::IntoIter {
        self.segs.into_iter()
    }
}

impl<'m> FromIterator<HostSeg<'m>> for PfnVec<'m> {
    fn from_iter<I: IntoIterator<Item = HostSeg<'m>>>(iter: I) -> Self {
        Self {
            segs: iter.into_iter().collect(),
        }
    }
}

/// One I/O request: host segments and segments of one P2P provider of
/// brand `PB`, in order (the block layer's rule: one bio, one provider).
/// Segments of another provider brand have another type and cannot be
/// pushed; segments of another provider *instance* of the same brand are
/// refused by the mapper ([`MapError::ForeignProvider`]).
///
/// [`MapError::ForeignProvider`]: crate::error::MapError::ForeignProvider
///
/// ```
/// use dmaspace::vec::BvecP2p;
/// # let mut b = [0u8; 8];
/// # // SAFETY: doc example, never mapped for hardware.
/// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
/// dmaspace::brand!(Cmb);
/// let mut bv = BvecP2p::<Cmb>::new();
/// bv.push(p.dma());
/// assert_eq!((bv.len(), bv.total_len()), (1, 8));
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
pub struct BvecP2p<'m, PB: Brand> {
    segs: Vec<BvecSeg<'m, PB>>,
}

impl<'m, PB: Brand> BvecP2p<'m, PB> {
    /// An empty request.
    ///
    /// ```
    /// dmaspace::brand!(P);
    /// assert!(dmaspace::vec::BvecP2p::<P>::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self { segs: Vec::new() }
    }

    /// An empty request with room for `n` segments.
    ///
    /// ```
    /// dmaspace::brand!(P);
    /// assert!(dmaspace::vec::BvecP2p::<P>::with_capacity(8).is_empty());
    /// ```
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            segs: Vec::with_capacity(n),
        }
    }

    /// Appends a host segment or a segment of provider `PB`.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// # dmaspace::brand!(P);
    /// let mut bv = dmaspace::vec::BvecP2p::<P>::new();
    /// bv.push(p.dma());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn push(&mut self, seg: impl SegOf<'m, PB>) {
        self.segs.push(seg.into_bvec_seg());
    }

    /// Total bytes.
    ///
    /// ```
    /// # dmaspace::brand!(P);
    /// assert_eq!(dmaspace::vec::BvecP2p::<P>::new().total_len(), 0);
    /// ```
    #[must_use]
    pub fn total_len(&self) -> u64 {
        self.segs.iter().map(BvecSeg::len).sum()
    }
}

impl<PB: Brand> Default for BvecP2p<'_, PB> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'m, PB: Brand> core::ops::Deref for BvecP2p<'m, PB> {
    type Target = [BvecSeg<'m, PB>];
    fn deref(&self) -> &[BvecSeg<'m, PB>] {
        &self.segs
    }
}

impl<'m, PB: Brand> core::ops::DerefMut for BvecP2p<'m, PB> {
    fn deref_mut(&mut self) -> &mut [BvecSeg<'m, PB>] {
        &mut self.segs
    }
}

impl<'m, PB: Brand> IntoIterator for BvecP2p<'m, PB> {
    type Item = BvecSeg<'m, PB>;
    type IntoIter = alloc::vec::IntoIter<BvecSeg<'m, PB>>;
    fn into_iter(self) -> Self::IntoIter {
        self.segs.into_iter()
    }
}

impl<PB: Brand> fmt::Debug for BvecP2p<'_, PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.segs.iter()).finish()
    }
}

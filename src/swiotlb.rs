//! Bounce buffering (swiotlb) for host memory a device cannot address.
//!
//! Bouncing copies bytes through the CPU, so it takes only
//! [`CpuAccessible`] memory. P2P memory is never bounced: the kernel
//! returns an error at map time; here the call does not compile.
//!
//! Two rules from Linux's history are built in:
//! - the slot is always filled from the source, whatever the direction
//!   (Linux's 2022 fix, "swiotlb: fix info leak with DMA_FROM_DEVICE"): a
//!   device that writes less than the whole slot leaves the source's own
//!   bytes there, never a previous user's;
//! - copying back is a method of the [`Bounce`] itself, which owns its slot
//!   and is consumed by it: it cannot copy another bounce's bytes, nor
//!   twice.

use crate::error::MapError;
use crate::host::{CpuAccessible, HostPages};
use crate::vec::HostSeg;

/// A bounce pool: host memory the device can address, used in place of
/// memory it cannot.
///
/// ```
/// use dmaspace::{host::{CpuAccessible, SimulatedRam}, swiotlb::Swiotlb, PhysAddr};
/// // SAFETY: simulated addresses, never given to hardware.
/// let mut low = unsafe { SimulatedRam::new(PhysAddr::new(0x1000), 1) };
/// // SAFETY: as above.
/// let mut high = unsafe { SimulatedRam::new(PhysAddr::new(0x1_0000_0000), 1) };
/// let mut pool = Swiotlb::new(low.pages().next().unwrap());
/// let mut buf = high.pages().next().unwrap();
/// buf.cpu_bytes_mut()[..4].copy_from_slice(b"data");
/// let mut slot = pool.bounce(&buf, 0, 4)?;
/// assert_eq!(slot.dma().phys(), Some(PhysAddr::new(0x1000))); // the device reads the pool copy
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
#[derive(Debug)]
pub struct Swiotlb<'p> {
    pool: HostPages<'p>,
}

impl<'p> Swiotlb<'p> {
    /// A pool over `pool`, which must be addressable by the devices it serves.
    ///
    /// See the type-level example.
    pub fn new(pool: HostPages<'p>) -> Self {
        Self { pool }
    }

    /// Copies `len` bytes at `offset` of `src` into a slot of the pool and
    /// returns the slot, to hand to the device side instead of `src`. One
    /// bounce at a time: the slot borrows the pool.
    ///
    /// # Errors
    /// [`MapError::BouncePoolExhausted`] if `len` exceeds the pool,
    /// [`MapError::OutOfBounds`] if the range is not inside `src`.
    ///
    /// See the type-level example.
    pub fn bounce<M: CpuAccessible + ?Sized>(
        &mut self,
        src: &M,
        offset: usize,
        len: usize,
    ) -> Result<Bounce<'_>, MapError> {
        let bytes = src.cpu_bytes();
        MapError::check_within(offset as u64, len as u64, bytes.len() as u64)?;
        if len as u64 > self.pool.len() {
            return Err(MapError::BouncePoolExhausted { len: len as u64 });
        }
        let mut slot = self.pool.sub_pages(0, len as u64)?;
        slot.cpu_bytes_mut()
            .copy_from_slice(&bytes[offset..offset + len]);
        Ok(Bounce { slot })
    }
}

/// One bounced range: a pool slot filled from its source.
#[derive(Debug)]
pub struct Bounce<'b> {
    slot: HostPages<'b>,
}

impl Bounce<'_> {
    /// The slot, for the device side (a mapper's host segment).
    ///
    /// See [`Swiotlb`].
    #[must_use]
    pub fn dma(&mut self) -> HostSeg<'_> {
        self.slot.dma()
    }

    /// Copies the slot (what the device wrote, and the source's bytes
    /// where it wrote nothing) to `dst` at `offset`
    /// (`swiotlb_sync_single_for_cpu`), and frees the slot.
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the slot does not fit at `offset`.
    ///
    /// ```
    /// use dmaspace::{host::{CpuAccessible, SimulatedRam}, swiotlb::Swiotlb, PhysAddr};
    /// # // SAFETY: simulated addresses, never given to hardware.
    /// # let mut low = unsafe { SimulatedRam::new(PhysAddr::new(0x1000), 1) };
    /// # // SAFETY: as above.
    /// # let mut high = unsafe { SimulatedRam::new(PhysAddr::new(0x1_0000_0000), 1) };
    /// let mut pool = Swiotlb::new(low.pages().next().unwrap());
    /// let mut buf = high.pages().next().unwrap();
    /// let slot = pool.bounce(&buf, 0, 16)?;
    /// // ... a FromDevice mapping of `slot.dma()`; the device writes ...
    /// slot.copy_back(&mut buf, 0)?;
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn copy_back<M: CpuAccessible + ?Sized>(
        self,
        dst: &mut M,
        offset: usize,
    ) -> Result<(), MapError> {
        let src = self.slot.cpu_bytes();
        let out = dst.cpu_bytes_mut();
        let size = out.len() as u64;
        let slot = offset
            .checked_add(src.len())
            .and_then(|end| out.get_mut(offset..end))
            .ok_or(MapError::OutOfBounds {
                offset: offset as u64,
                len: src.len() as u64,
                size,
            })?;
        slot.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PhysAddr;

    #[test]
    fn bounce_copies_in_and_back() {
        let mut pool_bytes = [0u8; 64];
        let mut buf_bytes = *b"0123456789abcdef";
        // SAFETY: test memory, never given to hardware.
        let pool = unsafe { HostPages::new(&mut pool_bytes, PhysAddr::new(0x1000)) }.unwrap();
        // SAFETY: as above.
        let mut buf =
            unsafe { HostPages::new(&mut buf_bytes, PhysAddr::new(0x9_0000_0000)) }.unwrap();
        let mut sw = Swiotlb::new(pool);
        let mut b = sw.bounce(&buf, 4, 8).unwrap();
        let seg = b.dma();
        assert_eq!((seg.phys(), seg.len()), (Some(PhysAddr::new(0x1000)), 8));
        assert_eq!(b.slot.cpu_bytes(), b"456789ab");
        // The device writes 4 of 8 bytes; copy back brings those 4 and the
        // source's own other 4.
        let mut b = sw.bounce(&buf, 0, 8).unwrap();
        b.slot.cpu_bytes_mut()[..4].copy_from_slice(b"DEV!");
        b.copy_back(&mut buf, 8).unwrap();
        assert_eq!(buf.cpu_bytes(), b"01234567DEV!4567");
        assert!(sw.bounce(&buf, 0, 65).is_err());
        let b = sw.bounce(&buf, 0, 8).unwrap();
        assert!(b.copy_back(&mut buf, 9).is_err());
    }

    #[test]
    fn short_device_write_never_leaks_the_previous_user() {
        let mut pool_bytes = [0u8; 32];
        let mut secret = *b"SECRET-OF-USER-A";
        let mut mine = *b"................";
        // SAFETY: test memory, never given to hardware.
        let pool = unsafe { HostPages::new(&mut pool_bytes, PhysAddr::new(0x1000)) }.unwrap();
        // SAFETY: as above.
        let a = unsafe { HostPages::new(&mut secret, PhysAddr::new(0x9_0000_0000)) }.unwrap();
        // SAFETY: as above.
        let mut b = unsafe { HostPages::new(&mut mine, PhysAddr::new(0x9_1000_0000)) }.unwrap();
        let mut sw = Swiotlb::new(pool);
        // User A bounces its secret to a device (to-device).
        let _ = sw.bounce(&a, 0, 16).unwrap();
        // User B bounces for a device write; the device writes 2 bytes only.
        let mut slot = sw.bounce(&b, 0, 16).unwrap();
        slot.slot.cpu_bytes_mut()[..2].copy_from_slice(b"ok");
        slot.copy_back(&mut b, 0).unwrap();
        assert_eq!(b.cpu_bytes(), b"ok..............");
    }
}

//! Bounce buffering (swiotlb) for host memory a device cannot address.
//!
//! Bouncing copies bytes through the CPU, so it takes only
//! [`CpuAccessible`] memory. P2P memory is never bounced: the kernel
//! returns an error at map time; here the call does not compile.

use crate::dir::{DeviceWrites, Direction};
use crate::error::MapError;
use crate::host::{CpuAccessible, HostPages};
use crate::vec::HostSeg;

/// A bounce pool: host memory the device can address, used in place of
/// memory it cannot.
///
/// ```
/// use dmaspace::{dir::ToDevice, host::{CpuAccessible, SimulatedRam}, swiotlb::Swiotlb, PhysAddr};
/// // SAFETY: simulated addresses, never given to hardware.
/// let mut low = unsafe { SimulatedRam::new(PhysAddr::new(0x1000), 1) };
/// // SAFETY: as above.
/// let mut high = unsafe { SimulatedRam::new(PhysAddr::new(0x1_0000_0000), 1) };
/// let mut pool = Swiotlb::new(low.pages().next().unwrap());
/// let mut buf = high.pages().next().unwrap();
/// buf.cpu_bytes_mut()[..4].copy_from_slice(b"data");
/// let seg = pool.bounce::<ToDevice, _>(&buf, 0, 4)?;
/// assert_eq!(seg.phys(), PhysAddr::new(0x1000)); // the device reads the pool copy
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
#[derive(Debug)]
pub struct Swiotlb<'p> {
    pool: HostPages<'p>,
    held: u64,
}

impl<'p> Swiotlb<'p> {
    /// A pool over `pool`, which must be addressable by the devices it serves.
    ///
    /// See the type-level example.
    pub fn new(pool: HostPages<'p>) -> Self {
        Self { pool, held: 0 }
    }

    /// Copies `len` bytes at `offset` of `src` into the pool (for
    /// directions the device reads) and hands the pool copy to the device
    /// side. One bounce at a time: the returned segment borrows the pool.
    ///
    /// # Errors
    /// [`MapError::BouncePoolExhausted`] if `len` exceeds the pool,
    /// [`MapError::OutOfBounds`] if the range is not inside `src`.
    ///
    /// See the type-level example.
    pub fn bounce<D: Direction, M: CpuAccessible + ?Sized>(
        &mut self,
        src: &M,
        offset: usize,
        len: usize,
    ) -> Result<HostSeg<'_>, MapError> {
        let bytes = src.cpu_bytes();
        MapError::check_within(offset as u64, len as u64, bytes.len() as u64)?;
        let range = offset..offset + len;
        if len as u64 > self.pool.len() {
            return Err(MapError::BouncePoolExhausted { len: len as u64 });
        }
        if reads::<D>() {
            self.pool.cpu_bytes_mut()[..len].copy_from_slice(&bytes[range]);
        }
        self.held = len as u64;
        self.pool.dma_range(0, len as u64)
    }

    /// Copies what the device wrote into the pool back to `dst` at
    /// `offset` (`swiotlb_sync_single_for_cpu` for `FromDevice`).
    ///
    /// # Errors
    /// [`MapError::OutOfBounds`] if the bounced length does not fit at `offset`.
    ///
    /// ```
    /// use dmaspace::{dir::FromDevice, host::{CpuAccessible, SimulatedRam}, swiotlb::Swiotlb, PhysAddr};
    /// # // SAFETY: simulated addresses, never given to hardware.
    /// # let mut low = unsafe { SimulatedRam::new(PhysAddr::new(0x1000), 1) };
    /// # // SAFETY: as above.
    /// # let mut high = unsafe { SimulatedRam::new(PhysAddr::new(0x1_0000_0000), 1) };
    /// let mut pool = Swiotlb::new(low.pages().next().unwrap());
    /// let mut buf = high.pages().next().unwrap();
    /// let _seg = pool.bounce::<FromDevice, _>(&buf, 0, 16)?;
    /// // ... the device writes the pool ...
    /// pool.copy_back::<FromDevice, _>(&mut buf, 0)?;
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn copy_back<D: DeviceWrites, M: CpuAccessible + ?Sized>(
        &self,
        dst: &mut M,
        offset: usize,
    ) -> Result<(), MapError> {
        let len = self.held as usize;
        let out = dst.cpu_bytes_mut();
        let size = out.len() as u64;
        let slot = offset
            .checked_add(len)
            .and_then(|end| out.get_mut(offset..end))
            .ok_or(MapError::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                size,
            })?;
        slot.copy_from_slice(&self.pool.cpu_bytes()[..len]);
        Ok(())
    }
}

/// Whether direction `D` lets the device read (so the pool must be filled).
fn reads<D: Direction>() -> bool {
    D::DEVICE_PERM.contains(crate::iommu::IommuPerm::READ)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PhysAddr;
    use crate::dir::{FromDevice, ToDevice};

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
        let seg = sw.bounce::<ToDevice, _>(&buf, 4, 8).unwrap();
        assert_eq!((seg.phys(), seg.len()), (PhysAddr::new(0x1000), 8));
        assert_eq!(&sw.pool.cpu_bytes()[..8], b"456789ab");
        // FromDevice does not copy in, and copies back what the device wrote.
        let _ = sw.bounce::<FromDevice, _>(&buf, 0, 4).unwrap();
        sw.pool.cpu_bytes_mut()[..4].copy_from_slice(b"DEV!");
        sw.copy_back::<FromDevice, _>(&mut buf, 12).unwrap();
        assert_eq!(buf.cpu_bytes(), b"0123456789abDEV!");
        assert!(sw.bounce::<ToDevice, _>(&buf, 0, 65).is_err());
        assert!(sw.copy_back::<FromDevice, _>(&mut buf, 13).is_err());
    }
}

//! Mappings the platform made: wrap the addresses an OS DMA API returned
//! (Linux's `dma_map_sgtable`, `dma_map_page`) in the crate's types, so
//! that an in-kernel driver (Rust-for-Linux) writes its descriptors from
//! [`DmaSeg`](crate::vec::DmaSeg)s like any other user of the crate.
//!
//! The kernel keeps the mapping (its IOMMU entries, its swiotlb slots);
//! this module only types its addresses. The promise that they are valid,
//! for this device and this direction, until the driver unmaps, is the
//! caller's: [`view_platform_mapping`] is `unsafe`.
//!
//! # Example
//!
//! A driver's `queue_rq` with the kernel's scatterlist stood in by a slice
//! of `(dma_address, dma_length)` pairs (compiled and run without a kernel):
//!
//! ```
//! use dmaspace::platform::view_platform_mapping;
//! use dmaspace::prelude::*;
//! use dmaspace::vec::DmaSeg;
//! brand!(Nvme);
//!
//! /// What `dma_map_sgtable(dev, sgt, DMA_TO_DEVICE, 0)` left in `sgt`.
//! fn kernel_mapped() -> [(u64, u64); 2] {
//!     [(0xfff0_0000, 0x1000), (0xfff0_4000, 0x200)]
//! }
//!
//! /// The driver's PRP writer takes typed segments only.
//! fn prp_entries(segs: &[DmaSeg<Nvme, ToDevice>]) -> Vec<u64> {
//!     segs.iter().filter_map(|s| s.addr()).map(|a| a.as_u64()).collect()
//! }
//!
//! // SAFETY: the kernel's pci_dev for this function; no other Device drives it.
//! let nvme = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::BITS_64) };
//! let sgt = kernel_mapped();
//! let mut slots = [SegSlot::EMPTY; 8];
//! // SAFETY: `sgt` holds what dma_map_sgtable returned for this device,
//! // DMA_TO_DEVICE; the driver calls dma_unmap_sgtable only after this
//! // returns and the command completed.
//! let prps = unsafe {
//!     view_platform_mapping::<Nvme, ToDevice, _>(&nvme, &sgt, SegBuf::from_slots(&mut slots), |v| {
//!         v.segments(nvme.id()).map(prp_entries)
//!     })
//! }??;
//! assert_eq!(prps, [0xfff0_0000, 0xfff0_4000]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::brand::Brand;
use crate::device::Device;
use crate::dir::Direction;
use crate::error::MapError;
use crate::vec::{DmaVec, SegBuf, Synced};
use crate::vec::{RawSeg, Via};

/// Runs `use_it` with a view of `segs`, the `(address, length)` pairs of a
/// mapping the platform made for `device` in direction `D`. The view is the
/// same [`DmaVec`] a mapper hands out (already synced: the platform synced
/// it), with segments [`Via::Platform`].
///
/// # Safety
/// Every pair must be an address and length that the platform's DMA API
/// returned for this very device (`dma_map_sgtable`, `dma_map_page`, ...)
/// with a direction that allows `D`, and the mapping must stay live, not
/// unmapped nor synced for the CPU, until this function returns.
///
/// # Errors
/// [`MapError::EmptySegment`] or [`MapError::Overflow`] for a pair that is
/// empty or wraps; [`MapError::OutOfCapacity`] if `out` is too small.
///
/// See the module example.
pub unsafe fn view_platform_mapping<K: Brand, D: Direction, R>(
    device: &Device<'_, K>,
    segs: &[(u64, u64)],
    mut out: SegBuf<'_>,
    use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Synced>) -> R,
) -> Result<R, MapError> {
    for (index, &(start, len)) in segs.iter().enumerate() {
        if len == 0 {
            return Err(MapError::EmptySegment { index });
        }
        start
            .checked_add(len - 1)
            .ok_or(MapError::Overflow { start, len })?;
    }
    let slots = out.prepare(segs.len())?;
    for (slot, &(addr, len)) in slots.iter_mut().zip(segs) {
        *slot = crate::vec::SegSlot::new(RawSeg::wire(addr, len, Via::Platform));
    }
    out.set_len(segs.len());
    // INVARIANT: the view cannot leave `use_it` (`for<'s>`), and the caller keeps the
    // platform's mapping live until this function returns (the contract).
    Ok(use_it(DmaVec::new(out.as_raw(), None, device.id())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::FromDevice;
    use crate::limits::DmaLimits;
    use crate::vec::SegSlot;
    use dmaspace_pci::Bdf;

    crate::brand!(Nic);

    #[test]
    fn platform_addresses_are_typed_and_checked() {
        // SAFETY: test devices; nothing reaches hardware.
        let (a, b) = unsafe {
            (
                Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64),
                Device::<Nic>::new_unchecked(Bdf::new(0, 5, 0, 0), DmaLimits::BITS_64),
            )
        };
        let mut slots = [SegSlot::EMPTY; 2];
        // SAFETY: test values standing for dma_map_sgtable's output for `a`.
        let got = unsafe {
            view_platform_mapping::<Nic, FromDevice, _>(
                &a,
                &[(0x1000, 0x800), (0x9000, 0x1000)],
                SegBuf::from_slots(&mut slots),
                |v| {
                    assert_eq!(v.segments(b.id()).unwrap_err(), MapError::WrongDevice);
                    let s = v.segments(a.id()).unwrap();
                    (s.len(), s[1].via(), s[1].at(0xfff).unwrap().as_u64())
                },
            )
        }
        .unwrap();
        assert_eq!(got, (2, Via::Platform, 0x9fff));
        // SAFETY: refused before use.
        let err = unsafe {
            view_platform_mapping::<Nic, FromDevice, _>(
                &a,
                &[(0x1000, 0)],
                SegBuf::from_slots(&mut slots),
                |_| (),
            )
        };
        assert_eq!(err, Err(MapError::EmptySegment { index: 0 }));
        // SAFETY: refused before use.
        let err = unsafe {
            view_platform_mapping::<Nic, FromDevice, _>(
                &a,
                &[(u64::MAX, 2)],
                SegBuf::from_slots(&mut slots),
                |_| (),
            )
        };
        assert_eq!(
            err,
            Err(MapError::Overflow {
                start: u64::MAX,
                len: 2
            })
        );
        // SAFETY: refused before use.
        let err = unsafe {
            view_platform_mapping::<Nic, FromDevice, _>(
                &a,
                &[(0, 1); 3],
                SegBuf::from_slots(&mut slots),
                |_| (),
            )
        };
        assert_eq!(err, Err(MapError::OutOfCapacity { capacity: 2 }));
    }
}

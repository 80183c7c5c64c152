//! THE seam: the one place where this driver turns something into an address
//! it writes for a controller.
//!
//! Every address the driver gives a controller — PRP1, PRP2, each PRP list
//! entry and list pointer, the admin queue bases (ASQ/ACQ), the base of every
//! I/O queue in Create I/O SQ/CQ — is a [`DevAddr`], and a `DevAddr` comes
//! only from dmaspace's typed mappings:
//! - a [`DmaAddr`] of a live mapping for an NVMe device ([`DevAddr::from`]):
//!   a ring's address ([`Coherent::addr_of`](dmaspace::map::Coherent::addr_of)),
//!   or a data segment's address at an offset (`DmaSeg::at`) — an IOVA of the
//!   VFIO type1 / iommufd backend, a physical address in no-IOMMU mode, a bus
//!   address of a peer's BAR (bus-address route) or an IOVA of a peer's BAR
//!   (host-bridge route);
//! - a [`BarOffset`] of the controller's own CMB (a
//!   same-device route), placed in the controller's CMB window
//!   ([`device_addr`] with the [`CmbWindow`] the controller was programmed
//!   with);
//! - or the `unsafe` escape [`DevAddr::assume_valid`], used once, by the
//!   `iommu-contains` negative control.
//!
//! A `DevAddr` borrows the mapping it came from: it cannot outlive it. The
//! device it is for is checked where the segments are taken from the mapping
//! (`DmaVec::segments(device_id)`), its kind (`Nvme`) and direction by type.

use core::fmt;
use core::marker::PhantomData;

use dmaspace::dir::Direction;
use dmaspace::error::MapError;
use dmaspace::vec::{DmaSeg, Via};
use dmaspace::{BarOffset, DmaAddr};

use crate::dma::Nvme;

/// A device-visible DMA address for one controller, valid while `'a` (the
/// mapping it came from) lives. No arithmetic: an address further into a
/// mapping comes from the mapping again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DevAddr<'a>(u64, PhantomData<&'a ()>);

impl DevAddr<'_> {
    /// The value written into the command or register.
    #[must_use]
    pub fn raw(self) -> u64 {
        self.0
    }
}

impl DevAddr<'static> {
    /// An address from a bare integer, bypassing the types.
    ///
    /// # Safety
    ///
    /// The controller will DMA to or from `raw`. The caller guarantees that
    /// whatever `raw` reaches in the controller's DMA domain (an IOVA, or a
    /// physical address without IOMMU) is memory the device may access for the
    /// whole command, or that the IOMMU blocks it — the `iommu-contains`
    /// negative control relies on the latter, for an IOVA it has just unmapped.
    #[must_use]
    pub unsafe fn assume_valid(raw: u64) -> Self {
        Self(raw, PhantomData)
    }
}

impl<'a, D: Direction> From<DmaAddr<'a, Nvme, D>> for DevAddr<'a> {
    fn from(a: DmaAddr<'a, Nvme, D>) -> Self {
        Self(a.as_u64(), PhantomData)
    }
}

impl fmt::Debug for DevAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevAddr({:#x})", self.0)
    }
}

impl fmt::LowerHex for DevAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Where a controller sees its own CMB: it takes an address in `[cba, cba +
/// size)` as CMB memory (CMBMSC.CBA with CMSE set) and never sends it to the
/// bus. With the CMB at offset 0 of BAR `bar` (CMBLOC.OFST = 0, checked when
/// it was enabled), BAR offset `o` is controller address `cba + o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmbWindow {
    /// The BAR that holds the CMB.
    pub bar: u8,
    /// The controller address of BAR offset 0 (what CMBMSC.CBA holds).
    pub cba: u64,
    /// Size of the CMB.
    pub size: u64,
}

impl CmbWindow {
    fn place(
        &self,
        bar: u8,
        o: BarOffset<'_, Nvme, impl Direction>,
        offset: u64,
    ) -> Result<u64, SeamError> {
        if bar != self.bar {
            return Err(SeamError::OtherBar {
                bar,
                cmb_bar: self.bar,
            });
        }
        let at = o.as_u64().checked_add(offset).filter(|&x| x < self.size);
        at.map(|x| self.cba + x).ok_or(SeamError::OutsideCmb {
            offset: o.as_u64().saturating_add(offset),
            size: self.size,
        })
    }
}

/// Why the seam refused to produce an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeamError {
    /// The mapping refused the offset (past the segment's end).
    Map(MapError),
    /// A segment in the controller's own BAR, but no CMB is enabled.
    NoCmb,
    /// A segment in another BAR than the CMB's.
    OtherBar {
        /// The segment's BAR.
        bar: u8,
        /// The CMB's.
        cmb_bar: u8,
    },
    /// Past the end of the CMB.
    OutsideCmb {
        /// BAR offset asked for.
        offset: u64,
        /// CMB size.
        size: u64,
    },
    /// A kind of segment this driver does not take (a platform DMA address).
    Unsupported(Via),
}

impl fmt::Display for SeamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Map(e) => write!(f, "{e}"),
            Self::NoCmb => {
                f.write_str("a segment in the controller's own BAR, but its CMB is not enabled")
            }
            Self::OtherBar { bar, cmb_bar } => {
                write!(f, "a segment in BAR{bar}, the CMB is in BAR{cmb_bar}")
            }
            Self::OutsideCmb { offset, size } => {
                write!(f, "CMB offset {offset:#x} outside its {size:#x} bytes")
            }
            Self::Unsupported(via) => write!(f, "a {via:?} segment"),
        }
    }
}

impl From<MapError> for SeamError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

/// THE seam: the address a controller uses for byte `offset` of the mapped
/// segment `seg`; `cmb` is the controller's own CMB window, if enabled.
///
/// # Errors
///
/// [`SeamError`] when the offset is outside the segment, or the segment is in
/// the controller's own BAR and no (or another) CMB window covers it.
pub fn device_addr<'a, D: Direction>(
    cmb: Option<&CmbWindow>,
    seg: &'a DmaSeg<Nvme, D>,
    offset: u64,
) -> Result<DevAddr<'a>, SeamError> {
    match seg.via() {
        Via::Iommu | Via::Direct | Via::BusAddr => Ok(seg.at(offset)?.into()),
        Via::OwnBar => {
            if offset >= seg.len() {
                return Err(SeamError::Map(MapError::OutOfBounds {
                    offset,
                    len: 1,
                    size: seg.len(),
                }));
            }
            let (bar, o) = seg
                .bar_offset()
                .ok_or(SeamError::Unsupported(Via::OwnBar))?;
            let cmb = cmb.ok_or(SeamError::NoCmb)?;
            Ok(DevAddr(cmb.place(bar, o, offset)?, PhantomData))
        }
        via => Err(SeamError::Unsupported(via)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmaspace::dir::{FromDevice, ToDevice};
    use dmaspace::host::SimulatedRam;
    use dmaspace::prelude::*;
    use dmaspace::vec::SegOf;

    dmaspace::brand!(TestDom);
    dmaspace::brand!(TestCmb);

    #[test]
    fn host_segments_give_their_iovas_and_own_cmb_segments_the_cmb_window() {
        let bdf = Bdf::new(0, 0, 3, 0);
        // SAFETY: a simulated device, memory and BAR; nothing reaches hardware.
        let (dev, mut ram, cmb) = unsafe {
            (
                Device::<Nvme>::new_unchecked(bdf, DmaLimits::BITS_64),
                SimulatedRam::new(PhysAddr::new(0x10_0000), 2),
                Provider::<TestCmb>::new(
                    bdf,
                    2,
                    PhysAddr::new(0xfe00_0000),
                    BusAddr::new_unchecked(0xfe00_0000),
                    1 << 20,
                )
                .unwrap(),
            )
        };
        let dom = IommuDomain::<TestDom>::software(0x1000_0000, 1 << 20).unwrap();
        let m = Mapper::iommu(&dev, &dom).unwrap();
        let mut pages = ram.pages().next().unwrap();
        let seg = pages.dma();
        m.map_host::<ToDevice, _>(&mut [seg], SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            let s = &v.segments(dev.id()).unwrap()[0];
            let base = s.addr().unwrap().as_u64();
            assert_eq!(device_addr(None, s, 0x10).unwrap().raw(), base + 0x10);
            assert!(matches!(
                device_addr(None, s, 0x1000),
                Err(SeamError::Map(MapError::OutOfBounds { .. }))
            ));
        })
        .unwrap();
        // The controller's own CMB: the BAR offset lands in its CMB window.
        let route: P2pRoute<'_, TestCmb, Nvme> = Route::same_device(&cmb, &dev).unwrap().into();
        let _skip = cmb.alloc(0x2000).unwrap();
        let a = cmb.alloc(0x1000).unwrap();
        let w = CmbWindow {
            bar: 2,
            cba: 0xfe00_0000,
            size: 1 << 20,
        };
        m.map_bvec::<FromDevice, _, _>(
            &mut [a.seg().into_bvec_seg()],
            &route,
            SegBuf::with_capacity(1),
            |v| {
                let v = v.sync();
                let s = &v.segments(dev.id()).unwrap()[0];
                assert_eq!(s.via(), Via::OwnBar);
                assert_eq!(device_addr(Some(&w), s, 0x20).unwrap().raw(), 0xfe00_2020);
                assert_eq!(device_addr(None, s, 0), Err(SeamError::NoCmb));
                let other = CmbWindow { bar: 4, ..w };
                assert!(matches!(
                    device_addr(Some(&other), s, 0),
                    Err(SeamError::OtherBar { .. })
                ));
                let small = CmbWindow { size: 0x2000, ..w };
                assert!(matches!(
                    device_addr(Some(&small), s, 0),
                    Err(SeamError::OutsideCmb { .. })
                ));
                assert!(
                    device_addr(Some(&w), s, 0x1000).is_err(),
                    "past the segment"
                );
            },
        )
        .unwrap();
    }
}

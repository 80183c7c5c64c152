//! Pass 1: what each segment becomes, and whether the whole request can be
//! mapped. Checks everything, changes nothing.

use crate::addr::PhysAddr;
use crate::backend::AddrKind;
use crate::brand::Brand;
use crate::error::MapError;
use crate::iommu::LinkCursor;
use crate::route::{Route, SameDevice, ViaBusAddr, ViaHostBridge};
use crate::vec::{HostSeg, P2pSeg};

use super::translation::Translation;

/// What one segment becomes; decided per request by the route, so the
/// passes do no classification.
#[derive(Clone, Copy)]
pub(super) enum Step {
    /// Link into the IOVA run: `addr` is what the IOMMU backend maps (a
    /// physical or a process virtual address). `mmio`: P2P through the
    /// host bridge. `covers`: the granules it touches lie inside its buffer.
    Link {
        addr: u64,
        len: u64,
        mmio: bool,
        covers: bool,
    },
    /// Physical address as is (dma-direct).
    Direct { phys: PhysAddr, len: u64 },
    /// Bus address, IOMMU bypassed.
    Bus { raw: u64, len: u64 },
    /// Offset in the client's own BAR.
    OwnBar { bar: u8, offset: u64, len: u64 },
    /// Memory of another provider than the route's: refused by the plan.
    Foreign,
    /// P2P memory the backend cannot reach: it maps process virtual
    /// addresses, and the provider's BAR is not mapped into the process.
    NoCpuMapping,
    /// Host memory whose physical address is unknown, for a mapper that
    /// needs it.
    NoPhysAddr,
}

/// The host segment behind a step, for cache maintenance; `None` for P2P.
pub(super) type Src<'a> = Option<&'a HostSeg<'a>>;

/// Host memory: linked at the address the backend maps when the device
/// has an IOMMU, used at its physical address otherwise. Granule coverage
/// is counted in the addresses the backend maps.
#[inline(always)]
pub(super) fn host_step<T: Translation>(s: &HostSeg<'_>) -> Step {
    let needs_phys = !T::IOMMU || matches!(T::MAPS, AddrKind::Phys);
    if needs_phys && s.phys().is_none() {
        return Step::NoPhysAddr;
    }
    if T::IOMMU {
        let (addr, covers) = match T::MAPS {
            AddrKind::Phys => (s.phys_raw().as_u64(), s.covers_granules()),
            AddrKind::Virt => (s.vaddr() as u64, s.covers_granules_virt()),
        };
        Step::Link {
            addr,
            len: s.len(),
            mmio: false,
            covers,
        }
    } else {
        Step::Direct {
            phys: s.phys_raw(),
            len: s.len(),
        }
    }
}

/// P2P memory through the host bridge: like MMIO. Through the IOMMU its
/// granules must lie inside its allocation, as host memory's must. A
/// backend that maps process virtual addresses gets the address where the
/// process sees the provider's BAR
/// ([`Provider::set_cpu_mapping`](crate::provider::Provider::set_cpu_mapping)),
/// page-aligned like the BAR, so granule coverage is the same in both.
#[inline(always)]
pub(super) fn host_bridge_step<T: Translation, PB: Brand, K: Brand>(
    r: &Route<'_, PB, K, ViaHostBridge>,
    s: &P2pSeg<'_, PB>,
) -> Step {
    match (T::IOMMU, T::MAPS) {
        (false, _) => Step::Direct {
            phys: s.phys(),
            len: s.len(),
        },
        (true, AddrKind::Phys) => Step::Link {
            addr: s.phys().as_u64(),
            len: s.len(),
            mmio: true,
            covers: p2p_covers(s),
        },
        (true, AddrKind::Virt) => match r.cpu_vaddr(s) {
            Some(vaddr) => Step::Link {
                addr: vaddr as u64,
                len: s.len(),
                mmio: true,
                covers: p2p_covers(s),
            },
            None => Step::NoCpuMapping,
        },
    }
}

/// Whether the IOMMU may map the granules of `s` whole: a sub-page P2P
/// allocation shares its page with other allocations (the plan then
/// refuses it with `PartialGranule`).
#[inline(always)]
fn p2p_covers<PB: Brand>(s: &P2pSeg<'_, PB>) -> bool {
    s.covers_granules()
}

#[inline(always)]
pub(super) fn bus_step<PB: Brand, K: Brand>(
    r: &Route<'_, PB, K, ViaBusAddr>,
    s: &P2pSeg<'_, PB>,
) -> Step {
    Step::Bus {
        raw: r.bus_addr(s),
        len: s.len(),
    }
}

#[inline(always)]
pub(super) fn own_bar_step<PB: Brand, K: Brand>(
    r: &Route<'_, PB, K, SameDevice>,
    s: &P2pSeg<'_, PB>,
) -> Step {
    Step::OwnBar {
        bar: r.bar(),
        offset: r.bar_offset(s),
        len: s.len(),
    }
}

/// What pass 2 needs from pass 1.
pub(super) struct Plan {
    /// The IOVA run: its size (zero: nothing to link).
    pub(super) run: LinkCursor,
    /// Segments in the request: an upper bound of the output.
    pub(super) segments: usize,
}

/// Checks every segment against the route's provider, the device's DMA
/// mask and the link rule; sizes the IOVA run.
#[inline(always)]
pub(super) fn plan<'a>(
    steps: impl Iterator<Item = (Step, Src<'a>)>,
    mask: u64,
) -> Result<Plan, MapError> {
    let mut run = LinkCursor::default();
    let mut segments = 0;
    for (index, (step, _)) in steps.enumerate() {
        segments = index + 1;
        let (start, len) = match step {
            Step::Link { addr, len, .. } => (addr, len),
            Step::Direct { phys, len } => (phys.as_u64(), len),
            Step::Bus { raw, len } => (raw, len),
            Step::OwnBar { offset, len, .. } => (offset, len),
            Step::Foreign => return Err(MapError::ForeignProvider { index }),
            Step::NoCpuMapping => return Err(MapError::NoCpuMapping { index }),
            Step::NoPhysAddr => return Err(MapError::NoPhysAddr { index }),
        };
        if len == 0 {
            return Err(MapError::EmptySegment { index });
        }
        let last = start
            .checked_add(len - 1)
            .ok_or(MapError::Overflow { start, len })?;
        match step {
            Step::Link {
                addr, len, covers, ..
            } => {
                if !covers {
                    return Err(MapError::PartialGranule {
                        index,
                        granule: crate::iommu::GRANULE,
                    });
                }
                run.check(addr, len, index)?;
            }
            Step::Direct { .. } | Step::Bus { .. } if last > mask => {
                return Err(MapError::BeyondDmaMask { index, last, mask });
            }
            _ => {}
        }
    }
    Ok(Plan { run, segments })
}

/// Output segments of a checked request: consecutive links merge into one.
/// Needed only when the request has more segments than the output has room.
pub(super) fn outputs<'a>(steps: impl Iterator<Item = (Step, Src<'a>)>) -> usize {
    let mut outputs = 0;
    let mut run_open = false;
    for (step, _) in steps {
        let link = matches!(step, Step::Link { .. });
        outputs += usize::from(!(link && run_open));
        run_open = link;
    }
    outputs
}

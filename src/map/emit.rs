//! Pass 2: link the IOVA run and write the segments. Runs only after the
//! plan accepted the request and the run was reserved, so it cannot fail.

use crate::dir::Direction;
use crate::host::CacheMaintenance;
use crate::iommu::{GRANULE, IovaLease, LinkCursor, fill, link_flags};
use crate::vec::SegSlot;
use crate::vec::mapped::{RawSeg, Via};

use super::plan::{Src, Step};

/// Links and emits `steps` into `slots` (sized by the plan); returns how
/// many were written. Consecutive links extend the last segment.
#[inline(always)]
pub(super) fn emit<'a, D: Direction, C: CacheMaintenance, I>(
    steps: I,
    slots: &mut [SegSlot],
    lease: Option<&IovaLease<'_>>,
    cache: &C,
) -> usize
where
    I: Iterator<Item = (Step, Src<'a>)>,
{
    // Hoisted: the run's first IOVA and its entries.
    let (iova_start, entries) = match lease {
        Some(l) => (l.start(), l.entries()),
        None => (0, &[][..]),
    };
    let flags = [
        link_flags(D::DEVICE_PERM, false),
        link_flags(D::DEVICE_PERM, true),
    ];
    let mut run = LinkCursor::default();
    let mut n = 0usize;
    // Length of the IOVA run that is the last segment written, while it
    // may still grow; zero when the last segment is not a run.
    let mut run_len = 0u64;
    for (step, src) in steps {
        if let Some(seg) = src {
            cache.sync_for_device::<D>(seg);
        }
        let seg = match step {
            Step::Link {
                phys, len, mmio, ..
            } => {
                let placed = run.advance(phys, len);
                fill(
                    &entries[placed.first_granule..][..placed.granules],
                    phys.align_down(GRANULE).as_u64(),
                    flags[usize::from(mmio)],
                );
                if run_len == 0 {
                    slots[n] = SegSlot::new(RawSeg::wire(iova_start + placed.at, len, Via::Iommu));
                    n += 1;
                }
                run_len += len;
                continue;
            }
            Step::Direct { phys, len } => RawSeg::wire(phys.as_u64(), len, Via::Direct),
            Step::Bus { raw, len } => RawSeg::wire(raw, len, Via::BusAddr),
            Step::OwnBar { bar, offset, len } => RawSeg::own_bar(bar, offset, len),
            // The plan refused the request.
            Step::Foreign => continue,
        };
        if run_len != 0 {
            slots[n - 1].raw_mut().len = run_len;
            run_len = 0;
        }
        slots[n] = SegSlot::new(seg);
        n += 1;
    }
    if run_len != 0 {
        slots[n - 1].raw_mut().len = run_len;
    }
    n
}

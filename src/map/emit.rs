//! Pass 2: link the IOVA run and write the segments. Runs only after the
//! plan accepted the request and the run was reserved; it fails only if
//! the IOMMU backend refuses a link, and then the caller drops the lease,
//! which unmaps everything linked.

use crate::dir::Direction;
use crate::error::MapError;
use crate::host::CacheMaintenance;
use crate::iommu::LinkCursor;
use crate::vec::SegSlot;
use crate::vec::{RawSeg, Via};

use super::plan::{Src, Step};
use crate::iommu::{LeaseLink, LinkLease};

/// Links and emits `steps` into `slots` (sized by the plan); returns how
/// many were written. Consecutive links extend the last segment.
#[inline(always)]
pub(super) fn emit<'a, D: Direction, C: CacheMaintenance, L: LinkLease, I>(
    steps: I,
    slots: &mut [SegSlot],
    lease: Option<&L>,
    cache: &C,
) -> Result<usize, MapError>
where
    I: Iterator<Item = (Step, Src<'a>)>,
{
    // Hoisted: the run's first IOVA and its linker.
    let iova_start = lease.map_or(0, L::start);
    let mut linker = lease.map(|l| l.linker(D::DEVICE_PERM));
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
                addr, len, mmio, ..
            } => {
                let placed = run.advance(addr, len);
                if let Some(linker) = &mut linker {
                    // SAFETY: the request's memory is borrowed for the whole
                    // call (the mapping's scope), exclusively for host
                    // memory, and the lease unmaps before the call returns.
                    unsafe { linker.link(placed, addr, mmio) }?;
                }
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
            // The plan refused such requests.
            Step::Foreign | Step::NoCpuMapping | Step::NoPhysAddr => continue,
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
    Ok(n)
}

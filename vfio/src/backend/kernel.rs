//! What the VFIO type1 and iommufd backends share: the table of live
//! mappings that keeps their `map`/`unmap` inside the trait's contract
//! whatever the kernel's own rules, the errno → [`BackendErrorKind`]
//! mapping, and the choice of the aperture among the kernel's valid IOVA
//! ranges.
//!
//! The kernel's rules the table papers over: type1v2 refuses an unmap that
//! splits a mapping (`EINVAL`), iommufd refuses it too and also answers
//! `ENOENT` for an empty range. The trait asks for "unmap removes every
//! translation inside the range, an empty range is not an error"; so the
//! table knows every mapping, unmaps whole ones, maps back the parts of a
//! split one that lie outside the range, and never calls the kernel for a
//! range that holds nothing.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::vec::Vec;

use dmaspace::backend::{BackendError, BackendErrorKind};
use dmaspace::dir::IommuPerm;

/// The kernel calls of one VFIO IOMMU context (a type1 container, an
/// iommufd IOAS), on raw numbers (errno on failure), and the attach check of
/// its mappers. Public only as the seal of
/// [`IommuHandle`](super::IommuHandle): not nameable outside the crate.
///
/// # Implementation safety
/// - [`map`](Self::map) makes `[iova, iova + len)` translate to the process
///   range at `vaddr` with exactly `perm` for the devices of the context and
///   changes no other translation; on error the kernel has unwound it.
/// - [`unmap`](Self::unmap) removes every translation inside the range, the
///   IOTLB flushed, before it returns `Ok`.
/// - [`attached`](Self::attached) answers `true` only if the kernel
///   translates every DMA of `vfio` through this context, and keeps doing so
///   while `vfio` is borrowed.
pub unsafe trait Kernel {
    /// The backend's name, for `Debug`.
    const NAME: &'static str;
    /// Name of the map call, for errors.
    const MAP_OP: &'static str;
    /// Name of the unmap call, for the abort message.
    const UNMAP_OP: &'static str;
    /// What is wrong when no aperture is left.
    const NO_WINDOW: &'static str;
    /// Maps `[iova, iova + len)` to the process virtual range at `vaddr`.
    fn map(&self, iova: u64, vaddr: u64, len: u64, perm: IommuPerm) -> Result<(), i32>;
    /// The name of the call [`map`](Self::map) makes for the process
    /// range at `vaddr`, for errors.
    fn map_op(&self, _vaddr: u64, _len: u64) -> &'static str {
        Self::MAP_OP
    }
    /// Unmaps whole mappings inside `[iova, iova + len)`.
    fn unmap(&self, iova: u64, len: u64) -> Result<(), i32>;
    /// Whether `vfio`'s DMA goes through this context.
    fn attached(&self, vfio: &crate::VfioDevice) -> bool;
    /// The error when [`attached`](Self::attached) says no.
    fn not_attached(vfio: dmaspace::pci::Bdf) -> super::AttachError;
    /// Fields of the handle for the backend's `Debug`.
    fn debug_fields(&self, _d: &mut core::fmt::DebugStruct<'_, '_>) {}
}

/// One live mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    len: u64,
    vaddr: u64,
    perm: IommuPerm,
}

/// The kernel refused to unmap a range the table says it may: the device
/// may still reach that memory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnmapFailed {
    pub(crate) iova: u64,
    pub(crate) len: u64,
    pub(crate) errno: i32,
}

/// The live mappings of one backend, by first IOVA; disjoint.
#[derive(Debug, Default)]
pub(crate) struct Mappings {
    live: Mutex<BTreeMap<u64, Entry>>,
}

/// What `errno` from the map call `op` means for the mapper. `mmio`: the
/// memory is a device's BAR (P2P through the host bridge): an `EFAULT` then
/// says the kernel cannot pin it (iommufd in 6.12 refuses PFNMAP ranges).
pub(crate) fn map_error(op: &'static str, errno: i32, mmio: bool) -> BackendError {
    use libc::{EADDRINUSE, EEXIST, EFAULT, EINVAL, ENODEV, ENOMEM, ENOSPC, EOVERFLOW, ERANGE};
    let kind = match errno {
        ENOMEM | ENOSPC => BackendErrorKind::NoMemory,
        EFAULT if mmio => BackendErrorKind::Unmappable,
        ENODEV if mmio => BackendErrorKind::Revoked,
        EEXIST | EINVAL | EOVERFLOW | ERANGE | EADDRINUSE => BackendErrorKind::BadRange,
        _ => BackendErrorKind::Other,
    };
    BackendError::new(op, errno, kind)
}

impl Mappings {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while the lock was held left the table as it was before
        // the call or after it (each update is one insert or remove).
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes mapped now.
    pub(crate) fn mapped_bytes(&self) -> u64 {
        self.lock().values().map(|e| e.len).sum()
    }

    /// Maps `[iova, iova + len)` to `vaddr` through `k`, after checking the
    /// arguments against `granule` and `aperture` and the range against the
    /// live mappings. Nothing stays mapped on error.
    pub(crate) fn map<K: Kernel>(
        &self,
        k: &K,
        granule: u64,
        aperture: (u64, u64),
        (iova, vaddr, len): (u64, u64, u64),
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        let refuse = |errno, kind| Err(BackendError::new(K::MAP_OP, errno, kind));
        let aligned = (iova | vaddr | len) % granule == 0;
        let (base, size) = aperture;
        let inside = len > 0
            && iova >= base
            && iova - base <= size
            && len <= size - (iova - base)
            && vaddr.checked_add(len - 1).is_some();
        if !aligned || !inside {
            return refuse(libc::EINVAL, BackendErrorKind::BadRange);
        }
        if perm.is_empty() {
            return refuse(libc::EINVAL, BackendErrorKind::Other);
        }
        let mut live = self.lock();
        if overlapping(&live, iova, len).next().is_some() {
            return refuse(libc::EEXIST, BackendErrorKind::BadRange);
        }
        match k.map(iova, vaddr, len, perm) {
            Ok(()) => {
                live.insert(iova, Entry { len, vaddr, perm });
                Ok(())
            }
            Err(errno) => {
                // The kernel unwinds a failed map (type1 and iommufd both);
                // an unmap of the range makes sure, and cannot touch anyone
                // else's mapping: the range was free in the table, and the
                // caller reserved it. An empty range answers 0 or ENOENT.
                if !matches!(errno, libc::EEXIST | libc::EINVAL) {
                    let _ = k.unmap(iova, len);
                }
                Err(map_error(k.map_op(vaddr, len), errno, mmio))
            }
        }
    }

    /// Removes every translation inside `[iova, iova + len)`: whole
    /// mappings inside it are unmapped; a mapping that straddles an end is
    /// unmapped whole and its part outside the range mapped back (if the
    /// kernel refuses that, the part stays unmapped: the device faults
    /// there, it reaches nothing it should not). No kernel call when the
    /// range holds nothing.
    ///
    /// # Errors
    /// [`UnmapFailed`] if the kernel refused the unmap: then the table is
    /// unchanged and the memory may still be reachable.
    pub(crate) fn unmap<K: Kernel>(&self, k: &K, iova: u64, len: u64) -> Result<(), UnmapFailed> {
        if len == 0 {
            return Ok(());
        }
        let end = iova.saturating_add(len);
        let mut live = self.lock();
        let hit: Vec<(u64, Entry)> = overlapping(&live, iova, len).collect();
        let (Some(&(first, _)), Some(&(last, last_e))) = (hit.first(), hit.last()) else {
            return Ok(());
        };
        // The hull of the range and every mapping it touches: whole mappings
        // only, so the kernel never sees a split.
        let lo = first.min(iova);
        let hi = (last + last_e.len).max(end);
        k.unmap(lo, hi - lo).map_err(|errno| UnmapFailed {
            iova: lo,
            len: hi - lo,
            errno,
        })?;
        for (at, _) in &hit {
            live.remove(at);
        }
        // Map back what lay outside the range.
        let mut keep = Vec::new();
        if first < iova {
            let e = hit[0].1;
            keep.push((first, e.vaddr, iova - first, e.perm));
        }
        if last + last_e.len > end {
            let off = end - last;
            keep.push((
                end,
                last_e.vaddr + off,
                last + last_e.len - end,
                last_e.perm,
            ));
        }
        for (at, vaddr, len, perm) in keep {
            if k.map(at, vaddr, len, perm).is_ok() {
                live.insert(at, Entry { len, vaddr, perm });
            }
        }
        Ok(())
    }
}

/// The live mappings that overlap `[iova, iova + len)`, in order.
fn overlapping(
    live: &BTreeMap<u64, Entry>,
    iova: u64,
    len: u64,
) -> impl Iterator<Item = (u64, Entry)> + '_ {
    let end = iova.saturating_add(len);
    let before = live
        .range(..iova)
        .next_back()
        .filter(|(at, e)| at.saturating_add(e.len) > iova);
    before
        .into_iter()
        .chain(live.range(iova..end))
        .map(|(&at, &e)| (at, e))
}

/// The aperture of a backend: the largest `granule`-aligned window inside
/// one of the kernel's valid IOVA ranges (`(first, last)` inclusive) that
/// meets none of the `avoid` windows (`(start, len)`: addresses a device
/// takes as its own and never sends to the IOMMU, such as an NVMe CMB's
/// controller address range). Ties go to the lower window. `None` if no
/// granule is left.
#[expect(
    clippy::cast_possible_truncation,
    reason = "clamped to the 64-bit top of the aperture above"
)]
pub(crate) fn pick_aperture(
    valid: &[(u64, u64)],
    granule: u64,
    avoid: &[(u64, u64)],
) -> Option<(u64, u64)> {
    debug_assert!(granule.is_power_of_two());
    // Work in [start, end) with u128 ends: a range may end at u64::MAX.
    let mut pieces: Vec<(u128, u128)> = valid
        .iter()
        .filter(|(a, b)| a <= b)
        .map(|&(a, b)| (u128::from(a), u128::from(b) + 1))
        .collect();
    for &(s, l) in avoid {
        if l == 0 {
            continue;
        }
        let (s, e) = (u128::from(s), u128::from(s) + u128::from(l));
        pieces = pieces
            .into_iter()
            .flat_map(|(a, b)| {
                if e <= a || b <= s {
                    [Some((a, b)), None]
                } else {
                    [(a < s).then_some((a, s)), (e < b).then_some((e, b))]
                }
            })
            .flatten()
            .collect();
    }
    let g = u128::from(granule);
    // The aperture's length must fit a u64: its end is at most 2^64 - granule.
    let top = (1u128 << 64) - g;
    pieces.sort_unstable();
    pieces
        .into_iter()
        .filter_map(|(a, b)| {
            let a = a.next_multiple_of(g);
            let b = b.min(top) / g * g;
            (a < b).then(|| (a as u64, (b - a) as u64))
        })
        .fold(None, |best: Option<(u64, u64)>, w| match best {
            Some(b) if b.1 >= w.1 => Some(b),
            _ => Some(w),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const G: u64 = 4096;
    const RW: IommuPerm = IommuPerm::READ.union(IommuPerm::WRITE);

    /// A kernel with type1v2's rules: EEXIST on overlap, EINVAL on a split
    /// unmap; records every call; fails the next map with `fail` if set.
    #[derive(Default)]
    struct FakeType1 {
        maps: RefCell<BTreeMap<u64, (u64, u64)>>,
        calls: RefCell<Vec<String>>,
        fail: RefCell<Option<i32>>,
        half_map_on_fail: bool,
    }

    // SAFETY: a test double: it maps nothing and no device is attached to it.
    unsafe impl Kernel for FakeType1 {
        const NAME: &'static str = "Fake";
        const MAP_OP: &'static str = "FAKE_MAP";
        const UNMAP_OP: &'static str = "FAKE_UNMAP";
        const NO_WINDOW: &'static str = "no window";
        fn attached(&self, _: &crate::VfioDevice) -> bool {
            false
        }
        fn not_attached(vfio: dmaspace::pci::Bdf) -> crate::backend::AttachError {
            crate::backend::AttachError::NotAttached { vfio }
        }
        fn map(&self, iova: u64, vaddr: u64, len: u64, _: IommuPerm) -> Result<(), i32> {
            self.calls
                .borrow_mut()
                .push(format!("map {iova:#x}+{len:#x}"));
            if let Some(e) = self.fail.borrow_mut().take() {
                if self.half_map_on_fail {
                    self.maps.borrow_mut().insert(iova, (G, vaddr));
                }
                return Err(e);
            }
            let m = self.maps.borrow();
            if m.iter().any(|(&a, &(l, _))| a < iova + len && iova < a + l) {
                return Err(libc::EEXIST);
            }
            drop(m);
            self.maps.borrow_mut().insert(iova, (len, vaddr));
            Ok(())
        }
        fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
            self.calls
                .borrow_mut()
                .push(format!("unmap {iova:#x}+{len:#x}"));
            let mut m = self.maps.borrow_mut();
            let split = m.iter().any(|(&a, &(l, _))| {
                a < iova + len && iova < a + l && (a < iova || a + l > iova + len)
            });
            if split {
                return Err(libc::EINVAL);
            }
            m.retain(|&a, &mut (l, _)| !(a >= iova && a + l <= iova + len));
            Ok(())
        }
    }

    fn map(
        t: &Mappings,
        k: &FakeType1,
        iova: u64,
        vaddr: u64,
        len: u64,
    ) -> Result<(), BackendError> {
        t.map(k, G, (0x10_0000, 0x100_0000), (iova, vaddr, len), RW, false)
    }

    #[test]
    fn errnos_map_to_kinds() {
        use BackendErrorKind::*;
        for (errno, mmio, kind) in [
            (libc::ENOMEM, false, NoMemory),
            (libc::ENOSPC, false, NoMemory),
            (libc::EFAULT, true, Unmappable),
            (libc::EFAULT, false, Other),
            (libc::ENODEV, true, Revoked),
            (libc::ENODEV, false, Other),
            (libc::EEXIST, false, BadRange),
            (libc::EINVAL, true, BadRange),
            (libc::EOVERFLOW, false, BadRange),
            (libc::EPERM, false, Other),
        ] {
            let e = map_error("IOMMU_IOAS_MAP", errno, mmio);
            assert_eq!(
                (e.kind(), e.code(), e.op()),
                (kind, errno, "IOMMU_IOAS_MAP"),
                "{errno}"
            );
        }
    }

    #[test]
    fn arguments_are_checked_before_any_call() {
        let (t, k) = (Mappings::default(), FakeType1::default());
        for (iova, vaddr, len) in [
            (0x10_0000, 0x7000, 0),               // empty
            (0x10_0800, 0x7000, G),               // unaligned IOVA
            (0x10_0000, 0x7010, G),               // unaligned vaddr
            (0x10_0000, 0x7000, 0x800),           // unaligned length
            (0xf000, 0x7000, G),                  // below the aperture
            (0x10f_f000, 0x7000, 2 * G),          // past its end
            (0x10_0000, u64::MAX - G + 1, 2 * G), // vaddr wraps
        ] {
            let e = map(&t, &k, iova, vaddr, len).unwrap_err();
            assert_eq!(
                e.kind(),
                BackendErrorKind::BadRange,
                "{iova:#x} {vaddr:#x} {len:#x}"
            );
        }
        assert!(k.calls.borrow().is_empty());
        let e = t
            .map(
                &k,
                G,
                (0x10_0000, 0x100_0000),
                (0x10_0000, 0x7000, G),
                IommuPerm::empty(),
                false,
            )
            .unwrap_err();
        assert_eq!(e.code(), libc::EINVAL);
        assert!(k.calls.borrow().is_empty());
    }

    #[test]
    fn overlaps_are_refused_by_the_table() {
        let (t, k) = (Mappings::default(), FakeType1::default());
        map(&t, &k, 0x20_0000, 0x7000_0000, 4 * G).unwrap();
        let e = map(&t, &k, 0x20_3000, 0x7100_0000, 2 * G).unwrap_err();
        assert_eq!(
            (e.kind(), e.code()),
            (BackendErrorKind::BadRange, libc::EEXIST)
        );
        assert_eq!(k.calls.borrow().len(), 1, "no kernel call for the overlap");
        assert_eq!(t.mapped_bytes(), 4 * G);
    }

    #[test]
    fn failed_maps_leave_nothing_mapped() {
        let k = FakeType1 {
            half_map_on_fail: true,
            ..FakeType1::default()
        };
        let t = Mappings::default();
        *k.fail.borrow_mut() = Some(libc::EFAULT);
        let e = t
            .map(
                &k,
                G,
                (0x10_0000, 0x100_0000),
                (0x20_0000, 0x7000_0000, 4 * G),
                RW,
                true,
            )
            .unwrap_err();
        assert_eq!(e.kind(), BackendErrorKind::Unmappable);
        // The (fake) kernel left a granule behind; the backend took it out.
        assert!(k.maps.borrow().is_empty());
        assert_eq!(t.mapped_bytes(), 0);
        *k.fail.borrow_mut() = Some(libc::ENOSPC);
        let e = map(&t, &k, 0x20_0000, 0x7000_0000, G).unwrap_err();
        assert_eq!(e.kind(), BackendErrorKind::NoMemory);
        assert!(k.maps.borrow().is_empty());
        // And the range maps fine afterwards.
        map(&t, &k, 0x20_0000, 0x7000_0000, 4 * G).unwrap();
    }

    #[test]
    fn unmap_of_nothing_calls_nothing() {
        let (t, k) = (Mappings::default(), FakeType1::default());
        t.unmap(&k, 0x20_0000, 16 * G).unwrap();
        t.unmap(&k, 0x20_0000, 0).unwrap();
        assert!(k.calls.borrow().is_empty());
    }

    #[test]
    fn unmap_of_a_run_takes_every_link_in_one_call() {
        let (t, k) = (Mappings::default(), FakeType1::default());
        // A mapper's run: three links, then the whole lease unmapped.
        map(&t, &k, 0x20_0000, 0x7000_0000, G).unwrap();
        map(&t, &k, 0x20_1000, 0x7100_0000, 2 * G).unwrap();
        map(&t, &k, 0x20_3000, 0x7200_0000, G).unwrap();
        t.unmap(&k, 0x20_0000, 8 * G).unwrap();
        assert_eq!(k.calls.borrow().last().unwrap(), "unmap 0x200000+0x8000");
        assert!(k.maps.borrow().is_empty());
        assert_eq!(t.mapped_bytes(), 0);
    }

    #[test]
    fn a_split_unmap_maps_back_what_lies_outside() {
        let (t, k) = (Mappings::default(), FakeType1::default());
        map(&t, &k, 0x20_0000, 0x7000_0000, 8 * G).unwrap();
        // Take out granules 2..5 of the 8: the kernel sees whole mappings only.
        t.unmap(&k, 0x20_2000, 3 * G).unwrap();
        assert_eq!(
            &k.calls.borrow()[1..],
            [
                "unmap 0x200000+0x8000",
                "map 0x200000+0x2000",
                "map 0x205000+0x3000"
            ]
        );
        let m = k.maps.borrow().clone();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [
                (0x20_0000, (2 * G, 0x7000_0000)),
                (0x20_5000, (3 * G, 0x7000_5000))
            ]
        );
        assert_eq!(t.mapped_bytes(), 5 * G);
        // Both pieces unmap again on their own.
        t.unmap(&k, 0x20_0000, 8 * G).unwrap();
        assert!(k.maps.borrow().is_empty());
        assert_eq!(t.mapped_bytes(), 0);
    }

    #[test]
    fn a_refused_unmap_is_reported_and_the_table_kept() {
        let (t, k) = (Mappings::default(), FakeType1::default());
        map(&t, &k, 0x20_0000, 0x7000_0000, 2 * G).unwrap();
        // Someone mapped behind the table's back, straddling the hull.
        k.maps.borrow_mut().insert(0x20_2000, (4 * G, 0x7500_0000));
        let e = t.unmap(&k, 0x20_0000, 4 * G).unwrap_err();
        assert_eq!(
            e,
            UnmapFailed {
                iova: 0x20_0000,
                len: 4 * G,
                errno: libc::EINVAL
            }
        );
        assert_eq!(t.mapped_bytes(), 2 * G);
    }

    #[test]
    fn the_aperture_is_the_largest_valid_window() {
        // intel-iommu, aw-bits=48: the MSI window is reserved.
        let valid = [(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)];
        assert_eq!(
            pick_aperture(&valid, G, &[]),
            Some((0xfef0_0000, 0x1_0000_0000_0000 - 0xfef0_0000))
        );
        // A controller's CMB window inside the big range splits it.
        let cmb = (0x8000_0000_0000, 0x40_0000);
        assert_eq!(
            pick_aperture(&valid, G, &[cmb]),
            Some((0x8000_0040_0000, 0x1_0000_0000_0000 - 0x8000_0040_0000))
        );
        // Windows below 4 GiB leave the big range alone.
        assert_eq!(
            pick_aperture(&valid, G, &[(0xfe00_0000, 0x40_0000), (0, 0)]),
            pick_aperture(&valid, G, &[])
        );
        // Unaligned ranges are rounded inwards; a range that keeps no
        // granule is dropped.
        assert_eq!(
            pick_aperture(&[(0x800, 0x2fff), (0x10_0000, 0x10_0800)], G, &[]),
            Some((0x1000, 0x2000))
        );
        assert_eq!(pick_aperture(&[(0x800, 0xfff)], G, &[]), None);
        assert_eq!(pick_aperture(&[], G, &[]), None);
        // The whole 64-bit space (no range capability): the length fits a u64.
        assert_eq!(
            pick_aperture(&[(0, u64::MAX)], G, &[]),
            Some((0, u64::MAX - G + 1))
        );
        // Equal windows: the lower one.
        assert_eq!(
            pick_aperture(&[(0x2000, 0x2fff), (0x1000, 0x1fff)], G, &[]),
            Some((0x1000, 0x1000))
        );
        // Avoiding everything leaves nothing.
        assert_eq!(
            pick_aperture(&[(0x1000, 0x1fff)], G, &[(0, 0x10_0000)]),
            None
        );
    }
}

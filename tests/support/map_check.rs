//! One `map_bvec` request built from a plain description, mapped through the
//! software IOMMU or directly, and every property checked against a naive
//! per-page reference: what the device reaches through the result is exactly
//! the bytes granted, in order, no more; every segment within the device's
//! limits; lengths summing to the request; nothing reachable or reserved
//! after the unmap, and nothing at all after an error. Shared by
//! `tests/map_reference.rs` (proptest) and `fuzz/fuzz_targets/map_plan.rs`.

use std::collections::BTreeMap;

use dmaspace::PAGE_SIZE;
use dmaspace::dir::{Bidirectional, Direction, FromDevice, IommuPerm, ToDevice};
use dmaspace::error::MapError;
use dmaspace::host::SimulatedRam;
use dmaspace::prelude::*;
use dmaspace::vec::{BvecSeg, DmaSeg, SegOf};

brand!(Cmb);
brand!(Nic);
brand!(Dom);

/// Bytes of simulated RAM per host segment (each segment has a buffer of its own).
pub const CHUNK: u64 = 4 * PAGE_SIZE;
/// The most segments in one request.
pub const MAX_SEGS: usize = 24;
const HOST_BASE: u64 = 0x1_0000_0000;
const BAR_CPU: u64 = 0x40_0000_0000;
const BAR_BUS: u64 = 0x8000_0000;
const BAR_SIZE: u64 = 1 << 20;
const P2P_ALLOC: u64 = 256 << 10;
const IOVA_BASE: u64 = 0x1000_0000;
const PROVIDER_BDF: Bdf = Bdf::new(0, 3, 0, 0);

/// One segment of a request.
#[derive(Clone, Copy, Debug)]
pub enum SegSpec {
    /// Host memory: a buffer `[sub_off, sub_off + sub_len)` of its own chunk of
    /// RAM ([`CHUNK`] bytes; the buffer's granules may hold memory outside it), and
    /// the segment `[off, off + len)` of that buffer.
    Host {
        sub_off: u16,
        sub_len: u16,
        off: u16,
        len: u16,
    },
    /// The route's provider's memory at `[off, off + len)` of an allocation.
    P2p { off: u32, len: u32 },
    /// Another provider's memory (same brand, another device).
    Foreign { off: u16, len: u16 },
}

/// A whole mapping: request, device limits, route, translation, direction.
#[derive(Clone, Debug)]
pub struct Spec {
    pub segs: Vec<SegSpec>,
    /// DMA mask width (clamped to 1..=64).
    pub mask_bits: u8,
    /// Max segment size in bytes (0: none).
    pub max_seg: u32,
    /// Segment boundary as a bit count (0 or >= 64: none).
    pub boundary_bits: u8,
    /// Max segments per request (0: none).
    pub max_segments: u8,
    /// 0: bus-address route, 1: through the host bridge, 2: same device.
    pub route: u8,
    /// Through the software IOMMU (else direct).
    pub iommu: bool,
    /// 0: to device, 1: from device, 2: both.
    pub dir: u8,
    /// Caller-provided output slots (0: as many as segments, times four).
    pub capacity: u8,
    /// IOVA aperture in pages (clamped to 1..=1024).
    pub aperture_pages: u16,
}

/// What happened, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Mapped; this many segments came out.
    Mapped(usize),
    /// Refused, with this error.
    Refused(MapError),
}

/// One input segment as the reference sees it.
#[derive(Clone, Copy, Debug)]
struct Want {
    phys: u64,
    len: u64,
    p2p: bool,
}

/// Maps `spec` and checks everything; `Err` names the first broken property.
pub fn check(spec: &Spec) -> Result<Outcome, String> {
    let segs = &spec.segs[..spec.segs.len().min(MAX_SEGS)];
    let hosts = segs
        .iter()
        .filter(|s| matches!(s, SegSpec::Host { .. }))
        .count();
    // SAFETY: simulated addresses; only the software IOMMU and the checks see them.
    let mut ram = unsafe {
        SimulatedRam::new(
            PhysAddr::new(HOST_BASE),
            hosts.max(1) * (CHUNK / PAGE_SIZE) as usize,
        )
    };
    let mut chunks: Vec<_> = ram.chunks(CHUNK as usize).collect();
    // SAFETY: simulated BARs.
    let cmb = unsafe {
        Provider::<Cmb>::new(
            PROVIDER_BDF,
            2,
            PhysAddr::new(BAR_CPU),
            BusAddr::new_unchecked(BAR_BUS),
            BAR_SIZE,
        )
    }
    .map_err(|e| format!("provider: {e}"))?;
    // SAFETY: as above.
    let other = unsafe {
        Provider::<Cmb>::new(
            Bdf::new(0, 5, 0, 0),
            0,
            PhysAddr::new(BAR_CPU + BAR_SIZE),
            BusAddr::new_unchecked(BAR_BUS + BAR_SIZE),
            BAR_SIZE,
        )
    }
    .map_err(|e| format!("provider: {e}"))?;
    let bar = cmb.alloc(P2P_ALLOC).map_err(|e| format!("alloc: {e}"))?;
    let foreign = other.alloc(PAGE_SIZE).map_err(|e| format!("alloc: {e}"))?;

    let mask = u64::MAX >> (64 - u32::from(spec.mask_bits.clamp(1, 64)));
    let mut limits = DmaLimits::with_mask(mask);
    if spec.max_seg != 0 {
        limits = limits.max_segment_size(u64::from(spec.max_seg));
    }
    if (1..64).contains(&spec.boundary_bits) {
        limits = limits.segment_boundary((1u64 << spec.boundary_bits) - 1);
    }
    if spec.max_segments != 0 {
        limits = limits.max_segments(usize::from(spec.max_segments));
    }
    let client_bdf = if spec.route % 3 == 2 {
        PROVIDER_BDF
    } else {
        Bdf::new(0, 4, 0, 0)
    };
    // SAFETY: a simulated device.
    let nic = unsafe { Device::<Nic>::new_unchecked(client_bdf, limits) };
    let route: P2pRoute<'_, Cmb, Nic> = match spec.route % 3 {
        // SAFETY: the simulated provider and client share a switch.
        0 => unsafe { Route::assume_bus_addr(&cmb, &nic, 4) }.into(),
        // SAFETY: the simulated platform routes P2P through its host bridge.
        1 => unsafe { Route::assume_host_bridge(&cmb, &nic, 4) }.into(),
        _ => Route::same_device(&cmb, &nic)
            .ok_or("same device refused")?
            .into(),
    };
    let via_iommu_p2p = spec.iommu && spec.route % 3 == 1;
    let bus_offset = BAR_BUS.wrapping_sub(BAR_CPU);

    // The request, and what the reference expects of it.
    let mut bvec: Vec<BvecSeg<'_, Cmb>> = Vec::with_capacity(segs.len());
    let mut want: Vec<Want> = Vec::with_capacity(segs.len());
    // The host buffers first (each borrows its chunk), then the segments.
    let mut bufs = Vec::new();
    let mut chunk_iter = chunks.iter_mut();
    for s in segs {
        if let SegSpec::Host {
            sub_off, sub_len, ..
        } = *s
        {
            let chunk = chunk_iter.next().ok_or("out of chunks")?;
            let sub_off = u64::from(sub_off) % CHUNK;
            let sub_len = 1 + u64::from(sub_len) % (CHUNK - sub_off);
            bufs.push(
                chunk
                    .sub_pages(sub_off, sub_len)
                    .map_err(|e| format!("sub_pages({sub_off}, {sub_len}): {e}"))?,
            );
        }
    }
    let mut buf_iter = bufs.iter_mut();
    for s in segs {
        match *s {
            SegSpec::Host { off, len, .. } => {
                let buf = buf_iter.next().ok_or("out of buffers")?;
                let size = buf.len();
                let off = u64::from(off) % size;
                let len = 1 + u64::from(len) % (size - off);
                let seg = buf
                    .dma_range(off, len)
                    .map_err(|e| format!("dma_range({off}, {len}) of {size}: {e}"))?;
                want.push(Want {
                    phys: seg
                        .phys()
                        .ok_or("simulated RAM has physical addresses")?
                        .as_u64(),
                    len,
                    p2p: false,
                });
                bvec.push(seg.into_bvec_seg());
            }
            SegSpec::P2p { off, len } => {
                let off = u64::from(off) % P2P_ALLOC;
                let len = 1 + u64::from(len) % (P2P_ALLOC - off);
                let seg = bar
                    .seg_range(off, len)
                    .map_err(|e| format!("seg_range({off}, {len}): {e}"))?;
                want.push(Want {
                    phys: seg.phys().as_u64(),
                    len,
                    p2p: true,
                });
                bvec.push(seg.into_bvec_seg());
            }
            SegSpec::Foreign { off, len } => {
                let off = u64::from(off) % PAGE_SIZE;
                let len = 1 + u64::from(len) % (PAGE_SIZE - off);
                let seg = foreign
                    .seg_range(off, len)
                    .map_err(|e| format!("foreign seg_range: {e}"))?;
                want.push(Want {
                    phys: seg.phys().as_u64(),
                    len,
                    p2p: true,
                });
                bvec.push(seg.into_bvec_seg());
            }
        }
    }
    let capacity = match spec.capacity {
        0 => segs.len().max(1) * 4,
        c => usize::from(c),
    };
    let pages = u64::from(spec.aperture_pages.clamp(1, 1024));
    let dom = IommuDomain::<Dom>::software(IOVA_BASE, pages * PAGE_SIZE)
        .map_err(|e| format!("domain: {e}"))?;
    let total: u64 = want.iter().map(|w| w.len).sum();

    let ctx = Ctx {
        want: &want,
        dom: &dom,
        iommu: spec.iommu,
        via_iommu_p2p,
        limits,
        capacity,
        bus_offset,
        total,
    };
    let id = nic.id();
    let mut slots = vec![SegSlot::EMPTY; capacity];
    macro_rules! map_with {
        ($mapper:expr, $d:ty) => {{
            let mapper = $mapper;
            let mut checked: Result<usize, String> = Err("the closure did not run".into());
            let mut ran = false;
            let r = mapper.map_bvec::<$d, _, _>(
                &mut bvec,
                &route,
                SegBuf::from_slots(&mut slots),
                |v| {
                    ran = true;
                    let v = v.sync();
                    checked = match v.segments(id) {
                        Ok(out) => ctx.mapped::<$d>(out),
                        Err(e) => Err(format!("segments: {e}")),
                    };
                },
            );
            (r, checked, ran)
        }};
    }
    macro_rules! by_dir {
        ($mapper:expr) => {
            match spec.dir % 3 {
                0 => map_with!($mapper, ToDevice),
                1 => map_with!($mapper, FromDevice),
                _ => map_with!($mapper, Bidirectional),
            }
        };
    }
    let (r, checked, ran) = if spec.iommu {
        let m = Mapper::iommu(&nic, &dom).map_err(|e| format!("attach: {e}"))?;
        by_dir!(&m)
    } else {
        // SAFETY: the simulated device reaches simulated memory by physical address.
        let m = unsafe { Mapper::direct(&nic) }.map_err(|e| format!("attach: {e}"))?;
        by_dir!(&m)
    };
    // After the call, mapped or not: nothing reserved, nothing reachable.
    if dom.reserved_bytes() != 0 {
        return Err(format!(
            "{} bytes of IOVA still reserved after {r:?}",
            dom.reserved_bytes()
        ));
    }
    if let Some((iova, phys)) = ctx.reachable().into_iter().next() {
        return Err(format!(
            "IOVA {iova:#x} still reaches {phys:#x} after {r:?}"
        ));
    }
    match r {
        Ok(()) => checked.map(Outcome::Mapped),
        Err(e) if ran => Err(format!("the closure ran, then the call failed: {e}")),
        Err(e) => Ok(Outcome::Refused(e)),
    }
}

struct Ctx<'a> {
    want: &'a [Want],
    dom: &'a IommuDomain<Dom>,
    iommu: bool,
    via_iommu_p2p: bool,
    limits: DmaLimits,
    capacity: usize,
    bus_offset: u64,
    total: u64,
}

impl Ctx<'_> {
    /// Every IOVA granule of the aperture that reaches something, and where.
    fn reachable(&self) -> BTreeMap<u64, u64> {
        let (base, len) = self.dom.aperture();
        let mut out = BTreeMap::new();
        let mut a = base;
        while a < base + len {
            if let Ok(p) = self.dom.translate(a, IommuPerm::empty()) {
                out.insert(a, p.as_u64());
            }
            a += PAGE_SIZE;
        }
        out
    }

    /// The checks on a live mapping.
    fn mapped<D: Direction>(&self, out: &[DmaSeg<Nic, D>]) -> Result<usize, String> {
        let l = &self.limits;
        if out.len() > self.capacity || out.len() > l.max_segments_per_request() {
            return Err(format!("{} segments out", out.len()));
        }
        let sum: u64 = out.iter().map(DmaSeg::len).sum();
        if sum != self.total {
            return Err(format!("{sum} bytes out of {} in", self.total));
        }
        // The reference: the request's bytes in order, as (phys, len) runs.
        let mut want = self.want.iter().filter(|w| w.len > 0).copied();
        let mut cur: Option<Want> = want.next();
        let mut take = |phys: u64, len: u64, p2p: bool| -> Result<(), String> {
            let mut left = len;
            let mut at = phys;
            while left > 0 {
                let w = cur.as_mut().ok_or("more bytes out than in")?;
                if w.phys != at || w.p2p != p2p {
                    return Err(format!(
                        "device reaches {at:#x} (p2p {p2p}) where the request has {:#x} (p2p {})",
                        w.phys, w.p2p
                    ));
                }
                let n = left.min(w.len);
                w.phys += n;
                w.len -= n;
                at += n;
                left -= n;
                if w.len == 0 {
                    cur = want.next();
                }
            }
            Ok(())
        };
        // Pages the device may reach through the IOMMU, per the reference.
        let mut granted: BTreeMap<u64, bool> = BTreeMap::new();
        for w in self.want.iter().filter(|w| w.len > 0) {
            if self.iommu && (!w.p2p || self.via_iommu_p2p) {
                let mut p = w.phys & !(PAGE_SIZE - 1);
                while p < w.phys + w.len {
                    granted.insert(p, w.p2p);
                    p += PAGE_SIZE;
                }
            }
        }
        for s in out {
            let len = s.len();
            if len == 0 {
                return Err("an empty segment out".into());
            }
            if len > l.max_segment_size_bytes() {
                return Err(format!("segment of {len} bytes"));
            }
            match s.via() {
                Via::OwnBar => {
                    let (_, off) = s.bar_offset().ok_or("own-BAR segment without offset")?;
                    // An offset from the start of the provider's BAR.
                    take(BAR_CPU + off.as_u64(), len, true)?;
                    continue;
                }
                Via::Platform => return Err("platform segment from a software mapper".into()),
                _ => {}
            }
            let addr = s.addr().ok_or("wire segment without address")?.as_u64();
            let last = addr.checked_add(len - 1).ok_or("segment wraps")?;
            if last > l.dma_mask() {
                return Err(format!(
                    "{addr:#x}+{len:#x} beyond mask {:#x}",
                    l.dma_mask()
                ));
            }
            if (addr ^ last) & !l.segment_boundary_mask() != 0 {
                return Err(format!("{addr:#x}+{len:#x} crosses the boundary"));
            }
            match s.via() {
                Via::Direct => take(addr, len, self.want_p2p_at(addr))?,
                Via::BusAddr => take(addr.wrapping_sub(self.bus_offset), len, true)?,
                Via::Iommu => {
                    if !self.iommu {
                        return Err("IOVA out of a direct mapper".into());
                    }
                    // Page by page through the IOMMU, with the direction's rights.
                    let mut a = addr;
                    while a <= last {
                        let n = (PAGE_SIZE - a % PAGE_SIZE).min(last - a + 1);
                        let p = self
                            .dom
                            .translate(a, D::DEVICE_PERM)
                            .map_err(|e| format!("{a:#x}: {e}"))?
                            .as_u64();
                        for other in [IommuPerm::READ, IommuPerm::WRITE] {
                            let ok = self.dom.translate(a, other).is_ok();
                            if ok != D::DEVICE_PERM.contains(other) {
                                return Err(format!("{a:#x}: {other:?} allowed {ok}"));
                            }
                        }
                        let p2p = granted
                            .get(&(p & !(PAGE_SIZE - 1)))
                            .copied()
                            .unwrap_or(false);
                        if self.dom.is_mmio(a) != p2p {
                            return Err(format!("{a:#x}: MMIO mark {}", !p2p));
                        }
                        take(p, n, p2p)?;
                        a += n;
                    }
                }
                Via::OwnBar | Via::Platform => unreachable!("handled above"),
            }
        }
        if cur.is_some() {
            return Err("fewer bytes out than in".into());
        }
        // No more: every reachable IOVA granule is a granted page, and every granted
        // page is reachable from some IOVA.
        if self.iommu {
            let reach = self.reachable();
            let mut seen: BTreeMap<u64, ()> = BTreeMap::new();
            for (&iova, &phys) in &reach {
                let page = phys & !(PAGE_SIZE - 1);
                if !granted.contains_key(&page) {
                    return Err(format!("IOVA {iova:#x} reaches {phys:#x}, never granted"));
                }
                seen.insert(page, ());
            }
            if seen.len() != granted.len() {
                return Err(format!(
                    "{} pages granted, {} reachable",
                    granted.len(),
                    seen.len()
                ));
            }
        }
        Ok(out.len())
    }

    /// Whether `phys` lies in the provider's BAR (a direct mapper maps host-bridge P2P
    /// at its physical address).
    fn want_p2p_at(&self, phys: u64) -> bool {
        (BAR_CPU..BAR_CPU + 2 * BAR_SIZE).contains(&phys)
    }
}

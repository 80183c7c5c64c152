//! Mapper tests: every route, checked end to end through the software
//! IOMMU (what the device would reach), plus the error paths.

use core::cell::RefCell;

use dmaspace::dir::IommuPerm;
use dmaspace::dir::{Bidirectional, Direction, FromDevice, ToDevice};
use dmaspace::error::{IommuFault, MapError};
use dmaspace::host::{CacheMaintenance, HostPages, SimulatedRam};
use dmaspace::iommu::GRANULE;
use dmaspace::prelude::*;
use dmaspace::vec::{BvecSeg, HostSeg, SegOf, Unsynced};

fn ram(base: u64, pages: usize) -> SimulatedRam {
    // SAFETY: simulated addresses only reach the software IOMMU and asserts.
    unsafe { SimulatedRam::new(PhysAddr::new(base), pages) }
}

/// A provider BAR at CPU 0x4000_0000 whose bus start is 0 (offset -0x4000_0000).
fn cmb<PB: Brand>(dev: Bdf) -> Provider<PB> {
    // SAFETY: test provider; its addresses only reach asserts.
    unsafe {
        Provider::new(
            dev,
            2,
            PhysAddr::new(0x4000_0000),
            BusAddr::new_unchecked(0),
            1 << 20,
        )
        .expect("provider")
    }
}

fn device<K: Brand>(bdf: Bdf, limits: DmaLimits) -> Device<'static, K> {
    // SAFETY: each test drives its functions once; nothing reaches hardware.
    unsafe { Device::new_unchecked(bdf, limits) }
}

const NVME: Bdf = Bdf::new(0, 3, 0, 0);
const NIC: Bdf = Bdf::new(0, 4, 0, 0);

brand!(Cmb);
brand!(Nic);
brand!(Nvme);
brand!(Dom);

/// The synced segments as (address or BAR offset, length, route).
fn segs<K: Brand, D: Direction>(v: DmaVec<'_, K, D, Unsynced>) -> Vec<(u64, u64, Via)> {
    let v = v.sync();
    v.segments(v.device())
        .unwrap()
        .iter()
        .map(|s| {
            let addr = match (s.addr(), s.bar_offset()) {
                (Some(a), _) => a.as_u64(),
                (None, Some((_, o))) => o.as_u64(),
                (None, None) => unreachable!(),
            };
            (addr, s.len(), s.via())
        })
        .collect()
}

#[test]
fn bus_offset_sign_through_the_bus_addr_route() {
    let p = cmb::<Cmb>(NVME);
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let a = p.alloc(0x2000).unwrap();
    let seg = a.seg_range(0x1000, 0x100).unwrap();
    assert_eq!(seg.phys(), PhysAddr::new(0x4000_1000));
    // SAFETY: the test topology puts both under one switch.
    let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&p, &nic, 4) }.into();
    let m = direct(&nic).unwrap();
    let got = m
        .map_bvec::<ToDevice, _, _>(
            &mut [seg.into_bvec_seg()],
            &route,
            SegBuf::with_capacity(1),
            segs,
        )
        .unwrap();
    assert_eq!(got, [(0x1000, 0x100, Via::BusAddr)]);
}

#[test]
fn mixed_request_coalesces_into_one_iova_run_and_keeps_bus_segments_in_order() {
    let p = cmb::<Cmb>(NVME);
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0x1000_0000, 256 * 4096).unwrap();
    let mut mem = ram(0x10_0000, 8);
    let mut pages: Vec<_> = mem.pages().collect();
    let a = p.alloc(0x3000).unwrap();
    // SAFETY: test topology: one switch, no ACS.
    let route = unsafe { Route::assume_bus_addr(&p, &nic, 4) }.into();
    let m = Mapper::iommu(&nic, &dom).unwrap();

    let [h0, h1, h2, h3, h4, ..] = &mut pages[..] else {
        unreachable!()
    };
    let mut bv = BvecP2p::<Cmb>::new();
    bv.push(h0.dma_range(0x800, 0x800).unwrap()); // first: may start unaligned
    bv.push(h1.dma()); // joins the run
    bv.push(a.seg_range(0, 0x1000).unwrap()); // bus: ends the run
    bv.push(h2.dma()); // new run, same IOVA range
    bv.push(h3.dma());
    bv.push(a.seg_range(0x2000, 0x1000).unwrap()); // bus
    bv.push(h4.dma_range(0, 0x200).unwrap()); // last: may end unaligned

    m.map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(8), |v| {
        let base = v.iova_range_start().unwrap();
        let got = segs(v);
        assert_eq!(
            got,
            [
                (base + 0x800, 0x1800, Via::Iommu),
                (0x0, 0x1000, Via::BusAddr),
                (base + 0x2000, 0x2000, Via::Iommu),
                (0x2000, 0x1000, Via::BusAddr),
                (base + 0x4000, 0x200, Via::Iommu),
            ]
        );
        // One IOVA range: 0x800 lead + 0x800 + 0x1000 + 0x1000 + 0x1000 + 0x200 -> 5 granules.
        assert_eq!(dom.reserved_granules(), 5);
        // End to end: what the device reaches is the memory that was mapped.
        let expect = [
            (base + 0x800, 0x10_0800),
            (base + 0x1000, 0x10_1000),
            (base + 0x2000, 0x10_2000),
            (base + 0x3000, 0x10_3000),
            (base + 0x41ff, 0x10_41ff),
        ];
        for (i, p) in expect {
            assert_eq!(
                dom.translate(i, IommuPerm::READ),
                Ok(PhysAddr::new(p)),
                "iova {i:#x}"
            );
        }
        // ToDevice: the device may read, not write.
        assert!(matches!(
            dom.translate(base + 0x800, IommuPerm::WRITE),
            Err(IommuFault::Denied { .. })
        ));
    })
    .unwrap();
    assert_eq!(
        dom.reserved_granules(),
        0,
        "the call's end unmaps the whole range"
    );
}

#[test]
fn unsynced_iova_faults_until_synced_and_unmap_revokes_at_once() {
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0, 16 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 1);
    let mut pg = mem.pages().next().unwrap();
    let m = Mapper::iommu(&nic, &dom).unwrap();
    m.map_host::<FromDevice, _>(&mut [pg.dma()], SegBuf::with_capacity(1), |pending| {
        let at = pending.iova_range_start().unwrap();
        assert_eq!(
            dom.translate(at, IommuPerm::WRITE),
            Err(IommuFault::NotPresent { addr: at })
        );
        let v = pending.sync();
        assert_eq!(
            dom.translate(at, IommuPerm::WRITE),
            Ok(PhysAddr::new(0x20_0000))
        );
        assert!(matches!(
            dom.translate(at, IommuPerm::READ),
            Err(IommuFault::Denied { .. })
        ));
        assert_eq!(v.segments(nic.id()).unwrap().len(), 1);
        v.unmap();
        assert_eq!(
            dom.translate(at, IommuPerm::WRITE),
            Err(IommuFault::NotPresent { addr: at }),
            "unmap takes the entries out of the device's reach before the call returns"
        );
    })
    .unwrap();
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn host_bridge_route_maps_like_mmio_through_the_iommu_and_direct_without() {
    let p = cmb::<Cmb>(NVME);
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let a = p.alloc(0x1000).unwrap();
    let mut bv = [a.seg().into_bvec_seg()];
    // SAFETY: test: an AMD Zen host bridge.
    let route = unsafe { Route::assume_host_bridge(&p, &nic, 6) }.into();
    {
        let dom = IommuDomain::<Dom>::software(0x100_0000, 4096).unwrap();
        let m = Mapper::iommu(&nic, &dom).unwrap();
        m.map_bvec::<Bidirectional, _, _>(&mut bv, &route, SegBuf::with_capacity(1), |v| {
            let got = segs(v);
            assert_eq!(got, [(0x100_0000, 0x1000, Via::Iommu)]);
            assert_eq!(
                dom.translate(0x100_0000, IommuPerm::READ | IommuPerm::WRITE),
                Ok(PhysAddr::new(0x4000_0000))
            );
            assert!(dom.is_mmio(0x100_0000), "host-bridge P2P is mapped as MMIO");
        })
        .unwrap();
    }
    let m = direct(&nic).unwrap();
    let got = m
        .map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(1), segs)
        .unwrap();
    assert_eq!(got, [(0x4000_0000, 0x1000, Via::Direct)]);
}

#[test]
fn same_device_route_yields_bar_offsets() {
    let p = cmb::<Cmb>(NVME);
    let nvme = device::<Nvme>(NVME, DmaLimits::BITS_64);
    let _first = p.alloc(0x1000).unwrap();
    let a = p.alloc(0x1000).unwrap();
    let route = Route::same_device(&p, &nvme).unwrap().into();
    let m = direct(&nvme).unwrap();
    let mut bv = [a.seg_range(0x10, 0x20).unwrap().into_bvec_seg()];
    m.map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        let s = &v.segments(nvme.id()).unwrap()[0];
        let (bar, offset) = s.bar_offset().expect("an own-BAR segment");
        assert_eq!(
            (bar, offset.as_u64(), s.len(), s.via()),
            (2, 0x1010, 0x20, Via::OwnBar)
        );
        assert!(
            s.addr().is_none(),
            "an own-BAR offset never goes on the wire"
        );
        assert_eq!(s.at(0), Err(MapError::DeviceLocal));
    })
    .unwrap();
}

#[test]
fn offsets_inside_a_segment_are_checked() {
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0x8000, 3 * 4096).unwrap();
    let mut mem = ram(0x70_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let mut hs: Vec<HostSeg<'_>> = pages.iter_mut().map(HostPages::dma).collect();
    let m = Mapper::iommu(&nic, &dom).unwrap();
    m.map_host::<ToDevice, _>(&mut hs, SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        let seg = &v.segments(nic.id()).unwrap()[0];
        assert_eq!(seg.len(), 0x3000);
        // NVMe PRP entries of a three-page transfer: one address per page.
        let prps: Vec<u64> = (0..3)
            .map(|i| seg.at(i * 0x1000).unwrap().as_u64())
            .collect();
        assert_eq!(prps, [0x8000, 0x9000, 0xa000]);
        assert_eq!(seg.at(0x2fff).unwrap().as_u64(), 0xafff);
        assert_eq!(
            seg.at(0x3000),
            Err(MapError::OutOfBounds {
                offset: 0x3000,
                len: 1,
                size: 0x3000
            })
        );
    })
    .unwrap();
}

#[test]
fn direct_mapping_uses_phys_and_honours_the_dma_mask() {
    brand!(Old);
    let dev = device::<Old>(NIC, DmaLimits::BITS_32);
    let m = direct(&dev).unwrap();
    let mut low = ram(0x1000, 1);
    let mut lp = low.pages().next().unwrap();
    let got = m
        .map_host::<ToDevice, _>(&mut [lp.dma()], SegBuf::with_capacity(1), segs)
        .unwrap();
    assert_eq!(got, [(0x1000, 0x1000, Via::Direct)]);
    let mut high = ram(0xffff_f800, 1);
    let mut hp = high.pages().next().unwrap();
    let err = m
        .map_host::<ToDevice, _>(&mut [hp.dma()], SegBuf::with_capacity(1), |_| ())
        .unwrap_err();
    assert_eq!(
        err,
        MapError::BeyondDmaMask {
            index: 0,
            last: 0x1_0000_07ff,
            mask: 0xffff_ffff
        }
    );
}

#[test]
fn overflow_at_the_top_of_the_address_space_is_an_error() {
    // A BAR that ends exactly at the top of the 64-bit space.
    // SAFETY: test provider.
    let p = unsafe {
        Provider::<Cmb>::new(
            NVME,
            0,
            PhysAddr::new(u64::MAX - 0xfff),
            BusAddr::new_unchecked(0x1000),
            0x1000,
        )
    }
    .unwrap();
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let a = p.alloc(0x1000).unwrap();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_bus_addr(&p, &nic, 2) }.into();
    let m = direct(&nic).unwrap();
    let mut bv = [a.seg().into_bvec_seg()];
    // Bus addresses wrap as in the kernel (offset applied modulo 2^64).
    let got = m
        .map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(1), segs)
        .unwrap();
    assert_eq!(got[0].0, 0x1000);
    // A range that passes the top is refused, never wrapped.
    // SAFETY: test provider whose bus side ends at the top.
    let q = unsafe {
        Provider::<Cmb>::new(
            NVME,
            0,
            PhysAddr::new(0x1000),
            BusAddr::new_unchecked(u64::MAX - 0x7ff),
            0x1000,
        )
    }
    .unwrap();
    let b = q.alloc(0x1000).unwrap();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_bus_addr(&q, &nic, 2) }.into();
    let mut bv = [b.seg().into_bvec_seg()];
    let err = m
        .map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(1), |_| ())
        .unwrap_err();
    assert_eq!(
        err,
        MapError::Overflow {
            start: u64::MAX - 0x7ff,
            len: 0x1000
        }
    );
    // And a provider range that wraps, or is not page-aligned, is refused at setup.
    // SAFETY: refused before use.
    let bad = unsafe {
        Provider::<Cmb>::new(
            NVME,
            0,
            PhysAddr::new(u64::MAX - 0xfff),
            BusAddr::new_unchecked(0),
            0x2000,
        )
    };
    assert!(bad.is_err());
    // SAFETY: refused before use.
    let bad = unsafe {
        Provider::<Cmb>::new(
            NVME,
            0,
            PhysAddr::new(0x1800),
            BusAddr::new_unchecked(0),
            0x1000,
        )
    };
    assert!(bad.is_err());
}

#[test]
fn unaligned_interior_segment_is_refused_and_nothing_stays_mapped() {
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0, 16 * 4096).unwrap();
    let mut mem = ram(0x30_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let (a, b) = pages.split_at_mut(1);
    let m = Mapper::iommu(&nic, &dom).unwrap();
    // The second buffer covers its whole granule, so only the link rule applies.
    let mut segs = [a[0].dma(), b[0].dma_range(0x10, 0x100).unwrap()];
    let err = m
        .map_host::<ToDevice, _>(&mut segs, SegBuf::with_capacity(2), |_| ())
        .unwrap_err();
    assert_eq!(
        err,
        MapError::Unaligned {
            index: 1,
            granule: GRANULE
        }
    );
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn caller_owned_output_never_allocates_and_reports_capacity() {
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0, 16 * 4096).unwrap();
    let mut mem = ram(0x40_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let (a, b) = pages.split_at_mut(1);
    let m = Mapper::iommu(&nic, &dom).unwrap();
    // Two contiguous-in-IOVA host segments merge into one output slot.
    let mut slots = [SegSlot::EMPTY; 1];
    let mut segs = [a[0].dma(), b[0].dma()];
    let got = m
        .map_host::<ToDevice, _>(&mut segs, SegBuf::from_slots(&mut slots), self::segs)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, 0x2000);
    // With a bus segment in between nothing merges: out of capacity, nothing mapped.
    let p = cmb::<Cmb>(NVME);
    let al = p.alloc(0x1000).unwrap();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_bus_addr(&p, &nic, 2) }.into();
    let mut bv = [
        a[0].dma().into_bvec_seg(),
        al.seg().into_bvec_seg(),
        b[0].dma().into_bvec_seg(),
    ];
    let mut slots = [SegSlot::EMPTY; 2];
    let err = m
        .map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::from_slots(&mut slots), |_| ())
        .unwrap_err();
    assert_eq!(err, MapError::OutOfCapacity { capacity: 2 });
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn empty_segment_and_exhausted_domain_are_errors() {
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0, 2 * 4096).unwrap();
    let mut mem = ram(0x50_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let m = Mapper::iommu(&nic, &dom).unwrap();
    let mut hs: Vec<HostSeg<'_>> = pages.iter_mut().map(HostPages::dma).collect();
    let err = m
        .map_host::<ToDevice, _>(&mut hs, SegBuf::with_capacity(3), |_| ())
        .unwrap_err();
    assert_eq!(err, MapError::IovaExhausted { len: 0x3000 });
    let mut b = [0u8; 0];
    // SAFETY: test memory, never given to hardware.
    let mut e = unsafe { HostPages::new(&mut b, PhysAddr::new(0x1000)) }.unwrap();
    let err = m
        .map_host::<ToDevice, _>(
            &mut [hs.remove(0), e.dma()],
            SegBuf::with_capacity(3),
            |_| (),
        )
        .unwrap_err();
    assert_eq!(err, MapError::EmptySegment { index: 1 });
}

/// Records every cache-maintenance call: host memory only, never P2P.
#[derive(Default)]
struct Recorder(RefCell<Vec<(u64, u64, &'static str, &'static str)>>);
impl CacheMaintenance for &Recorder {
    fn sync_for_device<D: Direction>(&self, seg: &HostSeg<'_>) {
        self.0.borrow_mut().push((
            seg.phys().unwrap().as_u64(),
            seg.len(),
            D::NAME,
            "for_device",
        ));
    }
    fn sync_for_cpu<D: Direction>(&self, seg: &HostSeg<'_>) {
        self.0
            .borrow_mut()
            .push((seg.phys().unwrap().as_u64(), seg.len(), D::NAME, "for_cpu"));
    }
}

#[test]
fn cache_maintenance_sees_host_segments_only() {
    let p = cmb::<Cmb>(NVME);
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let a = p.alloc(0x1000).unwrap();
    let mut mem = ram(0x60_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let rec = Recorder::default();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_host_bridge(&p, &nic, 6) }.into();
    let m = direct(&nic).unwrap().with_cache(&rec);
    let (x, y) = pages.split_at_mut(1);
    let mut bv: [BvecSeg<'_, Cmb>; 3] = [
        x[0].dma().into_bvec_seg(),
        a.seg().into_bvec_seg(),
        y[0].dma().into_bvec_seg(),
    ];
    m.map_bvec::<FromDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(3), |_| ())
        .unwrap();
    assert_eq!(
        *rec.0.borrow(),
        [
            (0x60_0000, 0x1000, "DMA_FROM_DEVICE", "for_device"),
            (0x60_1000, 0x1000, "DMA_FROM_DEVICE", "for_device"),
            // On unmap, before the CPU may look: the same host pages only.
            (0x60_0000, 0x1000, "DMA_FROM_DEVICE", "for_cpu"),
            (0x60_1000, 0x1000, "DMA_FROM_DEVICE", "for_cpu"),
        ]
    );
}

#[test]
fn a_second_mapper_for_a_device_is_refused_until_the_first_is_gone() {
    let nic = device::<Nic>(NIC, DmaLimits::BITS_64);
    let first = direct(&nic).unwrap();
    assert_eq!(
        direct(&nic).unwrap_err(),
        dmaspace::error::ClaimError::AlreadyAttached { bdf: NIC }
    );
    drop(first);
    assert!(direct(&nic).is_ok());
}

/// A direct (no IOMMU) mapper.
fn direct<'d, K: Brand>(
    dev: &'d Device<'_, K>,
) -> Result<Mapper<'d, K>, dmaspace::error::ClaimError> {
    // SAFETY: the simulated devices reach simulated memory by physical address.
    unsafe { Mapper::direct(dev) }
}

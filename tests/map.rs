//! Mapper tests: every route, checked end to end through the software
//! IOMMU (what the device would reach), plus the error paths.
//!
//! Brands are global, and tests run in parallel: each test declares its own.

use core::cell::RefCell;
use core::mem::MaybeUninit;

use dmaspace::device::Device;
use dmaspace::dir::{Bidirectional, Direction, FromDevice, ToDevice};
use dmaspace::error::{IommuFault, MapError};
use dmaspace::host::{CacheMaintenance, SimulatedRam};
use dmaspace::iommu::{GRANULE, IommuDomain, IommuPerm, Pte};
use dmaspace::map::Mapper;
use dmaspace::provider::Provider;
use dmaspace::route::{P2pRoute, Route};
use dmaspace::topology::Bdf;
use dmaspace::vec::{BvecP2p, DmaSeg, HostSeg, SegBuf, SegOf, Via};
use dmaspace::{BusAddr, Iova, PhysAddr, brand};

fn iova(v: u64) -> Iova {
    // SAFETY: test apertures of the software IOMMU only.
    unsafe { Iova::new_unchecked(v) }
}

fn ram(base: u64, pages: usize) -> SimulatedRam {
    // SAFETY: simulated addresses only reach the software IOMMU and asserts.
    unsafe { SimulatedRam::new(PhysAddr::new(base), pages) }
}

/// A provider BAR at CPU 0x4000_0000 whose bus start is 0 (offset -0x4000_0000).
fn cmb<PB: dmaspace::Brand>(dev: Bdf) -> Provider<PB> {
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

const NVME: Bdf = Bdf::new(0, 3, 0, 0);
const NIC: Bdf = Bdf::new(0, 4, 0, 0);

fn wire<B: dmaspace::Brand>(s: &DmaSeg<B>) -> (u64, u64, Via) {
    match *s {
        DmaSeg::Wire { addr, len, via } => (addr.as_u64(), len, via),
        DmaSeg::Local { .. } => panic!("expected a wire segment, got {s:?}"),
    }
}

#[test]
fn bus_offset_sign_through_the_switch_route() {
    brand!(Cmb);
    brand!(Nic);
    let p = cmb::<Cmb>(NVME);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let a = p.alloc(0x2000).unwrap();
    let seg = a.seg_range(0x1000, 0x100).unwrap();
    assert_eq!(seg.phys(), PhysAddr::new(0x4000_1000));
    // SAFETY: the test topology puts both under one switch.
    let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_via_switch(&p, &nic, 4) }.into();
    let m = Mapper::direct(&mut nic);
    let bv = [seg.into_bvec_seg()];
    let v = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::with_capacity(1))
        .unwrap()
        .sync();
    assert_eq!(wire(&v.device_reads()[0]), (0x1000, 0x100, Via::BusAddr));
}

#[test]
fn mixed_request_coalesces_into_one_iova_run_and_keeps_bus_segments_in_order() {
    brand!(Cmb);
    brand!(Nic);
    brand!(Dom);
    let p = cmb::<Cmb>(NVME);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let mut table = vec![Pte::EMPTY; 256];
    let dom = IommuDomain::<Dom>::new(iova(0x1000_0000), &mut table).unwrap();
    let mut mem = ram(0x10_0000, 8);
    let mut pages: Vec<_> = mem.pages().collect();
    let a = p.alloc(0x3000).unwrap();
    // SAFETY: test topology: one switch, no ACS.
    let route = unsafe { Route::assume_via_switch(&p, &nic, 4) }.into();
    let m = Mapper::iommu(&mut nic, &dom);

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

    let v = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::with_capacity(8))
        .unwrap()
        .sync();
    let got: Vec<_> = v.device_reads().iter().map(wire).collect();
    let base = v.iova_range_start().unwrap().as_u64();
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
            dom.translate(iova(i), IommuPerm::READ),
            Ok(PhysAddr::new(p)),
            "iova {i:#x}"
        );
    }
    // ToDevice: the device may read, not write.
    assert!(matches!(
        dom.translate(iova(base + 0x800), IommuPerm::WRITE),
        Err(IommuFault::Denied { .. })
    ));
    v.unmap();
    assert_eq!(dom.reserved_granules(), 0, "unmap frees the whole range");
}

#[test]
fn unsynced_iova_faults_until_synced() {
    brand!(Nic);
    brand!(Dom);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let mut table = [Pte::EMPTY; 16];
    let dom = IommuDomain::<Dom>::new(iova(0), &mut table).unwrap();
    let mut mem = ram(0x20_0000, 1);
    let mut pg = mem.pages().next().unwrap();
    let m = Mapper::iommu(&mut nic, &dom);
    let pending = m
        .map_pages::<FromDevice>(&[pg.dma()], SegBuf::with_capacity(1))
        .unwrap();
    let at = pending.iova_range_start().unwrap();
    assert_eq!(
        dom.translate(at, IommuPerm::WRITE),
        Err(IommuFault::NotPresent { iova: at })
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
    assert_eq!(v.device_writes().len(), 1);
}

#[test]
fn host_bridge_route_maps_like_mmio_through_the_iommu_and_direct_without() {
    brand!(Cmb);
    brand!(Nic);
    brand!(Dom);
    let p = cmb::<Cmb>(NVME);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let a = p.alloc(0x1000).unwrap();
    let bv = [a.seg().into_bvec_seg()];
    {
        let mut table = [Pte::EMPTY; 16];
        let dom = IommuDomain::<Dom>::new(iova(0x100_0000), &mut table).unwrap();
        // SAFETY: test: an AMD Zen host bridge.
        let route = unsafe { Route::assume_via_host_bridge(&p, &nic, 6) }.into();
        let m = Mapper::iommu(&mut nic, &dom);
        let v = m
            .map_bvec::<Bidirectional, _>(&bv, &route, SegBuf::with_capacity(1))
            .unwrap()
            .sync();
        let (addr, len, via) = wire(&v.device_reads()[0]);
        assert_eq!((addr, len, via), (0x100_0000, 0x1000, Via::Iommu));
        assert_eq!(
            dom.translate(iova(addr), IommuPerm::READ | IommuPerm::WRITE),
            Ok(PhysAddr::new(0x4000_0000))
        );
        assert!(dom.is_mmio(iova(addr)), "host-bridge P2P is mapped as MMIO");
    }
    // SAFETY: as above.
    let route = unsafe { Route::assume_via_host_bridge(&p, &nic, 6) }.into();
    let m = Mapper::direct(&mut nic);
    let v = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::with_capacity(1))
        .unwrap()
        .sync();
    assert_eq!(
        wire(&v.device_reads()[0]),
        (0x4000_0000, 0x1000, Via::Direct)
    );
}

#[test]
fn same_device_route_yields_bar_offsets() {
    brand!(Cmb);
    brand!(Nvme);
    let p = cmb::<Cmb>(NVME);
    let mut nvme = Device::<Nvme>::new(NVME, u64::MAX).unwrap();
    let _first = p.alloc(0x1000).unwrap();
    let a = p.alloc(0x1000).unwrap();
    let route = Route::same_device(&p, &nvme).unwrap().into();
    let m = Mapper::direct(&mut nvme);
    let bv = [a.seg_range(0x10, 0x20).unwrap().into_bvec_seg()];
    let v = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::with_capacity(1))
        .unwrap()
        .sync();
    match v.device_reads()[0] {
        DmaSeg::Local { bar, offset, len } => {
            assert_eq!((bar, offset.as_u64(), len), (2, 0x1010, 0x20));
        }
        other => panic!("expected a local segment, got {other:?}"),
    }
}

#[test]
fn direct_mapping_uses_phys_and_honours_the_dma_mask() {
    brand!(Old);
    let mut dev = Device::<Old>::new(NIC, 0xffff_ffff).unwrap();
    let m = Mapper::direct(&mut dev);
    let mut low = ram(0x1000, 1);
    let mut lp = low.pages().next().unwrap();
    let v = m
        .map_pages::<ToDevice>(&[lp.dma()], SegBuf::with_capacity(1))
        .unwrap()
        .sync();
    assert_eq!(wire(&v.device_reads()[0]), (0x1000, 0x1000, Via::Direct));
    drop(v);
    let mut high = ram(0xffff_f800, 1);
    let mut hp = high.pages().next().unwrap();
    let err = m
        .map_pages::<ToDevice>(&[hp.dma()], SegBuf::with_capacity(1))
        .unwrap_err();
    assert_eq!(
        err,
        MapError::BeyondDmaMask {
            index: 0,
            last: PhysAddr::new(0x1_0000_07ff),
            mask: 0xffff_ffff
        }
    );
}

#[test]
fn overflow_at_the_top_of_the_address_space_is_an_error() {
    brand!(Cmb);
    brand!(Nic);
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
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let a = p.alloc(0x1000).unwrap();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_via_switch(&p, &nic, 2) }.into();
    let m = Mapper::direct(&mut nic);
    let bv = [a.seg().into_bvec_seg()];
    // Bus addresses wrap as in the kernel (offset applied modulo 2^64).
    let v = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::with_capacity(1))
        .unwrap()
        .sync();
    assert_eq!(wire(&v.device_reads()[0]).0, 0x1000);
    // A range that passes the top is refused, never wrapped.
    // SAFETY: test provider whose bus side ends at the top.
    let q = unsafe {
        Provider::<dmaspace_top::Top>::new(
            NVME,
            0,
            PhysAddr::new(0x1000),
            BusAddr::new_unchecked(u64::MAX - 0x7ff),
            0x1000,
        )
    }
    .unwrap();
    brand!(Nic2);
    let mut nic2 = Device::<Nic2>::new(NIC, u64::MAX).unwrap();
    let b = q.alloc(0x1000).unwrap();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_via_switch(&q, &nic2, 2) }.into();
    let m = Mapper::direct(&mut nic2);
    let bv = [b.seg().into_bvec_seg()];
    let err = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::with_capacity(1))
        .unwrap_err();
    assert_eq!(
        err,
        MapError::Overflow {
            start: u64::MAX - 0x7ff,
            len: 0x1000
        }
    );
    // And a provider range that wraps is refused at setup.
    brand!(Wrap);
    // SAFETY: refused before use.
    let bad = unsafe {
        Provider::<Wrap>::new(
            NVME,
            0,
            PhysAddr::new(u64::MAX),
            BusAddr::new_unchecked(0),
            2,
        )
    };
    assert!(bad.is_err());
}

mod dmaspace_top {
    dmaspace::brand!(pub Top);
}

#[test]
fn unaligned_interior_segment_is_refused_and_nothing_stays_mapped() {
    brand!(Nic);
    brand!(Dom);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let mut table = [Pte::EMPTY; 16];
    let dom = IommuDomain::<Dom>::new(iova(0), &mut table).unwrap();
    let mut mem = ram(0x30_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let (a, b) = pages.split_at_mut(1);
    let m = Mapper::iommu(&mut nic, &dom);
    let segs = [a[0].dma(), b[0].dma_range(0x10, 0x100).unwrap()];
    let err = m
        .map_pages::<ToDevice>(&segs, SegBuf::with_capacity(2))
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
    brand!(Nic);
    brand!(Dom);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let mut table = [Pte::EMPTY; 16];
    let dom = IommuDomain::<Dom>::new(iova(0), &mut table).unwrap();
    let mut mem = ram(0x40_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let (a, b) = pages.split_at_mut(1);
    let m = Mapper::iommu(&mut nic, &dom);
    // Two contiguous-in-IOVA host segments merge into one output slot.
    let mut slots = [MaybeUninit::uninit(); 1];
    let segs = [a[0].dma(), b[0].dma()];
    let v = m
        .map_pages::<ToDevice>(&segs, SegBuf::from_slice(&mut slots))
        .unwrap()
        .sync();
    assert_eq!(v.len(), 1);
    assert_eq!(wire(&v.device_reads()[0]).1, 0x2000);
    drop(v);
    // With a bus segment in between nothing merges: out of capacity, nothing mapped.
    brand!(Cmb);
    let p = cmb::<Cmb>(NVME);
    let al = p.alloc(0x1000).unwrap();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_via_switch(&p, m.device(), 2) }.into();
    let bv = [
        a[0].dma().into_bvec_seg(),
        al.seg().into_bvec_seg(),
        b[0].dma().into_bvec_seg(),
    ];
    let mut slots = [MaybeUninit::uninit(); 2];
    let err = m
        .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::from_slice(&mut slots))
        .unwrap_err();
    assert_eq!(err, MapError::OutOfCapacity { capacity: 2 });
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn empty_segment_and_exhausted_domain_are_errors() {
    brand!(Nic);
    brand!(Dom);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let mut table = [Pte::EMPTY; 2];
    let dom = IommuDomain::<Dom>::new(iova(0), &mut table).unwrap();
    let mut mem = ram(0x50_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let m = Mapper::iommu(&mut nic, &dom);
    let segs: Vec<HostSeg<'_>> = pages.iter_mut().map(|p| p.dma()).collect();
    let err = m
        .map_pages::<ToDevice>(&segs, SegBuf::with_capacity(3))
        .unwrap_err();
    assert_eq!(err, MapError::IovaExhausted { len: 0x3000 });
    let empty = [segs[0]];
    let mut b = [0u8; 0];
    // SAFETY: test memory, never given to hardware.
    let mut e = unsafe { dmaspace::host::HostPages::new(&mut b, PhysAddr::new(0x1000)) }.unwrap();
    let err = m
        .map_pages::<ToDevice>(&[empty[0], e.dma()], SegBuf::with_capacity(3))
        .unwrap_err();
    assert_eq!(err, MapError::EmptySegment { index: 1 });
}

/// Records every cache-maintenance call: host memory only, never P2P.
#[derive(Default)]
struct Recorder(RefCell<Vec<(u64, u64, &'static str)>>);
impl CacheMaintenance for &Recorder {
    fn sync_for_device<D: Direction>(&self, seg: &HostSeg<'_>) {
        self.0
            .borrow_mut()
            .push((seg.phys().as_u64(), seg.len(), D::NAME));
    }
}

#[test]
fn cache_maintenance_sees_host_segments_only() {
    brand!(Cmb);
    brand!(Nic);
    let p = cmb::<Cmb>(NVME);
    let mut nic = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    let a = p.alloc(0x1000).unwrap();
    let mut mem = ram(0x60_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let rec = Recorder::default();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_via_host_bridge(&p, &nic, 6) }.into();
    let m = Mapper::direct(&mut nic).with_cache(&rec);
    let (x, y) = pages.split_at_mut(1);
    let bv = [
        x[0].dma().into_bvec_seg(),
        a.seg().into_bvec_seg(),
        y[0].dma().into_bvec_seg(),
    ];
    let _v = m
        .map_bvec::<FromDevice, _>(&bv, &route, SegBuf::with_capacity(3))
        .unwrap();
    assert_eq!(
        *rec.0.borrow(),
        [
            (0x60_0000, 0x1000, "DMA_FROM_DEVICE"),
            (0x60_1000, 0x1000, "DMA_FROM_DEVICE")
        ]
    );
}

#[test]
fn a_second_mapper_for_a_bound_brand_is_refused() {
    brand!(Nic);
    let _a = Device::<Nic>::new(NIC, u64::MAX).unwrap();
    assert!(Device::<Nic>::new(NVME, u64::MAX).is_err());
}

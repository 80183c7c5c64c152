//! Zero heap allocations per `map_bvec` / `map_host` (per I/O: map, sync,
//! read the segments, build a descriptor, unmap) once the caller provides the
//! output capacity (`SegBuf::from_slots`), through the software IOMMU (mapper
//! and queue) and direct mapping.
//!
//! A counting global allocator is this binary's own (one test binary per
//! global allocator): it counts the allocations of the current thread only, so
//! the test harness's threads do not disturb the count. The first I/O may
//! allocate (page-table levels, IOVA cache magazines); the next ones must not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dmaspace::PAGE_SIZE;
use dmaspace::dir::{FromDevice, ToDevice};
use dmaspace::host::{HostPages, SimulatedRam};
use dmaspace::prelude::*;
use dmaspace::vec::{BvecSeg, SegOf};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; the counter is a
// const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

brand!(Cmb);
brand!(Nic);
brand!(Dom);

const IOVA_BASE: u64 = 0x1000_0000;

/// One NVMe PRP entry: what a driver writes from a mapped segment.
fn prp(addr: u64) -> u64 {
    addr & !3
}

#[test]
fn no_allocation_per_io_with_caller_provided_capacity() {
    // SAFETY: simulated addresses, only the software IOMMU sees them.
    let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x1_0000_0000), 64) };
    let mut pages: Vec<HostPages<'_>> = ram.pages().collect();
    // SAFETY: a simulated BAR.
    let cmb = unsafe {
        Provider::<Cmb>::new(
            Bdf::new(0, 3, 0, 0),
            2,
            PhysAddr::new(0x40_0000_0000),
            BusAddr::new_unchecked(0x8000_0000),
            1 << 20,
        )
    }
    .expect("provider");
    let bar = cmb.alloc(16 * PAGE_SIZE).expect("BAR room");
    // SAFETY: a simulated device.
    let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    // SAFETY: the simulated provider and client share a switch.
    let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&cmb, &nic, 4) }.into();

    // A request of 3 host pages then 1 P2P page, four times; and one page.
    let mut bvec: Vec<BvecSeg<'_, Cmb>> = Vec::with_capacity(16);
    let (first, rest) = pages.split_at_mut(1);
    let mut host = rest.iter_mut();
    for i in 0..16u64 {
        if i % 4 == 3 {
            let s = bar.seg_range(i * PAGE_SIZE, PAGE_SIZE).expect("in the BAR");
            bvec.push(s.into_bvec_seg());
        } else {
            bvec.push(host.next().expect("a page").dma().into_bvec_seg());
        }
    }
    let mut one = [first[0].dma()];
    let mut slots = [SegSlot::EMPTY; 16];

    let dom = IommuDomain::<Dom>::software(IOVA_BASE, 1 << 24).expect("domain");
    let mut sum = 0u64;
    {
        let mapper = Mapper::iommu(&nic, &dom).expect("attach");
        let queue = mapper.queue();
        let id = nic.id();
        let mut io = |slots: &mut [SegSlot]| {
            queue
                .map_bvec::<ToDevice, _, _>(&mut bvec, &route, SegBuf::from_slots(slots), |v| {
                    let v = v.sync();
                    for s in v.segments(id).expect("own device") {
                        sum = sum.wrapping_add(prp(s.addr().expect("on the wire").as_u64()));
                    }
                })
                .expect("maps");
        };
        io(&mut slots); // warm: page-table levels, the queue's IOVA cache
        assert_eq!(
            allocations(|| (0..1000).for_each(|_| io(&mut slots))),
            0,
            "queue, map_bvec"
        );

        let mut io = |slots: &mut [SegSlot]| {
            mapper
                .map_bvec::<ToDevice, _, _>(&mut bvec, &route, SegBuf::from_slots(slots), |v| {
                    let v = v.sync();
                    sum = sum.wrapping_add(v.segments(id).expect("own").len() as u64);
                })
                .expect("maps");
        };
        io(&mut slots);
        assert_eq!(
            allocations(|| (0..1000).for_each(|_| io(&mut slots))),
            0,
            "mapper, map_bvec"
        );

        let mut io = |slots: &mut [SegSlot]| {
            queue
                .map_host::<FromDevice, _>(&mut one, SegBuf::from_slots(slots), |v| {
                    let v = v.sync();
                    let s = &v.segments(id).expect("own")[0];
                    sum = sum.wrapping_add(prp(s.addr().expect("iova").as_u64()));
                })
                .expect("maps");
        };
        io(&mut slots);
        assert_eq!(
            allocations(|| (0..1000).for_each(|_| io(&mut slots))),
            0,
            "queue, map_host 1 page"
        );
    }

    // Direct mapping (no IOMMU).
    // SAFETY: the simulated device reaches simulated memory by physical address.
    let direct = unsafe { Mapper::direct(&nic) }.expect("attach");
    let id = nic.id();
    let mut io = |slots: &mut [SegSlot]| {
        direct
            .map_bvec::<ToDevice, _, _>(&mut bvec, &route, SegBuf::from_slots(slots), |v| {
                let v = v.sync();
                sum = sum.wrapping_add(v.segments(id).expect("own").len() as u64);
            })
            .expect("maps");
    };
    io(&mut slots);
    assert_eq!(
        allocations(|| (0..1000).for_each(|_| io(&mut slots))),
        0,
        "direct, map_bvec"
    );

    // A device whose limits cut the segments (max segment size, boundary).
    // SAFETY: a simulated device.
    let small = unsafe {
        Device::<Nic>::new_unchecked(
            Bdf::new(0, 5, 0, 0),
            DmaLimits::BITS_64
                .max_segment_size(0x800)
                .segment_boundary(0xfff),
        )
    };
    // SAFETY: the simulated provider and client share a switch.
    let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&cmb, &small, 4) }.into();
    let mapper = Mapper::iommu(&small, &dom).expect("attach");
    let queue = mapper.queue();
    let id = small.id();
    let mut many = [SegSlot::EMPTY; 64];
    let mut io = |slots: &mut [SegSlot]| {
        queue
            .map_bvec::<ToDevice, _, _>(&mut bvec, &route, SegBuf::from_slots(slots), |v| {
                let v = v.sync();
                let segs = v.segments(id).expect("own");
                assert!(segs.iter().all(|s| s.len() <= 0x800));
                sum = sum.wrapping_add(segs.len() as u64);
            })
            .expect("maps");
    };
    io(&mut many);
    assert_eq!(
        allocations(|| (0..1000).for_each(|_| io(&mut many))),
        0,
        "cut segments"
    );
    assert_ne!(sum, 0);
}

/// The counter counts: a `SegBuf` with capacity of its own allocates, so the zero
/// above is not the counter missing everything.
#[test]
fn the_counter_sees_allocations() {
    assert!(allocations(|| drop(std::hint::black_box(SegBuf::with_capacity(4)))) >= 1);
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

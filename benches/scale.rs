//! `scale/segments/{1,1024,1048576}`: the cost of `map_bvec` per segment
//! across six decades of request size, through the public API only: a
//! software IOMMU domain (`IommuDomain::software`), `Mapper::iommu`, one
//! queue (`mapper.queue()`), `map_bvec` with a closure that syncs and reads
//! the segments, into caller-provided slots. The requests are shaped as in
//! `benches/map.rs`: three host pages then one bus-address P2P page,
//! repeated (a request of one segment is one host page). Throughput is in
//! segments, so criterion's `elem/s` is the per-segment rate; flat from 1 Ki
//! to 1 Mi is the target.
//!
//! The simulated RAM of the largest request (3 GiB) is allocated zeroed and
//! never touched, so it costs address space, not memory.
//!
//! Run: `cargo bench --bench scale`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dmaspace::PAGE_SIZE;
use dmaspace::host::{HostPages, SimulatedRam};
use dmaspace::prelude::*;
use dmaspace::vec::{BvecSeg, SegOf};

brand!(Cmb);
brand!(Nic);
brand!(Dom);

const HOST_BASE: u64 = 0x1_0000_0000;
const BAR_CPU: u64 = 0x400_0000_0000;
const BAR_BUS: u64 = 0x8000_0000;
const IOVA_BASE: u64 = 0x1000_0000;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    for &n in &[1usize, 1024, 1 << 20] {
        let p2ps = n / 4;
        let hosts = n - p2ps;
        // SAFETY: simulated addresses, only the software IOMMU sees them.
        let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(HOST_BASE), hosts) };
        let mut pages: Vec<HostPages<'_>> = ram.pages().collect();
        // SAFETY: a simulated BAR.
        let cmb = unsafe {
            Provider::<Cmb>::new(
                Bdf::new(0, 3, 0, 0),
                2,
                PhysAddr::new(BAR_CPU),
                BusAddr::new_unchecked(BAR_BUS),
                (p2ps.max(1) as u64 * PAGE_SIZE).next_power_of_two(),
            )
        }
        .expect("provider");
        let alloc = cmb.alloc(p2ps.max(1) as u64 * PAGE_SIZE).expect("BAR room");
        // SAFETY: a simulated device.
        let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
        let dom =
            IommuDomain::<Dom>::software(IOVA_BASE, (n as u64 * 2) * PAGE_SIZE).expect("domain");
        // SAFETY: the simulated provider and client share a switch.
        let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&cmb, &nic, 4) }.into();

        let mut bvec: Vec<BvecSeg<'_, Cmb>> = Vec::with_capacity(n);
        let mut host_iter = pages.iter_mut();
        for i in 0..n {
            if i % 4 == 3 {
                let s = alloc
                    .seg_range((i / 4) as u64 * PAGE_SIZE, PAGE_SIZE)
                    .expect("in the allocation");
                bvec.push(s.into_bvec_seg());
            } else {
                bvec.push(host_iter.next().expect("a page").dma().into_bvec_seg());
            }
        }
        let mapper = Mapper::iommu(&nic, &dom).expect("attach");
        let queue = mapper.queue();
        let id = nic.id();
        // Outputs: each P2P segment, and each run of host segments before it.
        let mut slots = vec![SegSlot::EMPTY; n / 2 + 1];
        let want = if n == 1 { 1 } else { n / 2 };
        let got = queue
            .map_bvec::<ToDevice, _, _>(&mut bvec, &route, SegBuf::from_slots(&mut slots), |v| {
                let v = v.sync();
                v.segments(id).map(<[_]>::len).expect("own device")
            })
            .expect("maps");
        assert_eq!(got, want, "{n} segments");

        group.throughput(Throughput::Elements(n as u64));
        if n >= 1 << 20 {
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::new("segments", n), &n, |b, _| {
            b.iter(|| {
                queue
                    .map_bvec::<ToDevice, _, _>(
                        black_box(&mut bvec),
                        &route,
                        SegBuf::from_slots(&mut slots),
                        |v| {
                            let v = v.sync();
                            black_box(v.segments(id).map(<[_]>::len).unwrap_or(0));
                        },
                    )
                    .expect("maps");
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);

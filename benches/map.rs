//! `map_bvec` against a plain-`u64` baseline doing the same work the
//! straightforward way: validate every segment (provider identity, whole
//! granules, the IOVA link rule, overflow, output capacity), reserve one
//! contiguous IOVA run below the DMA mask (next-fit over the same page
//! table layout), write one entry per granule, merge consecutive IOVA
//! segments, translate P2P segments to bus addresses, then unmap.
//!
//! `map_bvec/atomic_u64` is the same plain code on the crate's own
//! machinery (its IOVA cache and its software IOMMU with atomic entries,
//! `support/atomic_twin.rs`): typed against it is the typed layer's cost
//! alone; against `plain_u64`, the design's too.
//!
//! Requests: 3 host pages then 1 bus-address-route P2P page, repeated, with
//! the IOMMU on. Run: `cargo bench --bench map`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dmaspace::PAGE_SIZE;
use dmaspace::host::{HostPages, SimulatedRam};
use dmaspace::prelude::*;
use dmaspace::vec::{BvecSeg, SegOf};

#[path = "support/plain_map.rs"]
mod plain;
use plain::{
    BAR_BUS, BAR_CPU, GRANULE, HOST_BASE, IOVA_BASE, PROVIDER, PlainDomain, PlainSeg, plain_map,
    plain_unmap,
};
#[path = "support/atomic_twin.rs"]
mod atomic_twin;
use atomic_twin::AtomicDomain;
use dmaspace::iommu::SoftIommu;
use dmaspace::iommu::iova_alloc::IovaAllocator;

brand!(Cmb);
brand!(Nic);
brand!(Dom);

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_bvec");
    for &n in &[128usize, 65536] {
        let hosts = n / 4 * 3;
        let p2ps = n - hosts;
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
                (p2ps as u64 * PAGE_SIZE).next_power_of_two(),
            )
        }
        .unwrap();
        let alloc = cmb.alloc(p2ps as u64 * PAGE_SIZE).unwrap();
        // SAFETY: a simulated device.
        let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
        let dom = IommuDomain::<Dom>::software(IOVA_BASE, (n * 2) as u64 * 4096).unwrap();
        // SAFETY: the simulated provider and client share a switch.
        let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&cmb, &nic, 4) }.into();

        // The same request in both forms.
        let mut bvec: Vec<BvecSeg<'_, Cmb>> = Vec::with_capacity(n);
        let mut plain: Vec<PlainSeg> = Vec::with_capacity(n);
        let mut host_iter = pages.iter_mut();
        for i in 0..n {
            if i % 4 == 3 {
                let s = alloc
                    .seg_range((i / 4) as u64 * PAGE_SIZE, PAGE_SIZE)
                    .unwrap();
                plain.push(PlainSeg {
                    p2p: true,
                    covers: true,
                    provider: PROVIDER,
                    phys: s.phys().as_u64(),
                    len: s.len(),
                });
                bvec.push(s.into_bvec_seg());
            } else {
                let s = host_iter.next().unwrap().dma();
                plain.push(PlainSeg {
                    p2p: false,
                    covers: s.covers_granules(),
                    provider: 0,
                    phys: s.phys().unwrap().as_u64(),
                    len: s.len(),
                });
                bvec.push(s.into_bvec_seg());
            }
        }
        let mapper = Mapper::iommu(&nic, &dom).unwrap();
        // One queue, with its own IOVA cache (a driver has one per CPU).
        let queue = mapper.queue();
        let id = nic.id();
        let mut slots = vec![SegSlot::EMPTY; n];
        let bus_offset = BAR_BUS.wrapping_sub(BAR_CPU);

        // The two must produce the same segments.
        {
            // IOVAs as offsets from the run's start: the two allocators
            // place the run differently (top-down tree, next-fit table).
            let typed: Vec<(u64, u64)> = mapper
                .map_bvec::<ToDevice, _, _>(
                    &mut bvec,
                    &route,
                    SegBuf::from_slots(&mut slots),
                    |v| {
                        let v = v.sync();
                        let run = v.iova_range_start().unwrap();
                        v.segments(id)
                            .unwrap()
                            .iter()
                            .map(|s| {
                                let a = s.addr().unwrap().as_u64();
                                (if s.via() == Via::Iommu { a - run } else { a }, s.len())
                            })
                            .collect()
                    },
                )
                .unwrap();
            let mut pd = PlainDomain {
                table: vec![0; n * 2],
                rover: 0,
            };
            let mut out = vec![(0, 0); n];
            let ((first, _), written) =
                plain_map(&mut pd, &plain, bus_offset, u64::MAX, &mut out).unwrap();
            let run = IOVA_BASE + first as u64 * GRANULE;
            let plain_rel: Vec<(u64, u64)> = out[..written]
                .iter()
                .map(|&(a, l)| {
                    (
                        if (run..run + (n as u64) * GRANULE).contains(&a) {
                            a - run
                        } else {
                            a
                        },
                        l,
                    )
                })
                .collect();
            assert_eq!(typed, plain_rel, "baseline and crate disagree");
            let twin_alloc =
                IovaAllocator::new(IOVA_BASE, (n * 2) as u64 * GRANULE, GRANULE).unwrap();
            let twin = AtomicDomain {
                iommu: SoftIommu::new(IOVA_BASE, (n * 2) as u64 * GRANULE).unwrap(),
                cache: twin_alloc.cache(),
            };
            let mut out = vec![(0, 0); n];
            let ((run, len), written) =
                atomic_twin::atomic_map(&twin, &plain, PROVIDER, bus_offset, u64::MAX, &mut out)
                    .unwrap();
            let atomic_rel: Vec<(u64, u64)> = out[..written]
                .iter()
                .map(|&(a, l)| {
                    (
                        if (run..run + len).contains(&a) {
                            a - run
                        } else {
                            a
                        },
                        l,
                    )
                })
                .collect();
            assert_eq!(typed, atomic_rel, "atomic twin and crate disagree");
            atomic_twin::atomic_unmap(&twin, (run, len));
            assert_eq!(
                twin_alloc.allocated_bytes(),
                0,
                "the atomic twin freed its run"
            );
        }

        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("typed", n), &n, |b, _| {
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
                    .unwrap();
            });
        });
        let twin_alloc = IovaAllocator::new(IOVA_BASE, (n * 2) as u64 * GRANULE, GRANULE).unwrap();
        let twin = AtomicDomain {
            iommu: SoftIommu::new(IOVA_BASE, (n * 2) as u64 * GRANULE).unwrap(),
            cache: twin_alloc.cache(),
        };
        let mut out = vec![(0, 0); n];
        group.bench_with_input(BenchmarkId::new("atomic_u64", n), &n, |b, _| {
            b.iter(|| {
                let (run, written) = atomic_twin::atomic_map(
                    &twin,
                    black_box(&plain),
                    PROVIDER,
                    bus_offset,
                    black_box(u64::MAX),
                    &mut out,
                )
                .unwrap();
                black_box(written);
                atomic_twin::atomic_unmap(&twin, run);
            });
        });
        let mut pd = PlainDomain {
            table: vec![0; n * 2],
            rover: 0,
        };
        let mut out = vec![(0, 0); n];
        group.bench_with_input(BenchmarkId::new("plain_u64", n), &n, |b, _| {
            b.iter(|| {
                let (lease, written) = plain_map(
                    &mut pd,
                    black_box(&plain),
                    bus_offset,
                    black_box(u64::MAX),
                    &mut out,
                )
                .unwrap();
                black_box(written);
                plain_unmap(&mut pd, lease);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

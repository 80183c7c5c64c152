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

#[path = "support/atomic_twin.rs"]
mod atomic_twin;
use atomic_twin::AtomicDomain;
use dmaspace::iommu::SoftIommu;
use dmaspace::iommu::iova_alloc::IovaAllocator;

brand!(Cmb);
brand!(Nic);
brand!(Dom);

const GRANULE: u64 = PAGE_SIZE;
const HOST_BASE: u64 = 0x1_0000_0000;
const BAR_CPU: u64 = 0x40_0000_0000;
const BAR_BUS: u64 = 0x8000_0000;
const IOVA_BASE: u64 = 0x1000_0000;
/// The provider the plain request's P2P segments must belong to.
const PROVIDER: u64 = 7;

/// The baseline: everything a `u64`, one flat page table, one function.
struct PlainDomain {
    table: Vec<u64>,
    rover: usize,
}

const P_READ: u64 = 1;
const P_RESERVED: u64 = 1 << 3;
const P_LINKED: u64 = 1 << 4;
const P_PRESENT: u64 = 1 << 5;

impl PlainDomain {
    /// `count` free entries whose IOVAs are at most `mask`.
    fn reserve(&mut self, count: usize, mask: u64) -> Option<usize> {
        let below = if mask < IOVA_BASE {
            0
        } else {
            ((u128::from(mask - IOVA_BASE) + 1) / u128::from(GRANULE)) as usize
        };
        let n = self.table.len().min(below);
        if count == 0 || count > n {
            return None;
        }
        let mut start = self.rover % n;
        let mut scanned = 0;
        while scanned < n {
            if start + count > n {
                scanned += n - start;
                start = 0;
                continue;
            }
            match self.table[start..start + count]
                .iter()
                .rposition(|&e| e != 0)
            {
                None => {
                    self.table[start..start + count].fill(P_RESERVED);
                    self.rover = start + count;
                    return Some(start);
                }
                Some(b) => {
                    scanned += b + 1;
                    start += b + 1;
                }
            }
        }
        None
    }
}

/// One segment of the plain request.
#[derive(Clone, Copy)]
struct PlainSeg {
    p2p: bool,
    /// Host: the granules it touches lie inside its buffer.
    covers: bool,
    /// P2P: the provider it belongs to.
    provider: u64,
    phys: u64,
    len: u64,
}

/// Segments -> (addr, len) into `out`; returns the reserved run and the count.
fn plain_map(
    dom: &mut PlainDomain,
    segs: &[PlainSeg],
    bus_offset: u64,
    dma_mask: u64,
    out: &mut [(u64, u64)],
) -> Result<((usize, usize), usize), &'static str> {
    let mut iova_bytes = 0u64;
    let mut links = 0usize;
    let mut outputs = 0usize;
    let mut run_open = false;
    for s in segs {
        if s.len == 0 {
            return Err("empty");
        }
        // The same checks the crate makes: the provider is the route's, the
        // range the device will see must not wrap, bus addresses must be
        // within the DMA mask, IOMMU-bound memory covers its granules, the
        // link rule, the IOVA size must not overflow, the output must fit.
        if s.p2p && s.provider != PROVIDER {
            return Err("foreign provider");
        }
        let start = if s.p2p {
            s.phys.wrapping_add(bus_offset)
        } else {
            s.phys
        };
        let last = start.checked_add(s.len - 1).ok_or("overflow")?;
        if s.p2p {
            if last > dma_mask {
                return Err("beyond dma mask");
            }
            outputs += 1;
            run_open = false;
            continue;
        }
        if !s.covers {
            return Err("partial granule");
        }
        let lead = s.phys & (GRANULE - 1);
        if iova_bytes % GRANULE != 0 || (links > 0 && lead != 0) {
            return Err("unaligned");
        }
        let at = if links == 0 { lead } else { iova_bytes };
        iova_bytes = at.checked_add(s.len).ok_or("overflow")?;
        links += 1;
        outputs += usize::from(!run_open);
        run_open = true;
    }
    if outputs > out.len() {
        return Err("out of capacity");
    }
    let count = iova_bytes.div_ceil(GRANULE) as usize;
    let first = dom.reserve(count, dma_mask).ok_or("iova exhausted")?;
    let start = IOVA_BASE + first as u64 * GRANULE;
    let mut cursor = 0u64;
    let mut n = 0;
    let mut run_open = false;
    for s in segs {
        if s.p2p {
            out[n] = (s.phys.wrapping_add(bus_offset), s.len);
            n += 1;
            run_open = false;
            continue;
        }
        let lead = s.phys & (GRANULE - 1);
        let at = if cursor == 0 { lead } else { cursor };
        let pages = (lead + s.len).div_ceil(GRANULE) as usize;
        let mut pa = s.phys & !(GRANULE - 1);
        for e in &mut dom.table[first + (at / GRANULE) as usize..][..pages] {
            *e = pa | P_READ | P_RESERVED | P_LINKED;
            pa += GRANULE;
        }
        cursor = at + s.len;
        if run_open {
            out[n - 1].1 += s.len;
            continue;
        }
        out[n] = (start + at, s.len);
        n += 1;
        run_open = true;
    }
    for e in &mut dom.table[first..first + count] {
        if *e & P_LINKED != 0 {
            *e |= P_PRESENT;
        }
    }
    Ok(((first, count), n))
}

fn plain_unmap(dom: &mut PlainDomain, (first, count): (usize, usize)) {
    dom.table[first..first + count].fill(0);
}

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
        // The plain request again, for the twin on the crate's machinery.
        let atomic: Vec<atomic_twin::Seg> = plain
            .iter()
            .map(|p| atomic_twin::Seg {
                p2p: p.p2p,
                covers: p.covers,
                provider: p.provider,
                phys: p.phys,
                len: p.len,
            })
            .collect();
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
                atomic_twin::atomic_map(&twin, &atomic, PROVIDER, bus_offset, u64::MAX, &mut out)
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
                    black_box(&atomic),
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

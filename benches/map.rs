//! `map_bvec` against a plain-`u64` baseline doing the same work the
//! straightforward way: validate every segment and the IOVA link rule,
//! reserve one contiguous IOVA run (next-fit over the same page table
//! layout), write one entry per granule, merge consecutive IOVA segments,
//! translate P2P segments to bus addresses, then unmap.
//!
//! Requests: 3 host pages then 1 switch-route P2P page, repeated, with the
//! IOMMU on. Run: `cargo bench --bench map`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

use std::hint::black_box;
use std::mem::MaybeUninit;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dmaspace::device::Device;
use dmaspace::dir::ToDevice;
use dmaspace::host::{HostPages, SimulatedRam};
use dmaspace::iommu::{IommuDomain, Pte};
use dmaspace::map::Mapper;
use dmaspace::provider::Provider;
use dmaspace::route::{P2pRoute, Route};
use dmaspace::topology::Bdf;
use dmaspace::vec::{BvecSeg, DmaSeg, SegBuf, SegOf};
use dmaspace::{BusAddr, Iova, PAGE_SIZE, PhysAddr, brand};

brand!(Cmb);
brand!(Nic);
brand!(Dom);

const GRANULE: u64 = PAGE_SIZE;
const HOST_BASE: u64 = 0x1_0000_0000;
const BAR_CPU: u64 = 0x40_0000_0000;
const BAR_BUS: u64 = 0x8000_0000;
const IOVA_BASE: u64 = 0x1000_0000;

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
    fn reserve(&mut self, count: usize) -> Option<usize> {
        let n = self.table.len();
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

/// (is_p2p, phys, len) -> (addr, len) segments; returns the reserved run.
fn plain_map(
    dom: &mut PlainDomain,
    segs: &[(bool, u64, u64)],
    bus_offset: u64,
    dma_mask: u64,
    out: &mut Vec<(u64, u64)>,
) -> Result<(usize, usize), &'static str> {
    let mut iova_bytes = 0u64;
    let mut links = 0usize;
    let mut open_end = false;
    for &(p2p, phys, len) in segs {
        if len == 0 {
            return Err("empty");
        }
        // The same checks the crate makes: the range the device will see
        // must not wrap, bus addresses must be within the DMA mask, and the
        // IOVA size must not overflow.
        let start = if p2p {
            phys.wrapping_add(bus_offset)
        } else {
            phys
        };
        let last = start.checked_add(len - 1).ok_or("overflow")?;
        if p2p && last > dma_mask {
            return Err("beyond dma mask");
        }
        if !p2p {
            let lead = phys & (GRANULE - 1);
            if open_end || (links > 0 && lead != 0) {
                return Err("unaligned");
            }
            iova_bytes = iova_bytes
                .checked_add(if links == 0 { lead + len } else { len })
                .ok_or("overflow")?;
            open_end = iova_bytes % GRANULE != 0;
            links += 1;
        }
    }
    let count = iova_bytes.div_ceil(GRANULE) as usize;
    let first = dom.reserve(count).ok_or("iova exhausted")?;
    let start = IOVA_BASE + first as u64 * GRANULE;
    out.clear();
    let mut cursor = 0u64;
    let mut run_open = false;
    for &(p2p, phys, len) in segs {
        if p2p {
            out.push((phys.wrapping_add(bus_offset), len));
            run_open = false;
            continue;
        }
        let lead = phys & (GRANULE - 1);
        let at = if cursor == 0 { lead } else { cursor };
        let n = (lead + len).div_ceil(GRANULE) as usize;
        let mut pa = phys & !(GRANULE - 1);
        for e in &mut dom.table[first + (at / GRANULE) as usize..][..n] {
            *e = pa | P_READ | P_RESERVED | P_LINKED;
            pa += GRANULE;
        }
        cursor = at + len;
        if run_open {
            if let Some(last) = out.last_mut() {
                last.1 += len;
                continue;
            }
        }
        out.push((start + at, len));
        run_open = true;
    }
    for e in &mut dom.table[first..first + count] {
        if *e & P_LINKED != 0 {
            *e |= P_PRESENT;
        }
    }
    Ok((first, count))
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
        let mut nic = Device::<Nic>::new(Bdf::new(0, 4, 0, 0), u64::MAX).unwrap();
        let mut table = vec![Pte::EMPTY; n * 2];
        // SAFETY: a software aperture.
        let dom =
            IommuDomain::<Dom>::new(unsafe { Iova::new_unchecked(IOVA_BASE) }, &mut table).unwrap();
        // SAFETY: the simulated provider and client share a switch.
        let route: P2pRoute<'_, Cmb, Nic> =
            unsafe { Route::assume_via_switch(&cmb, &nic, 4) }.into();

        // The same request in both forms.
        let mut bvec: Vec<BvecSeg<'_, Cmb>> = Vec::with_capacity(n);
        let mut plain: Vec<(bool, u64, u64)> = Vec::with_capacity(n);
        let mut host_iter = pages.iter_mut();
        for i in 0..n {
            if i % 4 == 3 {
                let s = alloc
                    .seg_range((i / 4) as u64 * PAGE_SIZE, PAGE_SIZE)
                    .unwrap();
                plain.push((true, s.phys().as_u64(), s.len()));
                bvec.push(s.into_bvec_seg());
            } else {
                let s = host_iter.next().unwrap().dma();
                plain.push((false, s.phys().as_u64(), s.len()));
                bvec.push(s.into_bvec_seg());
            }
        }
        let mapper = Mapper::iommu(&mut nic, &dom);
        let mut slots = vec![MaybeUninit::<DmaSeg<Nic>>::uninit(); n];

        // The two must produce the same segments.
        {
            let v = mapper
                .map_bvec::<ToDevice, _>(&bvec, &route, SegBuf::from_slice(&mut slots))
                .unwrap()
                .sync();
            let typed: Vec<(u64, u64)> = v
                .device_reads()
                .iter()
                .map(|s| (s.wire_addr().unwrap().as_u64(), s.len()))
                .collect();
            drop(v);
            let mut pd = PlainDomain {
                table: vec![0; n * 2],
                rover: 0,
            };
            let mut out = Vec::with_capacity(n);
            plain_map(
                &mut pd,
                &plain,
                BAR_BUS.wrapping_sub(BAR_CPU),
                u64::MAX,
                &mut out,
            )
            .unwrap();
            assert_eq!(typed, out, "baseline and crate disagree");
        }

        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("typed", n), &n, |b, _| {
            b.iter(|| {
                let v = mapper
                    .map_bvec::<ToDevice, _>(
                        black_box(&bvec),
                        &route,
                        SegBuf::from_slice(&mut slots),
                    )
                    .unwrap()
                    .sync();
                black_box(v.device_reads().len());
                v.unmap();
            });
        });
        let mut pd = PlainDomain {
            table: vec![0; n * 2],
            rover: 0,
        };
        let mut out = Vec::with_capacity(n);
        let bus_offset = BAR_BUS.wrapping_sub(BAR_CPU);
        group.bench_with_input(BenchmarkId::new("plain_u64", n), &n, |b, _| {
            b.iter(|| {
                let lease = plain_map(
                    &mut pd,
                    black_box(&plain),
                    bus_offset,
                    black_box(u64::MAX),
                    &mut out,
                )
                .unwrap();
                black_box(out.len());
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

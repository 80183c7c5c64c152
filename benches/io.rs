//! Per-I/O cost of the driver path, typed against plain `u64` code doing
//! the same job, in one run. One I/O: map the data buffer, build the NVMe
//! PRP entries from its device addresses, unmap.
//!
//! - `io/iommu_1page`, `io/iommu_8page`: an owned buffer (`MappedBuf`)
//!   mapped for a queue through the software IOMMU (IOVA from the queue's
//!   cache, page table linked and synced), PRP entries from its segment,
//!   unmapped (buffer back).
//! - `io/plain_1page`: the zero-cost limit: the same IOVA cache, a bare
//!   page-table array of `u64`s, the PRP entry by arithmetic.
//! - `io/atomic_1page`: the typed layer's cost alone: the same IOVA cache
//!   and the same software IOMMU (atomic entries, `map_synced`, `unmap`)
//!   on plain numbers (`support/atomic_twin.rs`).
//! - `io/direct_1page`: a direct (no IOMMU) mapper: the physical address.
//! - `io/pool_1page`: a slot of a registered pool (mapped once): take it,
//!   hand it to the device, PRP entry, take it back, return it;
//!   `io/plain_pool_1page`: the same bitmap discipline on one word;
//!   `io/atomic_pool_1page`: the pool's own slot algorithm (word search
//!   from a hint) and segment walk on plain numbers.
//! - `io/iommu_1page_2threads`: `io/iommu_1page` on two threads at once,
//!   each with its own queue of one mapper and domain; wall time divided by
//!   the I/Os of both threads, so it compares with `io/iommu_1page`.
//!
//! Run: `cargo bench --bench io`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dmaspace::host::{CacheCoherent, SimBuf, SimulatedRam};
use dmaspace::iommu::SoftIommu;
use dmaspace::iommu::iova_alloc::{IovaAllocator, IovaCache};
use dmaspace::map::{Iommu, MapQueue, Translation};
use dmaspace::prelude::*;

#[path = "support/atomic_twin.rs"]
mod atomic_twin;
#[path = "support/plain_map.rs"]
mod plain;
use atomic_twin::{AtomicDomain, AtomicPool};

brand!(Nvme);
brand!(Dom);

const PAGE: u64 = 4096;
const IOVA_BASE: u64 = 1 << 32;
const IOVA_LEN: u64 = 1 << 32;
const MASK: u64 = (1 << 48) - 1;
const RAM: u64 = 1 << 40;

fn device(bus: u8) -> Device<'static, Nvme> {
    // SAFETY: a simulated device; nothing reaches hardware.
    unsafe { Device::new_unchecked(Bdf::new(0, bus, 0, 0), DmaLimits::bits(48)) }
}

fn buffer(base: u64, pages: usize) -> SimBuf {
    // SAFETY: simulated memory, only given to the software IOMMU.
    let ram = unsafe { SimulatedRam::new(PhysAddr::new(base), pages) };
    let mut bufs = ram.into_buffers(pages * PAGE as usize);
    bufs.remove(0)
}

/// PRP1 and PRP2 of a segment (PRP2: the second page, or 0; a list is not
/// built, the entries are only computed).
fn prp<D: Direction>(seg: &DmaSeg<Nvme, D, HostMem>) -> (u64, u64) {
    let prp1 = seg.at(0).map_or(0, DmaAddr::as_u64);
    let mut prp2 = 0;
    let mut off = PAGE;
    while off < seg.len() {
        prp2 ^= seg.at(off).map_or(0, DmaAddr::as_u64);
        off += PAGE;
    }
    (prp1, prp2)
}

/// One typed I/O through `queue`: map, PRPs, unmap.
fn typed_io<T: Translation>(
    queue: &MapQueue<'_, '_, Nvme, T, CacheCoherent>,
    id: DeviceId,
    buf: SimBuf,
) -> SimBuf {
    match queue.map_buf::<ToDevice, _>(buf) {
        Ok(m) => {
            if let Ok(segs) = m.segments(id) {
                black_box(prp(&segs[0]));
            }
            m.unmap()
        }
        Err(e) => panic!("bench mapping refused: {}", e.error),
    }
}

/// The zero-cost limit: the same IOVA cache, a bare page table.
struct PlainIo<'a> {
    cache: IovaCache<'a>,
    table: Vec<u64>,
}

impl PlainIo<'_> {
    fn io(&mut self, phys: u64, pages: u64) {
        let len = pages * PAGE;
        let iova = self.cache.alloc(len, PAGE, MASK).expect("bench IOVA");
        let first = ((iova - IOVA_BASE) / PAGE) as usize;
        for (i, e) in self.table[first..first + pages as usize]
            .iter_mut()
            .enumerate()
        {
            *e = (phys + i as u64 * PAGE) | 0b11; // present | read
        }
        let prp1 = iova;
        let prp2 = if pages == 2 { iova + PAGE } else { 0 };
        black_box((prp1, prp2));
        self.table[first..first + pages as usize].fill(0);
        self.cache.free(iova, len);
    }
}

fn one_io(c: &mut Criterion) {
    let mut g = c.benchmark_group("io");
    let dev = device(1);
    let domain = IommuDomain::<Dom>::software(IOVA_BASE, IOVA_LEN).unwrap();
    let mapper = Mapper::iommu(&dev, &domain).unwrap();
    let queue = mapper.queue();
    let id = dev.id();
    for (name, pages) in [("iommu_1page", 1), ("iommu_8page", 8)] {
        let mut buf = Some(buffer(RAM, pages));
        g.bench_function(name, |b| {
            b.iter(|| buf = buf.take().map(|x| typed_io(&queue, id, x)));
        });
    }
    let alloc = IovaAllocator::new(IOVA_BASE, IOVA_LEN, PAGE).unwrap();
    // The plain twin's table: one entry per page of the aperture.
    let mut plain = PlainIo {
        cache: alloc.cache(),
        table: vec![0; (IOVA_LEN / PAGE) as usize],
    };
    g.bench_function("plain_1page", |b| b.iter(|| plain.io(black_box(RAM), 1)));
    let twin_alloc = IovaAllocator::new(IOVA_BASE, IOVA_LEN, PAGE).unwrap();
    let twin = AtomicDomain {
        iommu: SoftIommu::new(IOVA_BASE, IOVA_LEN).unwrap(),
        cache: twin_alloc.cache(),
    };
    g.bench_function("atomic_1page", |b| {
        b.iter(|| atomic_twin::atomic_io(&twin, black_box(RAM), 1, MASK));
    });

    let dev2 = device(2);
    // SAFETY: the simulated device reaches simulated memory by physical address.
    let direct = unsafe { Mapper::direct(&dev2) }.unwrap();
    let dqueue = direct.queue();
    let mut buf = Some(buffer(RAM, 1));
    g.bench_function("direct_1page", |b| {
        b.iter(|| buf = buf.take().map(|x| typed_io(&dqueue, dev2.id(), x)));
    });
    g.finish();
}

fn pool_io(c: &mut Criterion) {
    let mut g = c.benchmark_group("io");
    let dev = device(3);
    let domain = IommuDomain::<Dom>::software(IOVA_BASE, IOVA_LEN).unwrap();
    let mapper = Mapper::iommu(&dev, &domain).unwrap();
    let pool = mapper
        .register_pool(buffer(RAM, 64), PAGE as usize)
        .map_err(|e| e.error)
        .unwrap();
    let id = dev.id();
    g.bench_function("pool_1page", |b| {
        b.iter(|| {
            let slot = pool
                .take::<FromDevice>()
                .expect("a free slot")
                .sync_for_device();
            if let Ok(seg) = slot.segment(id) {
                black_box(prp(seg));
            }
            drop(slot.sync_for_cpu());
        });
    });
    // The same bitmap discipline, the address by arithmetic.
    let words: Vec<AtomicU64> = (0..1).map(|_| AtomicU64::new(0)).collect();
    let base = black_box(IOVA_BASE);
    g.bench_function("plain_pool_1page", |b| {
        b.iter(|| {
            let w = &words[0];
            let seen = w.load(Ordering::Relaxed);
            let bit = (!seen).trailing_zeros();
            w.fetch_or(1 << bit, Ordering::Acquire);
            black_box((base + u64::from(bit) * PAGE, 0u64));
            w.fetch_and(!(1 << bit), Ordering::Release);
        });
    });
    // The pool's own slot algorithm and segment walk, on plain numbers.
    let mut bytes = vec![0u8; 64 * PAGE as usize];
    let twin = AtomicPool::new(64, PAGE, vec![(IOVA_BASE, 64 * PAGE)], bytes.as_mut_ptr());
    g.bench_function("atomic_pool_1page", |b| b.iter(|| twin.io()));
    g.finish();
}

/// `iters` typed I/Os split over `threads` threads, each with its own queue
/// of one mapper: the wall time of the whole.
fn threaded(threads: u64, iters: u64) -> Duration {
    let dev = device(4);
    let domain = IommuDomain::<Dom>::software(IOVA_BASE, IOVA_LEN).unwrap();
    let mapper = Mapper::iommu(&dev, &domain).unwrap();
    let id = dev.id();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let mapper: &Mapper<'_, Nvme, Iommu<'_, SoftIommu>> = &mapper;
            s.spawn(move || {
                let queue = mapper.queue();
                let mut buf = buffer(RAM + (t << 32), 1);
                for _ in 0..iters / threads {
                    buf = typed_io(&queue, id, buf);
                }
            });
        }
    });
    start.elapsed()
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("io");
    g.bench_function("iommu_1page_2threads", |b| {
        b.iter_custom(|iters| threaded(2, iters.max(2)));
    });
    g.finish();
}

criterion_group!(benches, one_io, pool_io, two_threads);
criterion_main!(benches);

//! Per-I/O cost of the driver path, typed against plain `u64` code doing
//! the same job with the same parts (the IOVA allocator and its queue
//! cache, the software page table), in one run:
//!
//! - `map_unmap_1page`: map one owned 4 KiB buffer for a queue through the
//!   software IOMMU, take its device address, unmap. Plain: allocate an
//!   IOVA from the queue's cache, map the page table entry, sync, read the
//!   address, unmap, free.
//! - `pool_slot`: take a slot of a registered pool, hand it to the device,
//!   take its address, take it back, return it. Plain: claim a bit in an
//!   atomic bitmap, compute the slot's address, release the bit.
//! - `threads`: `map_unmap_1page` on 1 and 2 threads at once, each with its
//!   own queue of one shared mapper and domain: time per I/O of the whole.
//!
//! Run: `cargo bench --bench io`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dmaspace::backend::IommuBackend;
use dmaspace::host::{SimBuf, SimulatedRam};
use dmaspace::iommu::iova_alloc::IovaAllocator;
use dmaspace::iommu::{IommuPerm, SoftIommu};
use dmaspace::prelude::*;

brand!(Nvme);
brand!(Dom);

const IOVA_BASE: u64 = 1 << 32;
const IOVA_LEN: u64 = 1 << 32;
const MASK: u64 = (1 << 48) - 1;

fn device(bus: u8) -> Device<'static, Nvme> {
    // SAFETY: a simulated device; nothing reaches hardware.
    unsafe { Device::new_unchecked(Bdf::new(0, bus, 0, 0), DmaLimits::bits(48)) }
}

fn buffers(base: u64, pages: usize, chunk: usize) -> Vec<SimBuf> {
    // SAFETY: simulated memory, only given to the software IOMMU.
    unsafe { SimulatedRam::new(PhysAddr::new(base), pages) }.into_buffers(chunk)
}

/// One typed I/O: map an owned page for the queue, read its address, unmap.
fn typed_io<'q>(
    queue: &dmaspace::map::MapQueue<
        'q,
        '_,
        Nvme,
        dmaspace::map::Iommu<'_, SoftIommu>,
        dmaspace::host::CacheCoherent,
    >,
    id: DeviceId,
    buf: SimBuf,
) -> SimBuf {
    let m = queue
        .map_buf::<ToDevice, _>(buf)
        .map_err(|e| e.error)
        .unwrap();
    black_box(m.segments(id).unwrap()[0].addr().map(DmaAddr::as_u64));
    m.unmap()
}

/// The same I/O with integers: the queue cache, the page table, no types.
fn plain_io(cache: &dmaspace::iommu::iova_alloc::IovaCache<'_>, table: &SoftIommu, phys: u64) {
    let iova = cache.alloc(4096, 4096, MASK).unwrap();
    // SAFETY: the range was just reserved; the memory is simulated.
    unsafe { table.map(iova, phys, 4096, IommuPerm::READ, false) }.unwrap();
    table.sync(iova, 4096);
    black_box(iova);
    // SAFETY: the range is ours.
    unsafe { table.unmap(iova, 4096) };
    cache.free(iova, 4096);
}

fn map_unmap_1page(c: &mut Criterion) {
    let mut g = c.benchmark_group("io/map_unmap_1page");
    let dev = device(1);
    let domain = IommuDomain::<Dom>::software(IOVA_BASE, IOVA_LEN).unwrap();
    let mapper = Mapper::iommu(&dev, &domain).unwrap();
    let queue = mapper.queue();
    let id = dev.id();
    let mut buf = Some(buffers(1 << 40, 1, 4096).remove(0));
    g.bench_function("typed", |b| {
        b.iter(|| buf = Some(typed_io(&queue, id, buf.take().unwrap())));
    });
    let alloc = IovaAllocator::new(IOVA_BASE, IOVA_LEN, 4096).unwrap();
    let cache = alloc.cache();
    let table = SoftIommu::new(IOVA_BASE, IOVA_LEN).unwrap();
    g.bench_function("plain", |b| {
        b.iter(|| plain_io(&cache, &table, black_box(1 << 40)))
    });
    g.finish();
}

fn pool_slot(c: &mut Criterion) {
    let mut g = c.benchmark_group("io/pool_slot");
    let dev = device(2);
    let domain = IommuDomain::<Dom>::software(IOVA_BASE, IOVA_LEN).unwrap();
    let mapper = Mapper::iommu(&dev, &domain).unwrap();
    let pool = mapper
        .register_pool(buffers(1 << 40, 64, 64 * 4096).remove(0), 4096)
        .map_err(|e| e.error)
        .unwrap();
    let id = dev.id();
    g.bench_function("typed", |b| {
        b.iter(|| {
            let slot = pool.take::<FromDevice>().unwrap().sync_for_device();
            black_box(slot.segment(id).unwrap().addr().map(DmaAddr::as_u64));
            drop(slot.sync_for_cpu());
        });
    });
    // Plain: the same bitmap discipline, the address by arithmetic.
    let words: Vec<AtomicU64> = (0..1).map(|_| AtomicU64::new(0)).collect();
    let base = black_box(IOVA_BASE);
    g.bench_function("plain", |b| {
        b.iter(|| {
            let w = &words[0];
            let seen = w.load(Ordering::Relaxed);
            let bit = (!seen).trailing_zeros();
            w.fetch_or(1 << bit, Ordering::Acquire);
            black_box(base + u64::from(bit) * 4096);
            w.fetch_and(!(1 << bit), Ordering::Release);
        });
    });
    g.finish();
}

/// `iters` typed I/Os split over `threads` threads, each with its own queue
/// of one mapper: the wall time of the whole.
fn threaded(threads: u64, iters: u64) -> Duration {
    let dev = device(3);
    let domain = IommuDomain::<Dom>::software(IOVA_BASE, IOVA_LEN).unwrap();
    let mapper = Mapper::iommu(&dev, &domain).unwrap();
    let id = dev.id();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let mapper = &mapper;
            s.spawn(move || {
                let queue = mapper.queue();
                let mut buf = buffers((t + 1) << 40, 1, 4096).remove(0);
                for _ in 0..iters / threads {
                    buf = typed_io(&queue, id, buf);
                }
            });
        }
    });
    start.elapsed()
}

fn threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("io/threads");
    for n in [1u64, 2] {
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| threaded(n, iters.max(n)));
        });
    }
    g.finish();
}

criterion_group!(benches, map_unmap_1page, pool_slot, threads);
criterion_main!(benches);

//! Instruction counts (Callgrind, through `gungraun`) of the two paths of
//! `benches/map.rs`: `map_bvec/typed` (one `map_bvec` through a queue of a
//! software-IOMMU mapper, the closure syncing and reading the segments, the
//! unmap) and `map_bvec/plain_u64` (the same work on plain integers and a
//! flat page table, `benches/support/plain_map.rs`), at 128 and 65,536
//! segments. Counts are deterministic, so the noisy machine does not matter;
//! the target is typed within +1% of plain.
//!
//! Needs valgrind and `gungraun-runner` of the same version as the `gungraun`
//! dev-dependency: `cargo install gungraun-runner --version 0.20.0`, then
//! `cargo bench --bench map_instructions`. Without either, the bench prints one line
//! saying so and exits 0, so that `cargo bench --workspace` runs the others.
#![expect(missing_docs, reason = "gungraun's macros generate undocumented items")]

use std::hint::black_box;

use dmaspace::PAGE_SIZE;
use dmaspace::host::{CacheCoherent, HostPages, SimulatedRam};
use dmaspace::iommu::SoftIommu;
use dmaspace::map::{Iommu, MapQueue};
use dmaspace::prelude::*;
use dmaspace::vec::{BvecSeg, SegOf};
use gungraun::{library_benchmark, library_benchmark_group, main};

#[path = "support/atomic_twin.rs"]
mod atomic_twin;
#[path = "support/plain_map.rs"]
mod plain;
use plain::{BAR_BUS, BAR_CPU, HOST_BASE, IOVA_BASE, PROVIDER, PlainDomain, PlainSeg};

brand!(Cmb);
brand!(Nic);
brand!(Dom);

type Queue = MapQueue<'static, 'static, Nic, Iommu<'static, SoftIommu>, CacheCoherent>;

/// Everything the typed path needs, leaked so that it outlives the setup.
pub struct Typed {
    queue: Queue,
    bvec: Vec<BvecSeg<'static, Cmb>>,
    route: P2pRoute<'static, Cmb, Nic>,
    slots: Vec<SegSlot>,
    id: DeviceId,
}

/// The plain path's state.
pub struct Plain {
    dom: PlainDomain,
    segs: Vec<PlainSeg>,
    out: Vec<(u64, u64)>,
    bus_offset: u64,
}

fn leak<T>(t: T) -> &'static mut T {
    Box::leak(Box::new(t))
}

/// The request of `benches/map.rs`: 3 host pages then 1 P2P page, repeated.
fn typed_setup(n: usize) -> Typed {
    let hosts = n / 4 * 3;
    let p2ps = n - hosts;
    // SAFETY: simulated addresses, only the software IOMMU sees them.
    let ram = leak(unsafe { SimulatedRam::new(PhysAddr::new(HOST_BASE), hosts) });
    let pages: &'static mut Vec<HostPages<'static>> = leak(ram.pages().collect());
    // SAFETY: a simulated BAR.
    let cmb = leak(
        unsafe {
            Provider::<Cmb>::new(
                Bdf::new(0, 3, 0, 0),
                2,
                PhysAddr::new(BAR_CPU),
                BusAddr::new_unchecked(BAR_BUS),
                (p2ps as u64 * PAGE_SIZE).next_power_of_two(),
            )
        }
        .expect("provider"),
    );
    let alloc = leak(cmb.alloc(p2ps as u64 * PAGE_SIZE).expect("BAR room"));
    // SAFETY: a simulated device.
    let nic =
        leak(unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) });
    let dom = leak(IommuDomain::<Dom>::software(IOVA_BASE, (n * 2) as u64 * 4096).expect("domain"));
    // SAFETY: the simulated provider and client share a switch.
    let route: P2pRoute<'static, Cmb, Nic> = unsafe { Route::assume_bus_addr(cmb, nic, 4) }.into();
    let mut bvec = Vec::with_capacity(n);
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
    let mapper = leak(Mapper::iommu(nic, dom).expect("attach"));
    let id = nic.id();
    let mut t = Typed {
        queue: mapper.queue(),
        bvec,
        route,
        slots: vec![SegSlot::EMPTY; n],
        id,
    };
    // Warm: page-table levels and the queue's IOVA cache come into being here.
    typed_io(&mut t);
    t
}

fn plain_setup(n: usize) -> Plain {
    let bus_offset = BAR_BUS.wrapping_sub(BAR_CPU);
    let segs = (0..n)
        .map(|i| {
            if i % 4 == 3 {
                PlainSeg {
                    p2p: true,
                    covers: true,
                    provider: PROVIDER,
                    phys: BAR_CPU + (i / 4) as u64 * PAGE_SIZE,
                    len: PAGE_SIZE,
                }
            } else {
                PlainSeg {
                    p2p: false,
                    covers: true,
                    provider: 0,
                    phys: HOST_BASE + (i - i / 4) as u64 * PAGE_SIZE,
                    len: PAGE_SIZE,
                }
            }
        })
        .collect();
    let mut p = Plain {
        dom: PlainDomain {
            table: vec![0; n * 2],
            rover: 0,
        },
        segs,
        out: vec![(0, 0); n],
        bus_offset,
    };
    plain_io(&mut p);
    p
}

fn typed_io(t: &mut Typed) {
    let id = t.id;
    t.queue
        .map_bvec::<ToDevice, _, _>(
            black_box(&mut t.bvec),
            &t.route,
            SegBuf::from_slots(&mut t.slots),
            |v| {
                let v = v.sync();
                black_box(v.segments(id).map(<[_]>::len).unwrap_or(0));
            },
        )
        .expect("maps");
}

fn plain_io(p: &mut Plain) {
    let (lease, written) = plain::plain_map(
        &mut p.dom,
        black_box(&p.segs),
        p.bus_offset,
        black_box(u64::MAX),
        &mut p.out,
    )
    .expect("maps");
    black_box(written);
    plain::plain_unmap(&mut p.dom, lease);
}

#[library_benchmark]
#[bench::n128(args = (128), setup = typed_setup)]
#[bench::n65536(args = (65536), setup = typed_setup)]
fn typed(mut t: Typed) -> Typed {
    typed_io(&mut t);
    t
}

#[library_benchmark]
#[bench::n128(args = (128), setup = plain_setup)]
#[bench::n65536(args = (65536), setup = plain_setup)]
fn plain_u64(mut p: Plain) -> Plain {
    plain_io(&mut p);
    p
}

/// The atomic twin's state: the plain request on the crate's IOVA cache
/// and software IOMMU.
pub struct Atomic {
    dom: atomic_twin::AtomicDomain<'static>,
    segs: Vec<PlainSeg>,
    out: Vec<(u64, u64)>,
    bus_offset: u64,
}

fn atomic_setup(n: usize) -> Atomic {
    let p = plain_setup(n);
    let len = (n * 2) as u64 * PAGE_SIZE;
    let alloc = leak(
        dmaspace::iommu::iova_alloc::IovaAllocator::new(IOVA_BASE, len, PAGE_SIZE)
            .expect("aperture"),
    );
    let mut a = Atomic {
        dom: atomic_twin::AtomicDomain {
            iommu: SoftIommu::new(IOVA_BASE, len).expect("aperture"),
            cache: alloc.cache(),
        },
        segs: p.segs,
        out: vec![(0, 0); n],
        bus_offset: p.bus_offset,
    };
    atomic_io(&mut a);
    a
}

fn atomic_io(a: &mut Atomic) {
    let (run, written) = atomic_twin::atomic_map(
        &a.dom,
        black_box(&a.segs),
        PROVIDER,
        a.bus_offset,
        black_box(u64::MAX),
        &mut a.out,
    )
    .expect("maps");
    black_box(written);
    atomic_twin::atomic_unmap(&a.dom, run);
}

#[library_benchmark]
#[bench::n128(args = (128), setup = atomic_setup)]
#[bench::n65536(args = (65536), setup = atomic_setup)]
fn atomic_u64(mut a: Atomic) -> Atomic {
    atomic_io(&mut a);
    a
}

library_benchmark_group!(
    name = map_bvec;
    benchmarks = typed, atomic_u64, plain_u64
);

/// `benches/io.rs`'s `io/iommu_1page` and `io/plain_1page`, one I/O each
/// after a warm-up one (the queue's cache and the page table exist).
mod io {
    use std::hint::black_box;

    use dmaspace::host::{CacheCoherent, SimBuf, SimulatedRam};
    use dmaspace::iommu::SoftIommu;
    use dmaspace::iommu::iova_alloc::{IovaAllocator, IovaCache};
    use dmaspace::map::{Iommu, MapQueue};
    use dmaspace::prelude::*;

    use super::leak;

    brand!(Nvme);
    brand!(IoDom);

    const PAGE: u64 = 4096;
    const IOVA_BASE: u64 = 1 << 32;
    const IOVA_LEN: u64 = 1 << 32;
    const MASK: u64 = (1 << 48) - 1;
    const RAM: u64 = 1 << 40;

    type Queue = MapQueue<'static, 'static, Nvme, Iommu<'static, SoftIommu>, CacheCoherent>;

    /// The typed I/O's state.
    pub struct TypedIo {
        queue: Queue,
        id: DeviceId,
        buf: Option<SimBuf>,
    }

    /// The plain twin's state: the same IOVA cache, a bare page table.
    pub struct PlainIo {
        cache: IovaCache<'static>,
        table: Vec<u64>,
    }

    pub fn typed_setup() -> TypedIo {
        // SAFETY: a simulated device; nothing reaches hardware.
        let dev = leak(unsafe {
            Device::<Nvme>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::bits(48))
        });
        let dom = leak(IommuDomain::<IoDom>::software(IOVA_BASE, IOVA_LEN).expect("domain"));
        let mapper = leak(Mapper::iommu(dev, dom).expect("attach"));
        // SAFETY: simulated memory, only given to the software IOMMU.
        let ram = unsafe { SimulatedRam::new(PhysAddr::new(RAM), 1) };
        let buf = ram.into_buffers(PAGE as usize).pop();
        let mut t = TypedIo {
            queue: mapper.queue(),
            id: dev.id(),
            buf,
        };
        typed_io(&mut t);
        t
    }

    pub fn typed_io(t: &mut TypedIo) {
        let buf = t.buf.take().expect("the buffer");
        let m = match t.queue.map_buf::<ToDevice, _>(buf) {
            Ok(m) => m,
            Err(e) => panic!("bench mapping refused: {}", e.error),
        };
        if let Ok(segs) = m.segments(t.id) {
            black_box(segs[0].at(0).map_or(0, DmaAddr::as_u64));
        }
        t.buf = Some(m.unmap());
    }

    type Pool = dmaspace::map::RegisteredPool<
        'static,
        Nvme,
        SimBuf,
        Iommu<'static, SoftIommu>,
        CacheCoherent,
    >;

    /// A registered pool of 64 one-page slots (`io/pool_1page`).
    /// The pool's state.
    pub struct PoolIo {
        pool: Pool,
        id: DeviceId,
    }

    pub fn pool_setup() -> PoolIo {
        // SAFETY: a simulated device; nothing reaches hardware.
        let dev = leak(unsafe {
            Device::<Nvme>::new_unchecked(Bdf::new(0, 3, 0, 0), DmaLimits::bits(48))
        });
        let dom = leak(IommuDomain::<IoDom>::software(IOVA_BASE, IOVA_LEN).expect("domain"));
        let mapper = leak(Mapper::iommu(dev, dom).expect("attach"));
        // SAFETY: simulated memory, only given to the software IOMMU.
        let ram = unsafe { SimulatedRam::new(PhysAddr::new(RAM), 64) };
        let buf = ram
            .into_buffers(64 * PAGE as usize)
            .pop()
            .expect("one buffer");
        let pool = mapper
            .register_pool(buf, PAGE as usize)
            .map_err(|e| e.error)
            .expect("pool");
        let mut p = PoolIo { pool, id: dev.id() };
        pool_io(&mut p);
        p
    }

    pub fn pool_io(p: &mut PoolIo) {
        let slot = p
            .pool
            .take::<FromDevice>()
            .expect("a free slot")
            .sync_for_device();
        if let Ok(seg) = slot.segment(p.id) {
            black_box(seg.at(0).map_or(0, DmaAddr::as_u64));
        }
        drop(slot.sync_for_cpu());
    }

    /// The same bitmap discipline on one word, the address by arithmetic.
    pub fn plain_pool_io(w: &mut std::sync::atomic::AtomicU64) {
        use std::sync::atomic::Ordering;
        let seen = w.load(Ordering::Relaxed);
        let bit = (!seen).trailing_zeros();
        w.fetch_or(1 << bit, Ordering::Acquire);
        black_box(black_box(IOVA_BASE) + u64::from(bit) * PAGE);
        w.fetch_and(!(1 << bit), Ordering::Release);
    }

    /// The atomic twin's state: the crate's IOVA cache and software IOMMU.
    pub type AtomicIo = super::atomic_twin::AtomicDomain<'static>;

    pub fn atomic_setup() -> AtomicIo {
        let alloc = leak(IovaAllocator::new(IOVA_BASE, IOVA_LEN, PAGE).expect("aperture"));
        let a = super::atomic_twin::AtomicDomain {
            iommu: SoftIommu::new(IOVA_BASE, IOVA_LEN).expect("aperture"),
            cache: alloc.cache(),
        };
        atomic_io(&a);
        a
    }

    pub fn atomic_io(a: &AtomicIo) {
        super::atomic_twin::atomic_io(a, black_box(RAM), 1, MASK);
    }

    /// The pool's own slot algorithm on plain numbers (64 one-page slots).
    pub fn atomic_pool_setup() -> super::atomic_twin::AtomicPool {
        let bytes = leak(vec![0u8; 64 * PAGE as usize]);
        let p = super::atomic_twin::AtomicPool::new(
            64,
            PAGE,
            vec![(IOVA_BASE, 64 * PAGE)],
            bytes.as_mut_ptr(),
        );
        p.io();
        p
    }

    pub fn plain_setup() -> PlainIo {
        let alloc = leak(IovaAllocator::new(IOVA_BASE, IOVA_LEN, PAGE).expect("aperture"));
        let mut p = PlainIo {
            cache: alloc.cache(),
            table: vec![0; (IOVA_LEN / PAGE) as usize],
        };
        plain_io(&mut p);
        p
    }

    pub fn plain_io(p: &mut PlainIo) {
        let phys = black_box(RAM);
        let iova = p.cache.alloc(PAGE, PAGE, MASK).expect("bench IOVA");
        let i = ((iova - IOVA_BASE) / PAGE) as usize;
        p.table[i] = phys | 0b11;
        black_box(iova);
        p.table[i] = 0;
        p.cache.free(iova, PAGE);
    }
}

#[library_benchmark]
#[bench::page1(setup = io::typed_setup)]
fn iommu_io(mut t: io::TypedIo) -> io::TypedIo {
    io::typed_io(&mut t);
    t
}

#[library_benchmark]
#[bench::page1(setup = io::plain_setup)]
fn plain_io(mut p: io::PlainIo) -> io::PlainIo {
    io::plain_io(&mut p);
    p
}

#[library_benchmark]
#[bench::slot(setup = io::pool_setup)]
fn pool_io(mut p: io::PoolIo) -> io::PoolIo {
    io::pool_io(&mut p);
    p
}

#[library_benchmark]
#[bench::slot(setup = std::sync::atomic::AtomicU64::default)]
fn plain_pool_io(mut w: std::sync::atomic::AtomicU64) -> std::sync::atomic::AtomicU64 {
    io::plain_pool_io(&mut w);
    w
}

#[library_benchmark]
#[bench::page1(setup = io::atomic_setup)]
fn atomic_io_one(a: io::AtomicIo) -> io::AtomicIo {
    io::atomic_io(&a);
    a
}

#[library_benchmark]
#[bench::slot(setup = io::atomic_pool_setup)]
fn atomic_pool_io(p: atomic_twin::AtomicPool) -> atomic_twin::AtomicPool {
    p.io();
    p
}

library_benchmark_group!(
    name = io_one;
    benchmarks = iommu_io, atomic_io_one, plain_io, pool_io, atomic_pool_io, plain_pool_io
);

#[path = "../pci/tests/support/fleet.rs"]
mod fleet;

/// `benches/topology.rs`'s `topology/cached_verdict` and
/// `topology/classify_one`: the same 1,024 random pairs of the generated
/// fleet, each looked up once in a filled verdict cache, or classified once
/// (`Topology::verdict`). Divide by 1,024 for one pair.
mod verdict {
    use std::hint::black_box;

    use dmaspace::pci::{Bdf, Policy, Topology, VerdictCache};

    use super::fleet;

    /// The fleet, its policy, the pairs and a cache holding all of them.
    pub struct Pairs {
        topo: Topology,
        policy: Policy,
        pairs: Vec<(Bdf, Bdf)>,
        cache: VerdictCache,
    }

    pub fn setup() -> Pairs {
        let topo = fleet::fleet(1000, 1, false);
        let policy = Policy::current();
        let bdfs: Vec<Bdf> = topo.functions().map(|f| f.bdf).collect();
        let n = bdfs.len() as u64;
        let mut rng = fleet::Rng::new(7);
        let pairs: Vec<(Bdf, Bdf)> = (0..1024)
            .map(|_| (bdfs[rng.below(n) as usize], bdfs[rng.below(n) as usize]))
            .collect();
        let mut cache = VerdictCache::new();
        for &(p, c) in &pairs {
            cache.verdict(&topo, p, c, &policy).expect("known");
        }
        Pairs {
            topo,
            policy,
            pairs,
            cache,
        }
    }

    pub fn cached(p: &Pairs) {
        for &(a, b) in black_box(&p.pairs) {
            let v = p.cache.get(&p.topo, a, b, &p.policy).expect("cached");
            black_box(v.distance);
        }
    }

    pub fn classify(p: &Pairs) {
        for &(a, b) in black_box(&p.pairs) {
            black_box(p.topo.verdict(a, b, black_box(&p.policy)).expect("known"));
        }
    }
}

#[library_benchmark]
#[bench::pairs1024(setup = verdict::setup)]
fn cached_verdict(p: verdict::Pairs) -> verdict::Pairs {
    verdict::cached(&p);
    p
}

#[library_benchmark]
#[bench::pairs1024(setup = verdict::setup)]
fn classify_one(p: verdict::Pairs) -> verdict::Pairs {
    verdict::classify(&p);
    p
}

library_benchmark_group!(
    name = topology;
    benchmarks = cached_verdict, classify_one
);

/// Where `gungraun` will look for its runner: `GUNGRAUN_RUNNER` as it was when the
/// bench was compiled (gungraun's `main!` reads it with `option_env!`), else
/// `gungraun-runner` in `PATH`. `None` when it is not there.
fn runner() -> Option<std::path::PathBuf> {
    if let Some(path) = option_env!("GUNGRAUN_RUNNER") {
        return Some(path.into()).filter(|p: &std::path::PathBuf| p.is_file());
    }
    in_path("gungraun-runner")
}

/// `name` in one of the directories of `PATH`.
fn in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Skips the benches, with one line saying how to enable them, on a machine without
/// `gungraun-runner` or valgrind (so `cargo bench --workspace` goes on past this
/// bench), and hands over to gungraun's `main` otherwise. The runner calls this binary
/// back with `--gungraun-run` first: that call goes straight to gungraun.
fn main() {
    let called_back = std::env::args().nth(1).as_deref() == Some("--gungraun-run");
    if !called_back {
        let missing: Vec<&str> = [
            ("gungraun-runner", runner().is_none()),
            ("valgrind", in_path("valgrind").is_none()),
        ]
        .iter()
        .filter(|&&(_, absent)| absent)
        .map(|&(name, _)| name)
        .collect();
        if !missing.is_empty() {
            println!(
                "map_instructions: skipped, {} not found; to enable: valgrind, and `cargo install gungraun-runner --version 0.20.0` (in PATH, or GUNGRAUN_RUNNER=its path when building)",
                missing.join(" and ")
            );
            return;
        }
    }
    gungraun_main();
}

/// gungraun's `main`, under another name.
fn gungraun_main() {
    main!(library_benchmark_groups = map_bvec, io_one, topology);
    main();
}

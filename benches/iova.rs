//! The IOVA allocator against rust-vmm's `vm-allocator` `AddressAllocator`
//! on one seeded request sequence, in the same run (issue 11).
//!
//! - `iova/dmaspace/10k_live`, `iova/vm_allocator/10k_live`: ~10,000 live
//!   ranges of 4 KiB–4 MiB (log-uniform sizes; alignment the granule, the
//!   size rounded up to a power of two, or 2 MiB) in a 16 GiB aperture
//!   (about 70% full). One iteration frees a random live range and
//!   allocates the next request: two operations.
//! - `iova/dmaspace/cached_4k`: one granule allocated and freed through an
//!   `IovaCache` (the per-queue hot path).
//!
//! Before measuring, an untimed audit replays the sequence on each
//! allocator with the naive reference (`tests/support/iova_reference.rs`)
//! beside it, in the measured aperture and in a tight one (10 GiB, about
//! 90% full), and prints how often each refused a request that some hole
//! could hold. `vm-allocator` has no limit argument, so requests here have
//! none (the property tests cover limits). Run: `cargo bench --bench iova`.
#![expect(missing_docs, reason = "criterion_group! generates an undocumented fn")]

#[path = "../tests/support/iova_reference.rs"]
#[expect(dead_code, reason = "the tests use the rest of the reference")]
mod reference;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmaspace::iommu::iova_alloc::IovaAllocator;
use reference::Reference;
use vm_allocator::{AddressAllocator, AllocPolicy, RangeInclusive};

const G: u64 = 4096;
const BASE: u64 = 1 << 32;
const APERTURE: u64 = 16 << 30;
/// The audit's second, tight aperture.
const TIGHT: u64 = 10 << 30;
const LIVE: usize = 10_000;
/// Steady-state steps the audit replays after the warm-up.
const AUDIT_STEPS: usize = 40_000;

/// splitmix64: the seeded sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One request: length and alignment in bytes; and which live range the
/// step frees (an index modulo the live count).
#[derive(Clone, Copy)]
struct Step {
    len: u64,
    align: u64,
    pick: u64,
}

/// The seeded sequence, `n` steps long.
fn sequence(n: usize) -> Vec<Step> {
    let mut rng = Rng(0x5EED_10BA);
    (0..n)
        .map(|_| {
            let e = rng.next() % 11;
            let granules = ((1u64 << e) + rng.next() % (1u64 << e)).min(1024);
            let len = granules * G;
            let align = match rng.next() % 20 {
                0..=11 => G,
                12..=16 => len.next_power_of_two(),
                _ => 2 << 20,
            };
            Step {
                len,
                align,
                pick: rng.next(),
            }
        })
        .collect()
}

/// The two allocators behind one face.
trait Alloc {
    type Handle: Copy;
    fn alloc(&mut self, len: u64, align: u64) -> Option<Self::Handle>;
    fn free(&mut self, h: Self::Handle);
    fn start(h: Self::Handle) -> u64;
}

struct Ours(IovaAllocator);

impl Alloc for Ours {
    type Handle = (u64, u64);
    #[inline]
    fn alloc(&mut self, len: u64, align: u64) -> Option<(u64, u64)> {
        self.0.alloc(len, align, u64::MAX).map(|s| (s, len))
    }
    #[inline]
    fn free(&mut self, (s, len): (u64, u64)) {
        self.0.free(s, len);
    }
    fn start(h: (u64, u64)) -> u64 {
        h.0
    }
}

struct Vmm(AddressAllocator);

impl Alloc for Vmm {
    type Handle = RangeInclusive;
    #[inline]
    fn alloc(&mut self, len: u64, align: u64) -> Option<RangeInclusive> {
        self.0.allocate(len, align, AllocPolicy::FirstMatch).ok()
    }
    #[inline]
    fn free(&mut self, r: RangeInclusive) {
        self.0.free(&r).expect("freeing a live range");
    }
    fn start(h: RangeInclusive) -> u64 {
        h.start()
    }
}

/// A driver of the sequence: warm-up to `LIVE` ranges, then steps.
struct Run<A: Alloc> {
    a: A,
    live: Vec<(A::Handle, u64)>,
    seq: Vec<Step>,
    at: usize,
}

impl<A: Alloc> Run<A> {
    fn new(a: A, seq: Vec<Step>) -> Self {
        let mut run = Self {
            a,
            live: Vec::with_capacity(LIVE + 1),
            seq,
            at: 0,
        };
        while run.live.len() < LIVE && run.at < 2 * LIVE {
            run.alloc_next(&mut |_, _| {});
        }
        run
    }

    /// Allocates the next request; `seen(request, result start)`.
    #[inline]
    fn alloc_next(&mut self, seen: &mut impl FnMut(&Step, Option<u64>)) {
        let s = self.seq[self.at % self.seq.len()];
        self.at += 1;
        let got = self.a.alloc(s.len, s.align);
        seen(&s, got.map(A::start));
        if let Some(h) = got {
            self.live.push((h, s.len));
        }
    }

    /// One steady-state step: free a random live range (if at the target),
    /// allocate the next request.
    #[inline]
    fn step(&mut self, seen: &mut impl FnMut(&Step, Option<u64>)) {
        if self.live.len() >= LIVE {
            let pick = self.seq[self.at % self.seq.len()].pick as usize % self.live.len();
            let (h, _) = self.live.swap_remove(pick);
            self.a.free(h);
        }
        self.alloc_next(seen);
    }
}

/// Replays warm-up and `AUDIT_STEPS` steps beside the reference: (requests,
/// refusals, refusals where a hole could hold the request).
fn audit<A: Alloc>(aperture: u64, make: impl FnOnce(u64) -> A) -> (u64, u64, u64) {
    let seq = sequence(LIVE + AUDIT_STEPS);
    let reference = std::cell::RefCell::new(Reference::new(BASE, aperture, G));
    let (mut requests, mut refused, mut wrongly) = (0, 0, 0);
    let mut seen = |s: &Step, got: Option<u64>| {
        requests += 1;
        match got {
            Some(start) => reference
                .borrow_mut()
                .insert(start, s.len)
                .expect("a valid, non-overlapping range"),
            None => {
                refused += 1;
                if reference.borrow().fits(s.len, s.align, u64::MAX) {
                    wrongly += 1;
                }
            }
        }
    };
    let mut run = Run {
        a: make(aperture),
        live: Vec::new(),
        seq,
        at: 0,
    };
    while run.live.len() < LIVE && run.at < LIVE * 2 {
        run.alloc_next(&mut seen);
    }
    for _ in 0..AUDIT_STEPS {
        if run.live.len() >= LIVE {
            let pick = run.seq[run.at % run.seq.len()].pick as usize % run.live.len();
            let (h, _) = run.live.swap_remove(pick);
            reference.borrow_mut().remove(A::start(h));
            run.a.free(h);
        }
        run.alloc_next(&mut seen);
    }
    (requests, refused, wrongly)
}

fn ours(aperture: u64) -> Ours {
    Ours(IovaAllocator::new(BASE, aperture, G).expect("valid aperture"))
}

fn vmm(aperture: u64) -> Vmm {
    Vmm(AddressAllocator::new(BASE, aperture).expect("valid range"))
}

fn bench(c: &mut Criterion) {
    // The measured aperture, and a tight one (about 90% full) where
    // fragmentation makes real refusals.
    for aperture in [APERTURE, TIGHT] {
        let audits = [
            ("dmaspace", audit(aperture, ours)),
            ("vm_allocator", audit(aperture, vmm)),
        ];
        for (name, (requests, refused, wrongly)) in audits {
            eprintln!(
                "iova audit {name}, {} GiB: {requests} requests, {refused} refused, \
                 {wrongly} of them while a fitting hole existed",
                aperture >> 30
            );
        }
    }

    let mut g = c.benchmark_group("iova");
    g.throughput(Throughput::Elements(2));
    let mut run = Run::new(ours(APERTURE), sequence(1 << 20));
    g.bench_function("dmaspace/10k_live", |b| {
        b.iter(|| {
            run.step(&mut |_, got| {
                black_box(got);
            });
        });
    });
    drop(run);
    let mut run = Run::new(vmm(APERTURE), sequence(1 << 20));
    g.bench_function("vm_allocator/10k_live", |b| {
        b.iter(|| {
            run.step(&mut |_, got| {
                black_box(got);
            });
        });
    });
    drop(run);

    let iova = IovaAllocator::new(BASE, APERTURE, G).expect("valid aperture");
    let q = iova.cache();
    g.bench_function("dmaspace/cached_4k", |b| {
        b.iter(|| {
            let a = q.alloc(black_box(G), G, u64::MAX).expect("space");
            q.free(black_box(a), G);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

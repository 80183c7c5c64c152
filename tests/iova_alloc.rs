//! The IOVA allocator against a naive reference (`support/iova_reference.rs`)
//! on random alloc/free sequences: it never refuses a request some hole can
//! hold (respecting alignment and limit), never overlaps, aligns, stays
//! below the limit, refuses every bad free without changing anything, and
//! can hand out the whole aperture again once everything is freed. With
//! and without per-queue caches in front; then from several threads.
#![cfg(feature = "alloc")]

#[path = "support/iova_reference.rs"]
mod reference;

use dmaspace::iommu::iova_alloc::{IovaAllocator, IovaCache};
use proptest::prelude::*;
use reference::Reference;
use std::sync::atomic::{AtomicU64, Ordering};

const G: u64 = 4096;

/// A request: size in granules (1 to 1024: 4 KiB to 4 MiB, skewed small),
/// alignment (4 KiB to 4 MiB, sometimes 1 GiB) and a limit choice.
#[derive(Clone, Debug)]
struct Req {
    granules: u64,
    align: u64,
    limit: Limit,
}

#[derive(Clone, Copy, Debug)]
enum Limit {
    None,
    /// The aperture's first `1/2^k`, not granule-aligned (a DMA mask below
    /// the top).
    Fraction(u32),
    /// A limit below the aperture or just inside it.
    Odd(u64),
}

#[derive(Clone, Debug)]
enum Op {
    /// Allocate through route 0 (the allocator) or a cache.
    Alloc(Req, usize),
    /// Free the `pick`-th live range (modulo) through a route.
    Free(usize, usize),
    /// Free a random `(start, len)`: bad unless the reference says live.
    Wild(u64, u64),
    /// A bad free of a live range: 0 frees it twice, 1 with one granule
    /// more, 2 from its second granule.
    BadLive(usize, u8),
}

fn req() -> impl Strategy<Value = Req> {
    let granules = prop_oneof![4 => 1u64..=8, 2 => 1u64..=64, 1 => 1u64..=1024];
    let align = prop_oneof![6 => 0u32..=10, 1 => Just(18u32)].prop_map(|s| G << s);
    let limit = prop_oneof![
        4 => Just(Limit::None),
        2 => (1u32..=3).prop_map(Limit::Fraction),
        1 => any::<u64>().prop_map(Limit::Odd),
    ];
    (granules, align, limit).prop_map(|(granules, align, limit)| Req {
        granules,
        align,
        limit,
    })
}

fn ops(routes: usize, wild: bool) -> impl Strategy<Value = Vec<Op>> {
    let wild_weight = u32::from(wild);
    let op = prop_oneof![
        6 => (req(), 0..routes).prop_map(|(r, via)| Op::Alloc(r, via)),
        4 => (any::<usize>(), 0..routes).prop_map(|(p, via)| Op::Free(p, via)),
        wild_weight => (any::<u64>(), 0u64..8).prop_map(|(s, n)| Op::Wild(s, n * G)),
        wild_weight => (any::<usize>(), 0u8..3).prop_map(|(p, k)| Op::BadLive(p, k)),
    ];
    prop::collection::vec(op, 1..400)
}

/// An aperture: a granule-aligned base (low or high) and 16–256 MiB.
fn aperture() -> impl Strategy<Value = (u64, u64)> {
    (
        prop_oneof![0u64..(1 << 24), (1u64 << 36)..(1 << 40)],
        prop_oneof![Just(16u64 << 20), Just(64 << 20), Just(256 << 20)],
    )
        .prop_map(|(b, len)| (b * G, len))
}

/// Runs `ops` through the allocator and `routes - 1` caches, checking every
/// step against the reference.
fn run(base: u64, len: u64, ops: &[Op], routes: usize) -> Result<(), TestCaseError> {
    let a = IovaAllocator::new(base, len, G).expect("valid aperture");
    let caches: Vec<IovaCache<'_>> = (1..routes).map(|_| a.cache()).collect();
    let mut reference = Reference::new(base, len, G);
    let mut live: Vec<(u64, u64)> = Vec::new();
    // A free through route `via` (0: the allocator, else a cache).
    let free = |via: usize, s: u64, bytes: u64| {
        if via % routes == 0 {
            a.try_free(s, bytes)
        } else {
            caches[via % routes - 1].try_free(s, bytes)
        }
    };
    for op in ops {
        match *op {
            Op::Alloc(ref r, via) => {
                let bytes = r.granules * G;
                let limit = match r.limit {
                    Limit::None => u64::MAX,
                    Limit::Fraction(k) => base + (len >> k) - 2,
                    Limit::Odd(x) => base
                        .wrapping_add(x % (len + (1 << 20)))
                        .wrapping_sub(1 << 19),
                };
                let got = if via == 0 {
                    a.alloc(bytes, r.align, limit)
                } else {
                    caches[via - 1].alloc(bytes, r.align, limit)
                };
                match got {
                    Some(s) => {
                        prop_assert_eq!(s % r.align, 0, "alignment of {:#x}", s);
                        prop_assert!(
                            s + bytes - 1 <= limit,
                            "{:#x}+{:#x} above {:#x}",
                            s,
                            bytes,
                            limit
                        );
                        reference.insert(s, bytes).map_err(TestCaseError::fail)?;
                        live.push((s, bytes));
                    }
                    None => prop_assert!(
                        !reference.fits(bytes, r.align, limit),
                        "refused {:?} ({} live) although a hole fits it",
                        r,
                        reference.len()
                    ),
                }
            }
            Op::Free(pick, via) => {
                if live.is_empty() {
                    continue;
                }
                let (s, bytes) = live.swap_remove(pick % live.len());
                if via == 0 {
                    a.try_free(s, bytes)
                } else {
                    caches[via - 1].try_free(s, bytes)
                }
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                reference.remove(s);
            }
            Op::Wild(x, bytes) => {
                // Inside or near the aperture, granule-aligned half the time.
                let s = base
                    .wrapping_add(x % (len + (8 << 20)))
                    .wrapping_sub(4 << 20);
                let s = if x & 1 == 0 { s & !(G - 1) } else { s };
                let ok = reference.is_live(s, bytes);
                let res = free((x >> 40) as usize, s, bytes);
                prop_assert_eq!(
                    res.is_ok(),
                    ok,
                    "wild free {:#x}+{:#x}: {:?}",
                    s,
                    bytes,
                    res
                );
                if ok {
                    reference.remove(s);
                    live.retain(|&(l, _)| l != s);
                }
            }
            Op::BadLive(pick, kind) => {
                if live.is_empty() {
                    continue;
                }
                let i = pick % live.len();
                let (s, bytes) = live[i];
                // The first free and the bad one through any two routes
                // (the same one, or the allocator and a cache, or two caches).
                let (first, second) = (pick / 7, pick / 49);
                let res = match kind {
                    0 => {
                        free(first, s, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        reference.remove(s);
                        live.swap_remove(i);
                        free(second, s, bytes)
                    }
                    1 => free(second, s, bytes + G),
                    // Inside the range: never the start of another one.
                    _ if bytes > G => free(second, s + G, bytes - G),
                    _ => continue,
                };
                prop_assert!(
                    res.is_err(),
                    "bad free {:#x}+{:#x} ({}) accepted",
                    s,
                    bytes,
                    kind
                );
            }
        }
        prop_assert_eq!(a.allocated_bytes(), reference.bytes());
    }
    prop_assert_eq!(a.bad_frees(), 0);
    // Everything freed can be allocated again, as one range.
    for (s, bytes) in live.drain(..) {
        a.try_free(s, bytes)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    prop_assert_eq!(a.allocated_bytes(), 0);
    prop_assert_eq!(a.alloc(len, G, u64::MAX), Some(base));
    drop(caches);
    prop_assert_eq!(a.allocated_bytes(), len);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Shared path only, with wild (mostly bad) frees mixed in.
    #[test]
    fn shared_path_matches_the_reference((base, len) in aperture(), ops in ops(1, true)) {
        run(base, len, &ops, 1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The allocator and two caches, frees (good and bad) through any of
    /// them: parked ranges are taken back before a refusal, and every bad
    /// free is refused at the call, whichever route the first free took.
    #[test]
    fn caches_never_cause_a_refusal((base, len) in aperture(), ops in ops(3, true)) {
        run(base, len, &ops, 3)?;
    }
}

/// A fragmentation pattern next-fit refuses: every other granule taken,
/// then a run of two.
#[test]
fn fit_found_among_many_single_holes() {
    let n = 1 << 14;
    let a = IovaAllocator::new(0, n * G, G).unwrap();
    let all: Vec<u64> = (0..n).map(|_| a.alloc(G, G, u64::MAX).unwrap()).collect();
    for &x in all.iter().filter(|&&x| (x / G) % 2 == 1) {
        a.free(x, G);
    }
    // Free the granule between the two lowest free ones: one 3-granule hole.
    a.free(2 * G, G);
    assert_eq!(a.alloc(2 * G, G, u64::MAX), Some(2 * G));
    assert_eq!(a.alloc(2 * G, G, u64::MAX), None);
    assert_eq!(
        a.alloc(G, 2 * G, u64::MAX),
        None,
        "no even free granule left"
    );
}

/// Four threads with a cache each, plus the shared path, on one
/// allocator: an atomic bitmap of the aperture proves no granule is handed
/// out twice at any moment.
///
/// The aperture is sized so that no request can fail: at most 4 × 64 live
/// ranges of at most 128 granules (32 Ki granules) leave at least 224 Ki
/// granules free in at most 257 holes, so some hole holds 128 granules
/// once the caches are reclaimed. (At 64 MiB, random frees fragment the
/// space enough that a 100-granule request can legitimately find no hole.)
#[test]
fn threads_never_overlap() {
    const GRANULES: u64 = 1 << 18; // 1 GiB
    let bitmap: Vec<AtomicU64> = (0..GRANULES / 64).map(|_| AtomicU64::new(0)).collect();
    let a = IovaAllocator::new(0, GRANULES * G, G).unwrap();
    let mark = |s: u64, n: u64, on: bool| {
        for g in s / G..s / G + n {
            let bit = 1u64 << (g % 64);
            let word = &bitmap[(g / 64) as usize];
            if on {
                assert_eq!(
                    word.fetch_or(bit, Ordering::AcqRel) & bit,
                    0,
                    "granule {g} twice"
                );
            } else {
                assert_ne!(
                    word.fetch_and(!bit, Ordering::AcqRel) & bit,
                    0,
                    "granule {g} not taken"
                );
            }
        }
    };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (a, mark) = (&a, &mark);
            s.spawn(move || {
                let q = a.cache();
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                let mut held: Vec<(u64, u64)> = Vec::new();
                for _ in 0..20_000 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if held.len() < 64 && rng % 3 != 0 {
                        let n = 1 + (rng >> 8) % if rng % 7 == 0 { 128 } else { 8 };
                        let got = if t == 0 && rng % 5 == 0 {
                            a.alloc(n * G, G, u64::MAX)
                        } else {
                            q.alloc(n * G, G, u64::MAX)
                        };
                        let s = got.expect("1 GiB always has a fitting hole here (see above)");
                        mark(s, n, true);
                        held.push((s, n));
                    } else if !held.is_empty() {
                        let (s, n) = held.swap_remove((rng >> 16) as usize % held.len());
                        mark(s, n, false);
                        q.free(s, n * G);
                    }
                }
                for (s, n) in held {
                    mark(s, n, false);
                    q.free(s, n * G);
                }
            });
        }
    });
    assert_eq!(a.allocated_bytes(), 0);
    assert_eq!(a.bad_frees(), 0);
    assert_eq!(a.alloc(GRANULES * G, G, u64::MAX), Some(0));
}

// --- Double frees, on every path (issue 18). A range freed into a cache is
// parked there, ready to be handed out again: a second free through any
// route must be refused, or two owners get the same IOVA.

use dmaspace::iommu::iova_alloc::FreeError;

/// The one IOVA `a` of one granule, refused as a double free.
fn double(a: u64) -> Result<(), FreeError> {
    Err(FreeError::NotAllocated { start: a, len: G })
}

#[test]
fn double_free_cache_then_allocator_is_refused() {
    let iova = IovaAllocator::new(0, 1 << 20, G).unwrap();
    let q = iova.cache();
    let a = q.alloc(G, G, u64::MAX).unwrap();
    q.try_free(a, G).unwrap();
    assert_eq!(iova.try_free(a, G), double(a));
    // Nothing changed: the cache hands `a` out once, the tree never.
    assert_eq!(q.alloc(G, G, u64::MAX), Some(a));
    assert_ne!(iova.alloc(G, G, u64::MAX), Some(a));
    assert_eq!(iova.bad_frees(), 0);
}

#[test]
fn double_free_allocator_then_cache_is_refused() {
    let iova = IovaAllocator::new(0, 1 << 20, G).unwrap();
    let q = iova.cache();
    let a = iova.alloc(G, G, u64::MAX).unwrap();
    iova.try_free(a, G).unwrap();
    assert_eq!(q.try_free(a, G), double(a));
    // The range is free in the tree only: the next allocation gets it once.
    let b = iova.alloc(G, G, u64::MAX).unwrap();
    assert_eq!(b, a);
    assert_ne!(q.alloc(G, G, u64::MAX), Some(a));
}

#[test]
fn double_free_through_two_caches_is_refused() {
    let iova = IovaAllocator::new(0, 1 << 20, G).unwrap();
    let (q1, q2) = (iova.cache(), iova.cache());
    let a = q1.alloc(G, G, u64::MAX).unwrap();
    q1.try_free(a, G).unwrap();
    assert_eq!(q2.try_free(a, G), double(a));
    assert_eq!(q1.alloc(G, G, u64::MAX), Some(a));
    assert_ne!(q2.alloc(G, G, u64::MAX), Some(a));
}

#[test]
fn double_free_after_the_range_moved_to_the_depot_is_refused() {
    // 3 magazines of 32 frees: the first ones leave the cache for the
    // per-size depot, where a cache's own look-up cannot see them.
    let iova = IovaAllocator::new(0, 1 << 30, G).unwrap();
    let q = iova.cache();
    let got: Vec<u64> = (0..96).map(|_| q.alloc(G, G, u64::MAX).unwrap()).collect();
    for &a in &got {
        q.try_free(a, G).unwrap();
    }
    for &a in &got {
        assert_eq!(q.try_free(a, G), double(a), "{a:#x}");
        assert_eq!(iova.try_free(a, G), double(a), "{a:#x}");
    }
    assert_eq!(iova.allocated_bytes(), 0);
}

#[test]
fn double_free_with_another_length_through_a_cache_is_refused() {
    let iova = IovaAllocator::new(0, 1 << 20, G).unwrap();
    let q = iova.cache();
    let a = q.alloc(2 * G, G, u64::MAX).unwrap();
    assert_eq!(
        q.try_free(a, G),
        Err(FreeError::WrongLength {
            start: a,
            len: G,
            allocated: 2 * G
        })
    );
    q.try_free(a, 2 * G).unwrap();
    assert_eq!(
        q.try_free(a, 2 * G),
        Err(FreeError::NotAllocated {
            start: a,
            len: 2 * G
        })
    );
    // Never allocated at all, through a cache.
    let never = (1 << 20) - G;
    assert_ne!(never, a);
    assert_eq!(q.try_free(never, G), double(never));
}

#[test]
fn double_free_across_threads_is_refused_exactly_once() {
    // Two queues on two threads both free every range the first handed
    // out: for each range exactly one free is accepted.
    let iova = IovaAllocator::new(0, 1 << 30, G).unwrap();
    let q0 = iova.cache();
    let got: Vec<u64> = (0..256)
        .map(|_| q0.alloc(G, G, u64::MAX).unwrap())
        .collect();
    let accepted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let q = iova.cache();
            let (got, accepted) = (&got, &accepted);
            s.spawn(move || {
                for &a in got {
                    if q.try_free(a, G).is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(accepted.load(Ordering::Relaxed), got.len() as u64);
    assert_eq!(iova.allocated_bytes(), 0);
    assert_eq!(iova.bad_frees(), 0);
}

//! The mapper against a naive per-page reference, across the software IOMMU and
//! direct mapping, every route and direction, random device limits and request
//! shapes: every byte the device may reach through the result is exactly the bytes
//! granted, in order, no more (scanning the whole IOVA aperture), and nothing stays
//! reachable or reserved after the unmap or after an error
//! (`tests/support/map_check.rs`, shared with the fuzz target `map_plan`).

use std::cell::RefCell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

#[path = "support/map_check.rs"]
mod map_check;
use map_check::{Outcome, SegSpec, Spec};

fn seg() -> impl Strategy<Value = SegSpec> {
    prop_oneof![
        6 => (any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>()).prop_map(
            |(sub_off, sub_len, off, len)| SegSpec::Host { sub_off, sub_len, off, len }
        ),
        // Whole pages of a whole chunk: valid through the IOMMU too.
        16 => (0u16..3, 1u16..4).prop_map(|(p, n)| SegSpec::Host {
            sub_off: 0,
            sub_len: u16::MAX,
            off: p * 4096,
            len: (p + n).min(4) * 4096 - p * 4096 - 1,
        }),
        4 => (any::<u32>(), any::<u32>()).prop_map(|(off, len)| SegSpec::P2p { off, len }),
        6 => (0u32..64, 1u32..4).prop_map(|(p, n)| SegSpec::P2p { off: p * 4096, len: n * 4096 - 1 }),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(off, len)| SegSpec::Foreign { off, len }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(seg(), 1..10),
        prop::sample::select(vec![64u8, 64, 64, 64, 64, 64, 48, 36, 33, 32, 28]),
        prop::sample::select(vec![0u32, 0, 0, 4096, 0x1800, 512, 65536]),
        prop::sample::select(vec![0u8, 0, 0, 12, 13, 16]),
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2, 4, 8]),
        0u8..3,
        any::<bool>(),
        0u8..3,
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2, 4, 16]),
        prop::sample::select(vec![1024u16, 1024, 1024, 64, 8, 2]),
    )
        .prop_map(
            |(
                segs,
                mask_bits,
                max_seg,
                boundary_bits,
                max_segments,
                route,
                iommu,
                dir,
                capacity,
                aperture_pages,
            )| Spec {
                segs,
                mask_bits,
                max_seg,
                boundary_bits,
                max_segments,
                route,
                iommu,
                dir,
                capacity,
                aperture_pages,
            },
        )
}

/// The seed the suite runs with, so that no run of it fails by chance.
const SEED: u64 = 0x6d61_705f_7265_6631;

/// A fixed seed unless the caller asks for another: `PROPTEST_RNG_SEED=N`
/// (proptest's own variable) or `DMASPACE_PROPTEST_RANDOM=1` to explore.
fn rng_seed() -> RngSeed {
    if std::env::var_os("DMASPACE_PROPTEST_RANDOM").is_some() {
        RngSeed::Random
    } else if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
        Config::default().rng_seed
    } else {
        RngSeed::Fixed(SEED)
    }
}

#[test]
fn the_device_reaches_exactly_the_bytes_granted() {
    let mut runner = TestRunner::new(Config {
        cases: 1024,
        rng_seed: rng_seed(),
        failure_persistence: None,
        ..Config::default()
    });
    let stats: RefCell<BTreeMap<String, usize>> = RefCell::default();
    runner
        .run(&spec(), |s| {
            let outcome = map_check::check(&s).map_err(TestCaseError::fail)?;
            let key = match outcome {
                Outcome::Mapped(_) => format!("mapped, iommu {}", s.iommu),
                Outcome::Refused(e) => {
                    let name = format!("{e:?}");
                    format!(
                        "refused: {}",
                        name.split([' ', '{', '(']).next().unwrap_or("")
                    )
                }
            };
            *stats.borrow_mut().entry(key).or_default() += 1;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let stats = stats.into_inner();
    println!("{stats:#?}");
    // Both translations map often enough for the checks to mean something, and
    // the refusals are varied. Over 200 random seeds the IOMMU mapped 50 to 96
    // of the 1,024 cases (median 74): 32 leaves a margin for any seed.
    for iommu in [true, false] {
        let mapped = stats
            .get(&format!("mapped, iommu {iommu}"))
            .copied()
            .unwrap_or(0);
        assert!(
            mapped >= 32,
            "iommu {iommu}: only {mapped} mapped: {stats:#?}"
        );
    }
    assert!(stats.len() >= 6, "{stats:#?}");
}

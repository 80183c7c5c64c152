//! No public call panics on arithmetic at the top of an address space
//! (issue 18): sizes, addresses and limits at and near `u64::MAX` get the
//! crate's typed errors, or work, in debug builds where an overflow would
//! panic. Property tests with a fixed seed, plus the two cases the audit
//! found.
#![cfg(feature = "alloc")]

use std::path::Path;

use dmaspace::dir::IommuPerm;
use dmaspace::error::MapError;
use dmaspace::iommu::iova_alloc::IovaAllocator;
use dmaspace::pci::{Topology, sysfs};
use dmaspace::prelude::*;
use dmaspace::vec::SegOf;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

brand!(Dom);
brand!(Cmb);
brand!(Client);

const G: u64 = 4096;

/// A fixed seed: the same cases on every run and in CI.
fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x7000_f5ace),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A `u64` at the top of the space (mostly), or anywhere, or small.
fn top() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..=(1 << 22)).prop_map(|d| u64::MAX - d),
        1 => (0u64..=64).prop_map(|k| u64::MAX.checked_shr(k as u32).unwrap_or(0)),
        1 => any::<u64>(),
        1 => 0u64..=(1 << 22),
    ]
}

#[test]
fn a_domain_refuses_a_range_larger_than_any_aperture() {
    let dom = IommuDomain::<Dom>::software(0, 64 * G).unwrap();
    for len in [u64::MAX - 1, u64::MAX, u64::MAX - G + 2, 1 << 63] {
        assert_eq!(dom.alloc(len).unwrap_err(), MapError::IovaExhausted { len });
    }
    assert_eq!(dom.reserved_bytes(), 0);
}

fn machine() -> Machine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pci/tests/fixtures/synthetic/q35/root");
    let topo: Topology = sysfs::load(&root).unwrap();
    // SAFETY: a captured tree replayed as a simulation; nothing reaches hardware.
    unsafe { Machine::assume(topo) }
}

/// Maps all of a provider BAR whose bus addresses end at `2^64 - end_gap`,
/// for a client with `limits`, through the switch (a bus-address route);
/// the segments' (bus address, length).
fn map_bar_at_the_top(
    size: u64,
    end_gap: u64,
    limits: DmaLimits,
) -> Result<Vec<(u64, u64)>, MapError> {
    const A: Bdf = Bdf::new(0, 3, 0, 0);
    const B: Bdf = Bdf::new(0, 4, 0, 0);
    let m = machine();
    let bus_start = 0u64.wrapping_sub(size).wrapping_sub(end_gap);
    // SAFETY: a simulated BAR whose bus window is the top of the bus space.
    let p = unsafe {
        m.provider::<Cmb>(
            A,
            2,
            PhysAddr::new(0xfe00_0000),
            BusAddr::new_unchecked(bus_start),
            size,
        )
    }
    .unwrap();
    let client = m.device::<Client>(B, limits).unwrap();
    let route = P2pRoute::classify(&m, &p, &client).unwrap();
    let a = p.alloc(size).unwrap();
    // SAFETY: the simulated client reaches simulated memory by address.
    let mapper = unsafe { Mapper::direct(&client) }.unwrap();
    mapper.map_bvec::<ToDevice, _, _>(
        &mut [a.seg().into_bvec_seg()],
        &route,
        SegBuf::with_capacity(1),
        |v| {
            let v = v.sync();
            v.segments(client.id())
                .unwrap()
                .iter()
                .map(|s| (s.addr().unwrap().as_u64(), s.len()))
                .collect()
        },
    )
}

#[test]
fn a_bar_ending_at_the_top_of_the_bus_space_is_cut_to_the_limits() {
    let limits = DmaLimits::BITS_64
        .max_segment_size(0x4000)
        .segment_boundary(0xffff);
    let segs = map_bar_at_the_top(1 << 16, 0, limits).unwrap();
    assert_eq!(segs.len(), 4);
    assert_eq!(segs[3], (u64::MAX - 0x3fff, 0x4000));
}

proptest! {
    #![proptest_config(config(512))]

    /// `IommuDomain::alloc` and `IovaRange::link` with any length and
    /// address: an error or a range, never a panic.
    #[test]
    fn domain_calls_at_the_top(len in top(), addr in top(), link_len in top(), off in 0u64..G) {
        let dom = IommuDomain::<Dom>::software(1 << 40, 64 * G).unwrap();
        let _ = dom.alloc(len);
        let r = dom.alloc(4 * G).unwrap();
        let a = addr & !(G - 1) | off;
        // SAFETY: the software IOMMU only records the addresses; nothing
        // reaches memory.
        let _ = unsafe { r.link(a, link_len, IommuPerm::READ) };
        r.sync();
        let _ = dom.translate(addr, IommuPerm::READ);
        drop(r);
        prop_assert_eq!(dom.reserved_bytes(), 0);
    }

    /// The allocator, its caches, frees: apertures, lengths, alignments,
    /// limits and starts at the top of the 64-bit space.
    #[test]
    fn allocator_calls_at_the_top(
        base in top(), len in top(), shift in 0u32..=63,
        req in top(), align in top(), limit in top(), start in top(),
    ) {
        let granule = 1u64 << shift;
        let _ = IovaAllocator::new(base, len, granule);
        // An aperture that ends at the top: the last granules below 2^64,
        // with granules of 1 byte to 1 MiB.
        let n = 1 + req % 64;
        let g = 1u64 << (shift % 21);
        let top_base = (u64::MAX - n * g + 1) & !(g - 1);
        let iova = IovaAllocator::new(top_base, u64::MAX - top_base + 1 - g, g);
        let Ok(iova) = iova else { return Ok(()) };
        let q = iova.cache();
        for l in [req, n * g, 1] {
            if let Some(x) = iova.alloc(l, align, limit) {
                prop_assert!(x >= top_base);
                prop_assert!(iova.try_free(x, l).is_ok());
            }
            if let Some(x) = q.alloc(l, align, limit) {
                prop_assert!(q.try_free(x, l).is_ok());
            }
        }
        let _ = iova.try_free(start, req);
        let _ = q.try_free(start, req);
        drop(q);
        prop_assert_eq!(iova.allocated_bytes(), 0);
    }

    /// A bus-address segment of a BAR at the top of the bus space, cut to
    /// any segment limits: mapped, or refused with a typed error.
    #[test]
    fn bus_segments_at_the_top(
        pages in 1u64..=16, gap in prop_oneof![Just(0u64), 0u64..=(1 << 16)],
        max_seg in top(), boundary in top(), align in top(), max_segs in 0usize..64,
    ) {
        let limits = DmaLimits::BITS_64
            .max_segment_size(max_seg)
            .segment_boundary(boundary)
            .alignment(align)
            .max_segments(max_segs);
        match map_bar_at_the_top(pages * G, gap, limits) {
            Ok(segs) => {
                let total: u64 = segs.iter().map(|s| s.1).sum();
                prop_assert_eq!(total, pages * G);
            }
            Err(e) => prop_assert!(matches!(
                e,
                MapError::TooManySegments { .. } | MapError::Misaligned { .. } | MapError::Overflow { .. }
            ), "{e:?}"),
        }
    }
}

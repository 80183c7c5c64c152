//! A `map_bvec` request built from the input (host buffers and segments, P2P
//! segments of the route's provider and of another, the device's limits, the route,
//! IOMMU or direct, the direction, caller-provided capacity, the IOVA aperture),
//! mapped, and every property checked by `tests/support/map_check.rs`: no panic; on
//! success every segment within the device's mask and limits, lengths summing to
//! the request, each IOVA translating back to the right physical address with the
//! direction's rights, no granule reachable that was not granted; after the call,
//! or after an error, nothing reserved and nothing reachable.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/map_check.rs"]
#[allow(dead_code)]
mod map_check;
use map_check::{SegSpec, Spec};

fn spec(u: &mut Unstructured<'_>) -> Result<Spec> {
    let n = u.int_in_range(1..=map_check::MAX_SEGS)?;
    let mut segs = Vec::with_capacity(n);
    for _ in 0..n {
        segs.push(match u.int_in_range(0..=9u8)? {
            0..=5 => SegSpec::Host {
                sub_off: u.arbitrary()?,
                sub_len: u.arbitrary()?,
                off: u.arbitrary()?,
                len: u.arbitrary()?,
            },
            6..=8 => SegSpec::P2p {
                off: u.arbitrary()?,
                len: u.arbitrary()?,
            },
            _ => SegSpec::Foreign {
                off: u.arbitrary()?,
                len: u.arbitrary()?,
            },
        });
    }
    Ok(Spec {
        segs,
        mask_bits: u.arbitrary()?,
        max_seg: u.arbitrary()?,
        boundary_bits: u.arbitrary()?,
        max_segments: u.arbitrary()?,
        route: u.arbitrary()?,
        iommu: u.arbitrary()?,
        dir: u.arbitrary()?,
        capacity: u.arbitrary()?,
        aperture_pages: u.arbitrary()?,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(spec) = spec(&mut u) else { return };
    if let Err(broken) = map_check::check(&spec) {
        panic!("{broken}\n{spec:#?}");
    }
});

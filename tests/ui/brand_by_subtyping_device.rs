//! Two brands that are one type up to a higher-ranked lifetime are still
//! two brands: a device of one kind does not become a device of the other
//! by subtyping, so its mapper cannot hand out the other kind's addresses
//! (every brand parameter is invariant).
#![expect(
    coherence_leak_check,
    reason = "the two impls differ only by a higher-ranked lifetime, as the attack needs"
)]
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use core::marker::PhantomData;

struct Kind<T>(PhantomData<T>);
/// `for<'a> fn(&'a ())` is a subtype of `fn(&'static ())`.
type MyNic = Kind<for<'a> fn(&'a ())>;
type TheirNvme = Kind<fn(&'static ())>;
impl Brand for MyNic {
    const NAME: &'static str = "MyNic";
}
impl Brand for TheirNvme {
    const NAME: &'static str = "TheirNvme";
}

fn nvme_mapper<'d>(dev: &'d Device<'static, TheirNvme>) -> Mapper<'d, TheirNvme> {
    direct(dev)
}

fn main() {
    // SAFETY: never reaches hardware.
    let nic = unsafe { Device::<MyNic>::new_unchecked(NIC_FN, DmaLimits::BITS_64) };
    let _m = nvme_mapper(&nic);
}

//! Two brands that are one type up to a higher-ranked lifetime are still
//! two brands: a P2P provider of one kind does not become a provider of
//! the other by subtyping (every brand parameter is invariant).
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
type MyCmb = Kind<for<'a> fn(&'a ())>;
type TheirCmb = Kind<fn(&'static ())>;
impl Brand for MyCmb {
    const NAME: &'static str = "MyCmb";
}
impl Brand for TheirCmb {
    const NAME: &'static str = "TheirCmb";
}

fn their_provider(_p: &Provider<TheirCmb>) {}

fn main() {
    // SAFETY: a test provider; nothing reaches hardware.
    let mine = unsafe {
        Provider::<MyCmb>::new(NVME_FN, 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)
    }
    .unwrap();
    their_provider(&mine);
}

//! Two brands that are one type up to a higher-ranked lifetime are still
//! two brands: an IOVA of one domain does not become an IOVA of the other
//! by subtyping (every brand parameter is invariant).
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
type Mine = Kind<for<'a> fn(&'a ())>;
type Theirs = Kind<fn(&'static ())>;
impl Brand for Mine {
    const NAME: &'static str = "Mine";
}
impl Brand for Theirs {
    const NAME: &'static str = "Theirs";
}

fn program_their_domain(_iova: Iova<'_, Theirs>) {}

fn main() {
    let dom = IommuDomain::<Mine>::software(0, 64 * 4096).unwrap();
    let range = dom.alloc(4096).unwrap();
    program_their_domain(range.start());
}

//! An IOVA of one IOMMU domain is not an IOVA of another.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

brand!(Other);

fn program_other_domain(_iova: Iova<'_, Other>) {}

fn main() {
    let dom = domain();
    let range = dom.alloc(4096).unwrap();
    program_other_domain(range.start());
}

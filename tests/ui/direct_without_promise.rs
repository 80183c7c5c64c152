//! "This device reaches memory by physical address (no IOMMU)" is a promise: a direct mapper takes `unsafe`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let _m = Mapper::direct(&nic);
}

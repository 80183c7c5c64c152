//! Linking a physical address into an IOMMU range grants a device that page: it takes `unsafe`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::dir::IommuPerm;

fn main() {
    let dom = domain();
    let range = dom.alloc(4096).unwrap();
    let _ = range.link(0x1000, 4096, IommuPerm::WRITE);
}

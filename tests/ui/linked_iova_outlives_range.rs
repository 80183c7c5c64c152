//! The IOVA a link returns borrows its range too: dropping the range
//! unlinks and frees it, and the IOVA cannot be kept past that.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::dir::IommuPerm;

fn program_device(_iova: Iova<'_, Dom>) {}

fn main() {
    let dom = domain();
    let range = dom.alloc(4096).unwrap();
    // SAFETY: a simulated page this program owns for as long as the range lives.
    let iova = unsafe { range.link(0x1000, 4096, IommuPerm::READ) }.unwrap();
    range.sync();
    drop(range);
    program_device(iova);
}

//! Syncing writes each entry back: racing another owner's unmap of the same
//! range, it would bring back a mapping of memory already given back. A
//! backend's `sync` takes `unsafe` (the caller promises the range is its).
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::backend::IommuBackend;

fn main() {
    let dom = domain();
    dom.backend().sync(0, 64 * 4096);
}

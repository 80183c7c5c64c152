//! One buffer cannot be in two live mappings (or twice in one request): what
//! dma-debug reports as "overlapping mappings aren't supported".
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        m.map_host::<FromDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |w| w.unmap())
            .unwrap();
        v.unmap();
    })
    .unwrap();
}

//! One segment put twice into one request: the device would get the same
//! memory at two addresses of one mapping (dma-debug: "overlapping
//! mappings"). A `HostSeg` is neither `Copy` nor `Clone`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    let seg = page.dma();
    m.map_host::<FromDevice, _>(&mut [seg, seg], SegBuf::with_capacity(2), |v| v.unmap())
        .unwrap();
}

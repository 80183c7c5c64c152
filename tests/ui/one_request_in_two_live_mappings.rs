//! One request mapped again (for another device) while its first mapping
//! lives: mappers borrow the request exclusively for as long as the
//! mapping lives.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let nvme = nvme();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let mut request = [page.dma()];
    let to_nic = direct(&nic);
    let to_nvme = direct(&nvme);
    to_nic
        .map_host::<ToDevice, _>(&mut request, SegBuf::with_capacity(1), |v| {
            to_nvme
                .map_host::<FromDevice, _>(&mut request, SegBuf::with_capacity(1), |w| w.unmap())
                .unwrap();
            v.unmap();
        })
        .unwrap();
}

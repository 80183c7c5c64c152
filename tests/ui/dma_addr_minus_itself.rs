//! `(a - a.as_u64()) + 0xfee0_0000` cannot mint an MSI doorbell from a legitimate address.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        let a = v.segments(nic.id()).unwrap()[0].addr().unwrap();
        let _doorbell = (a - a.as_u64()) + 0xfee0_0000;
    })
    .unwrap();
}

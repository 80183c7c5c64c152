//! IOVAs reach the device only after the range was synced.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let dom = domain();
    let m = Mapper::iommu(&nic, &dom).unwrap();
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let _descriptors = v.segments(nic.id());
    })
    .unwrap();
}

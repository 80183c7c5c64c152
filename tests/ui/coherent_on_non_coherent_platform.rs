//! Coherent memory needs cache-coherent DMA: a mapper with cache maintenance has no `map_coherent`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

struct Flush;
impl dmaspace::host::CacheMaintenance for Flush {
    fn sync_for_device<D: Direction>(&self, _: &dmaspace::vec::HostSeg<'_>) {}
    fn sync_for_cpu<D: Direction>(&self, _: &dmaspace::vec::HostSeg<'_>) {}
}

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic).with_cache(Flush);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let _ = m.map_coherent::<u32, _>(buf);
}

//! A device address of an owned mapping cannot outlive its unmap (the buffer comes back; the address must not).
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let mapped = m.map_buf::<ToDevice, _>(buf).unwrap();
    let addr = mapped.segments(nic.id()).unwrap()[0].addr();
    let _buf = mapped.unmap();
    let _ = addr;
}

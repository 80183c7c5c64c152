//! A device-owned mapping gives the CPU no bytes: the device may be writing them.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let mut mapped = m.map_buf::<FromDevice, _>(buf).unwrap();
    let _ = mapped.pages();
}

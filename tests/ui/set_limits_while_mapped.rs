//! A device's limits cannot change while a mapping made under them lives: the owned mapping borrows the mapper, which borrows the device.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, mut nic) = setup();
    let m = direct(&nic);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let mapped = m.map_buf::<ToDevice, _>(buf).unwrap();
    nic.set_limits(DmaLimits::BITS_32);
    let _buf = mapped.unmap();
}

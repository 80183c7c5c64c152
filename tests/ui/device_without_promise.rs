//! "This BDF is that device" is a promise: a device without a machine takes `unsafe`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let _nic = Device::<Nic>::new_unchecked(NIC_FN, DmaLimits::BITS_64);
}

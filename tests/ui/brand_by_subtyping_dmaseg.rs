//! Two brands that are one type up to a higher-ranked lifetime are still
//! two brands: segments mapped for one kind of device do not become
//! segments of the other by subtyping (every brand parameter is invariant).
#![expect(
    coherence_leak_check,
    reason = "the two impls differ only by a higher-ranked lifetime, as the attack needs"
)]
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use core::marker::PhantomData;
use dmaspace::vec::DmaSeg;

struct Kind<T>(PhantomData<T>);
/// `for<'a> fn(&'a ())` is a subtype of `fn(&'static ())`.
type MyNic = Kind<for<'a> fn(&'a ())>;
type TheirNvme = Kind<fn(&'static ())>;
impl Brand for MyNic {
    const NAME: &'static str = "MyNic";
}
impl Brand for TheirNvme {
    const NAME: &'static str = "TheirNvme";
}

fn nvme_submit(_prps: &[DmaSeg<TheirNvme, ToDevice>]) {}

fn main() {
    // SAFETY: never reaches hardware.
    let nic = unsafe { Device::<MyNic>::new_unchecked(NIC_FN, DmaLimits::BITS_64) };
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m = direct(&nic);
    m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        nvme_submit(v.segments(nic.id()).unwrap());
    })
    .unwrap();
}

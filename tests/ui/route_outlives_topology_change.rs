//! A route witness borrows the topology it came from: the topology cannot change while the route is used.
use dmaspace::device::Device;
use dmaspace::provider::Provider;
use dmaspace::route::P2pRoute;
use dmaspace::topology::{AcsState, Bdf, PciFunction, Policy, Topology};
use dmaspace::{brand, BusAddr, PhysAddr};

brand!(Cmb);
brand!(Nic);

fn main() {
    let (a, b) = (Bdf::new(0, 0, 3, 0), Bdf::new(0, 0, 4, 0));
    let mut topo = Topology::builder()
        .function(PciFunction::new(a, 0x1b36, 0x0010))
        .function(PciFunction::new(b, 0x1b36, 0x0010))
        .build()
        .unwrap();
    // SAFETY: a test provider; nothing reaches hardware.
    let cmb = unsafe { Provider::<Cmb>::new(a, 2, PhysAddr::new(0x1000), BusAddr::new_unchecked(0x1000), 1 << 20) }.unwrap();
    let nic = Device::<Nic>::new(b, u64::MAX).unwrap();
    let route = P2pRoute::classify(&topo, &Policy::default(), &cmb, &nic);
    topo.set_acs(a, AcsState::Unknown).unwrap();
    let _ = route;
}

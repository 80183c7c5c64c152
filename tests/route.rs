//! Route witnesses from real topologies (sysfs fixture trees): the typed
//! route matches the kernel's verdict, NOT_SUPPORTED is an error, and an
//! unreadable ACS never yields a bus-address route.

use std::path::Path;

use dmaspace::device::Device;
use dmaspace::provider::Provider;
use dmaspace::route::{P2pRoute, RouteError};
use dmaspace::topology::{Bdf, CpuInfo, MapType, PathAcs, Policy, Topology, sysfs};
use dmaspace::{BusAddr, PhysAddr, brand};

fn load(name: &str) -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/synthetic")
        .join(name)
        .join("root");
    sysfs::load(&root).unwrap_or_else(|e| panic!("{name}: {e}"))
}

// The brief's topology: A on DSP1, B on DSP2 of a switch under RP1; C under RP2.
const A: Bdf = Bdf::new(0, 3, 0, 0);
const B: Bdf = Bdf::new(0, 4, 0, 0);
const C: Bdf = Bdf::new(0, 5, 0, 0);

fn provider_at<PB: dmaspace::Brand>(bdf: Bdf) -> Provider<PB> {
    // SAFETY: a test provider; nothing reaches hardware.
    unsafe {
        Provider::new(
            bdf,
            2,
            PhysAddr::new(0xfe00_0000),
            BusAddr::new_unchecked(0xfe00_0000),
            1 << 20,
        )
    }
    .unwrap()
}

#[test]
fn switch_siblings_get_a_switch_route() {
    brand!(Pa);
    brand!(Cb);
    let topo = load("q35");
    let p = provider_at::<Pa>(A);
    let c = Device::<Cb>::new(B, u64::MAX).unwrap();
    let r = P2pRoute::classify(&topo, &Policy::default(), &p, &c).unwrap();
    assert!(matches!(r, P2pRoute::ViaSwitch(_)), "{r:?}");
    assert_eq!(r.distance(), 4);
}

#[test]
fn not_supported_is_an_error_and_amd_takes_the_host_bridge() {
    brand!(Pa);
    brand!(Cc);
    let topo = load("q35");
    let p = provider_at::<Pa>(A);
    let c = Device::<Cc>::new(C, u64::MAX).unwrap();
    match P2pRoute::classify(&topo, &Policy::default(), &p, &c) {
        Err(RouteError::NotSupported(v)) => {
            assert_eq!(
                (v.map_type, v.kernel_distance()),
                (MapType::NotSupported, -1)
            );
        }
        other => panic!("expected NotSupported, got {other:?}"),
    }
    let mut zen = topo.clone();
    zen.set_cpu(CpuInfo::amd_zen());
    let r = P2pRoute::classify(&zen, &Policy::default(), &p, &c).unwrap();
    assert!(matches!(r, P2pRoute::ViaHostBridge(_)), "{r:?}");
    assert_eq!(r.distance(), 6);
}

#[test]
fn same_device_is_its_own_route_even_when_the_kernel_says_bus_addr() {
    brand!(Pa);
    brand!(Ca);
    let topo = load("q35");
    let p = provider_at::<Pa>(A);
    let c = Device::<Ca>::new(A, u64::MAX).unwrap();
    let v = topo.verdict(A, A, &Policy::default()).unwrap();
    assert_eq!((v.map_type, v.kernel_distance()), (MapType::BusAddr, 0));
    let r = P2pRoute::classify(&topo, &Policy::default(), &p, &c).unwrap();
    assert!(matches!(r, P2pRoute::SameDevice(_)), "{r:?}");
}

#[test]
fn unknown_acs_never_gives_a_bus_address_route() {
    brand!(Pa);
    brand!(Cb);
    let topo = load("q35-nonroot");
    let p = provider_at::<Pa>(A);
    let c = Device::<Cb>::new(B, u64::MAX).unwrap();
    match P2pRoute::classify(&topo, &Policy::default(), &p, &c) {
        Err(RouteError::NotSupported(v)) => assert_eq!(v.acs, PathAcs::Unknown),
        other => panic!("expected NotSupported with unknown ACS, got {other:?}"),
    }
}

#[test]
fn unknown_function_is_a_topology_error() {
    brand!(Pa);
    brand!(Cx);
    let topo = load("q35");
    let p = provider_at::<Pa>(A);
    let c = Device::<Cx>::new(Bdf::new(0, 0x42, 0, 0), u64::MAX).unwrap();
    assert!(matches!(
        P2pRoute::classify(&topo, &Policy::default(), &p, &c),
        Err(RouteError::Topology(_))
    ));
}

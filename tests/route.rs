//! Route witnesses from real topologies (sysfs fixture trees): the typed
//! route matches the kernel's verdict, NOT_SUPPORTED is an error, an
//! unreadable ACS never yields a bus-address route, and only a machine's
//! own functions get a route on it.

use std::path::Path;

use dmaspace::error::ClaimError;
use dmaspace::prelude::*;
use dmaspace::provider::ProviderError;
use dmaspace::route::RouteError;
use dmaspace::topology::{CpuInfo, MapType, PathAcs, Policy, Topology, sysfs};

fn load(name: &str) -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/synthetic")
        .join(name)
        .join("root");
    sysfs::load(&root).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn machine(topo: Topology) -> Machine {
    // SAFETY: a captured tree replayed as a simulation; nothing reaches hardware.
    unsafe { Machine::assume(topo) }
}

// The brief's topology: A on DSP1, B on DSP2 of a switch under RP1; C under RP2.
const A: Bdf = Bdf::new(0, 3, 0, 0);
const B: Bdf = Bdf::new(0, 4, 0, 0);
const C: Bdf = Bdf::new(0, 5, 0, 0);

brand!(Cmb);
brand!(Client);

fn provider_at(m: &Machine, bdf: Bdf) -> Provider<Cmb> {
    // SAFETY: a test provider of the simulated machine; nothing reaches hardware.
    unsafe {
        m.provider(
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
fn switch_siblings_get_a_bus_address_route() {
    let m = machine(load("q35"));
    let p = provider_at(&m, A);
    let c = m.device::<Client>(B, DmaLimits::BITS_64).unwrap();
    let r = P2pRoute::classify(&m, &p, &c).unwrap();
    assert!(matches!(r, P2pRoute::ViaBusAddr(_)), "{r:?}");
    assert_eq!((r.distance(), r.kernel_name()), (4, "bus_addr"));
}

#[test]
fn not_supported_is_an_error_and_amd_takes_the_host_bridge() {
    let m = machine(load("q35"));
    let p = provider_at(&m, A);
    let c = m.device::<Client>(C, DmaLimits::BITS_64).unwrap();
    match P2pRoute::classify(&m, &p, &c) {
        Err(RouteError::NotSupported(v)) => {
            assert_eq!(
                (v.map_type, v.kernel_distance()),
                (MapType::NotSupported, -1)
            );
        }
        other => panic!("expected NotSupported, got {other:?}"),
    }
    let mut zen = load("q35");
    zen.set_cpu(CpuInfo::amd_zen());
    let m = machine(zen);
    let p = provider_at(&m, A);
    let c = m.device::<Client>(C, DmaLimits::BITS_64).unwrap();
    let r = P2pRoute::classify(&m, &p, &c).unwrap();
    assert!(matches!(r, P2pRoute::ViaHostBridge(_)), "{r:?}");
    assert_eq!((r.distance(), r.kernel_name()), (6, "thru_host_bridge"));
}

#[test]
fn same_device_is_its_own_route_even_when_the_kernel_says_bus_addr() {
    let m = machine(load("q35"));
    let p = provider_at(&m, A);
    let c = m.device::<Client>(A, DmaLimits::BITS_64).unwrap();
    let v = m.topology().verdict(A, A, &Policy::default()).unwrap();
    assert_eq!((v.map_type, v.kernel_distance()), (MapType::BusAddr, 0));
    let r = P2pRoute::classify(&m, &p, &c).unwrap();
    assert!(matches!(r, P2pRoute::SameDevice(_)), "{r:?}");
}

#[test]
fn unknown_acs_never_gives_a_bus_address_route() {
    let m = machine(load("q35-nonroot"));
    let p = provider_at(&m, A);
    let c = m.device::<Client>(B, DmaLimits::BITS_64).unwrap();
    match P2pRoute::classify(&m, &p, &c) {
        Err(RouteError::NotSupported(v)) => assert_eq!(v.acs, PathAcs::Unknown),
        other => panic!("expected NotSupported with unknown ACS, got {other:?}"),
    }
}

#[test]
fn only_the_machines_own_functions_get_a_route() {
    let m = machine(load("q35"));
    let stranger = Bdf::new(0, 0x42, 0, 0);
    // A function the machine does not have: no device, no provider.
    assert_eq!(
        m.device::<Client>(stranger, DmaLimits::BITS_64)
            .unwrap_err(),
        ClaimError::NotInTopology { bdf: stranger }
    );
    // SAFETY: refused before any use.
    let refused = unsafe {
        m.provider::<Cmb>(
            stranger,
            2,
            PhysAddr::new(0),
            BusAddr::new_unchecked(0),
            4096,
        )
    };
    assert!(matches!(refused, Err(ProviderError::NotInTopology { .. })));
    // The same BDFs on another machine (a second simulation of the tree):
    // routes never mix the two.
    let other = machine(load("q35"));
    let p = provider_at(&m, A);
    let c_here = m.device::<Client>(B, DmaLimits::BITS_64).unwrap();
    let c_there = other.device::<Client>(B, DmaLimits::BITS_64).unwrap();
    assert!(P2pRoute::classify(&m, &p, &c_here).is_ok());
    assert!(matches!(
        P2pRoute::classify(&m, &p, &c_there),
        Err(RouteError::OtherMachine)
    ));
    assert!(matches!(
        P2pRoute::classify(&other, &p, &c_there),
        Err(RouteError::OtherMachine)
    ));
    // A device of this host (no machine) is not a function of a simulated one.
    // SAFETY: a test device; nothing reaches hardware.
    let host_dev = unsafe { Device::<Client>::new_unchecked(B, DmaLimits::BITS_64) };
    assert!(matches!(
        P2pRoute::classify(&m, &p, &host_dev),
        Err(RouteError::OtherMachine)
    ));
}

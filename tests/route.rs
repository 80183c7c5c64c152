//! Route witnesses from real topologies (sysfs fixture trees): the typed
//! route matches the kernel's verdict, NOT_SUPPORTED is an error, an
//! unreadable ACS never yields a bus-address route, and only a machine's
//! own functions get a route on it.

use std::path::Path;

use dmaspace::BusOffset;
use dmaspace::dir::ToDevice;
use dmaspace::error::{ClaimError, MapError};
use dmaspace::pci::{CpuInfo, MapType, PathAcs, Policy, Topology, sysfs};
use dmaspace::prelude::*;
use dmaspace::provider::ProviderError;
use dmaspace::route::RouteError;
use dmaspace::vec::SegOf;

fn load(name: &str) -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pci/tests/fixtures/synthetic")
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

// Providers from the BARs the machine read: no address typed by the caller.

const E: Bdf = Bdf::new(0, 0, 3, 0);

#[test]
fn a_provider_from_a_loaded_bar_maps_at_its_bus_address() {
    let m = machine(load("q35"));
    // SAFETY: A's BAR 2 is the simulated CMB; nothing else uses it.
    let cmb = unsafe { m.bar_provider::<Cmb>(A, 2) }.unwrap();
    assert_eq!((cmb.device(), cmb.bar(), cmb.size()), (A, 2, 16 << 20));
    assert_eq!(cmb.bus_offset(), BusOffset::ZERO, "x86: bus = CPU");
    let client = m.device::<Client>(B, DmaLimits::BITS_64).unwrap();
    let route = P2pRoute::classify(&m, &cmb, &client).unwrap();
    let a = cmb.alloc(0x1000).unwrap();
    let phys = a.seg().phys().as_u64();
    assert!((0x8_0000_0000..0x8_0100_0000).contains(&phys), "{phys:#x}");
    // SAFETY: the simulated client reaches simulated memory by address.
    let mapper = unsafe { Mapper::direct(&client) }.unwrap();
    let bus = mapper
        .map_bvec::<dmaspace::dir::ToDevice, _, _>(
            &mut [a.seg().into_bvec_seg()],
            &route,
            SegBuf::with_capacity(1),
            |v| {
                let v = v.sync();
                let s = &v.segments(client.id()).unwrap()[0];
                (s.via(), s.addr().unwrap().as_u64())
            },
        )
        .unwrap();
    assert_eq!(bus, (Via::BusAddr, phys));
}

#[test]
fn a_loaded_bar_with_a_bus_offset_gives_the_offset() {
    use dmaspace::pci::{Bar, BarFlags, PciFunction};
    // The bus start a BAR register of this simulated SoC holds.
    let bus = 0x2000_0000;
    let bar = Bar::new(4, 0x60_0000_0000, 1 << 20, BarFlags::MEM)
        .unwrap()
        .with_bus_start(bus)
        .unwrap();
    let topo = Topology::builder()
        .function(PciFunction::new(A, 0x1b36, 0x10))
        .bar(A, bar)
        .build()
        .unwrap();
    let m = machine(topo);
    // SAFETY: a simulated BAR nothing else uses.
    let p = unsafe { m.bar_provider::<Cmb>(A, 4) }.unwrap();
    assert_eq!(p.bus_offset().as_i64(), 0x2000_0000 - 0x60_0000_0000);
}

#[test]
fn a_provider_needs_a_memory_bar_with_a_known_bus_address() {
    let m = machine(load("q35"));
    let stranger = Bdf::new(0, 0x42, 0, 0);
    let err = |m: &Machine, bdf, bar| {
        // SAFETY: every call below is refused before any use.
        unsafe { m.bar_provider::<Cmb>(bdf, bar) }.unwrap_err()
    };
    assert_eq!(
        err(&m, stranger, 2),
        ProviderError::NotInTopology { bdf: stranger }
    );
    // BAR 1 is the upper half of 64-bit BAR 0; BAR 6 is the ROM, 9 nothing.
    for bar in [1, 3, 6, 9] {
        assert_eq!(err(&m, A, bar), ProviderError::NoSuchBar { bdf: A, bar });
    }
    assert_eq!(err(&m, E, 4), ProviderError::NotMemory { bdf: E, bar: 4 });
    let vf = Bdf::new(0, 1, 0, 1);
    let sriov = machine(load("sriov"));
    assert_eq!(
        err(&sriov, vf, 0),
        ProviderError::BusUnknown { bdf: vf, bar: 0 }
    );
    // SAFETY: the PF's BAR is a simulated one nothing else uses.
    assert!(unsafe { sriov.bar_provider::<Cmb>(Bdf::new(0, 1, 0, 0), 0) }.is_ok());
}

// The CMB's bus address: what an NVMe puts into a PRP entry pointing into
// its own CMB.

/// The own-BAR bus addresses of `segs` (as one request) mapped for
/// `client` with `route`, through a direct mapper.
fn own_bar_addrs(
    client: &Device<'_, Client>,
    route: &P2pRoute<'_, Cmb, Client>,
    segs: &mut [dmaspace::vec::BvecSeg<'_, Cmb>],
) -> Vec<Result<u64, MapError>> {
    // SAFETY: the simulated client reaches simulated memory by address.
    let mapper = unsafe { Mapper::direct(client) }.unwrap();
    mapper
        .map_bvec::<ToDevice, _, _>(segs, route, SegBuf::with_capacity(4), |v| {
            let v = v.sync();
            v.segments(client.id())
                .unwrap()
                .iter()
                .map(|s| route.own_bar_bus_addr(&v, s).map(|a| a.as_u64()))
                .collect()
        })
        .unwrap()
}

#[test]
fn the_cmb_bus_address_of_an_own_bar_segment() {
    let m = machine(load("q35"));
    // SAFETY: A's BAR 2 is the simulated CMB; nothing else uses it.
    let cmb = unsafe { m.bar_provider::<Cmb>(A, 2) }.unwrap();
    let nvme = m.device::<Client>(A, DmaLimits::BITS_64).unwrap();
    let route = P2pRoute::classify(&m, &cmb, &nvme).unwrap();
    assert!(matches!(route, P2pRoute::SameDevice(_)));
    let _first = cmb.alloc(0x3000).unwrap();
    let sq = cmb.alloc(0x1000).unwrap();
    let got = own_bar_addrs(
        &nvme,
        &route,
        &mut [sq.seg_range(0x40, 0x100).unwrap().into_bvec_seg()],
    );
    // x86: bus = CPU; the segment starts 0x3040 into the BAR.
    assert_eq!(got, [Ok(0x8_0000_3040)]);
    // A host segment of the same request has its wire address already.
    let mut b = [0u8; 4096];
    // SAFETY: a simulated page; nothing reaches hardware.
    let mut host =
        unsafe { dmaspace::host::HostPages::new(&mut b, PhysAddr::new(0x10_0000)) }.unwrap();
    let got = own_bar_addrs(
        &nvme,
        &route,
        &mut [host.dma().into_bvec_seg(), sq.seg().into_bvec_seg()],
    );
    assert_eq!(got, [Err(MapError::NotOwnBar), Ok(0x8_0000_3000)]);
}

#[test]
fn the_cmb_bus_address_applies_the_bus_offset() {
    use dmaspace::pci::{Bar, BarFlags, PciFunction};
    // The bus start a BAR register of this simulated SoC holds.
    let bus = 0x2000_0000;
    let bar = Bar::new(2, 0x60_0000_0000, 1 << 20, BarFlags::MEM)
        .unwrap()
        .with_bus_start(bus)
        .unwrap();
    let m = machine(
        Topology::builder()
            .function(PciFunction::new(A, 0x1b36, 0x10))
            .bar(A, bar)
            .build()
            .unwrap(),
    );
    // SAFETY: a simulated BAR nothing else uses.
    let cmb = unsafe { m.bar_provider::<Cmb>(A, 2) }.unwrap();
    let nvme = m.device::<Client>(A, DmaLimits::BITS_64).unwrap();
    let route = P2pRoute::classify(&m, &cmb, &nvme).unwrap();
    let a = cmb.alloc_aligned(0x200, 0x200).unwrap();
    let b = cmb.alloc_aligned(0x200, 0x200).unwrap();
    assert_eq!(b.seg().phys().as_u64(), 0x60_0000_0200);
    let got = own_bar_addrs(&nvme, &route, &mut [b.seg().into_bvec_seg()]);
    assert_eq!(got, [Ok(0x2000_0200)], "bus start + offset, not CPU");
    drop(a);
}

#[test]
fn the_cmb_bus_address_is_refused_for_anything_but_the_routes_own_segments() {
    let m = machine(load("q35"));
    // SAFETY: the simulated CMBs of A and B; nothing else uses them.
    let (cmb_a, cmb_b) = unsafe {
        (
            m.bar_provider::<Cmb>(A, 2).unwrap(),
            m.bar_provider::<Cmb>(B, 2).unwrap(),
        )
    };
    // SAFETY: A's BAR 0 (its registers, here simulated plain memory).
    let regs_a = unsafe { m.bar_provider::<Cmb>(A, 0) }.unwrap();
    let nvme_a = m.device::<Client>(A, DmaLimits::BITS_64).unwrap();
    let nvme_b = m.device::<Client>(B, DmaLimits::BITS_64).unwrap();
    let route_a = P2pRoute::classify(&m, &cmb_a, &nvme_a).unwrap();
    let route_b = P2pRoute::classify(&m, &cmb_b, &nvme_b).unwrap();
    let route_regs = P2pRoute::classify(&m, &regs_a, &nvme_a).unwrap();
    let a_to_b = P2pRoute::classify(&m, &cmb_a, &nvme_b).unwrap();
    assert!(matches!(a_to_b, P2pRoute::ViaBusAddr(_)));
    let sq_a = cmb_a.alloc(0x1000).unwrap();
    // SAFETY: the simulated devices reach simulated memory by address.
    let (mapper_a, mapper_b) = unsafe { (Mapper::direct(&nvme_a), Mapper::direct(&nvme_b)) };
    let (mapper_a, mapper_b) = (mapper_a.unwrap(), mapper_b.unwrap());
    let mut bv = [sq_a.seg().into_bvec_seg()];
    mapper_a
        .map_bvec::<ToDevice, _, _>(&mut bv, &route_a, SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            let seg = &v.segments(nvme_a.id()).unwrap()[0];
            assert_eq!(
                route_a.own_bar_bus_addr(&v, seg).map(|a| a.as_u64()),
                Ok(0x8_0000_0000)
            );
            // Another drive's route (same brands): its CMB is not this one.
            assert_eq!(
                route_b.own_bar_bus_addr(&v, seg).unwrap_err(),
                MapError::RouteMismatch
            );
            // Another BAR of the same drive.
            assert_eq!(
                route_regs.own_bar_bus_addr(&v, seg).unwrap_err(),
                MapError::NotOwnBar
            );
            // A route that is not same-device has no own BAR.
            let b_seg = mapper_b
                .map_bvec::<ToDevice, _, _>(
                    &mut [sq_a.seg().into_bvec_seg()],
                    &a_to_b,
                    SegBuf::with_capacity(1),
                    |w| {
                        let w = w.sync();
                        let s = &w.segments(nvme_b.id()).unwrap()[0];
                        assert_eq!(s.via(), Via::BusAddr);
                        assert_eq!(
                            a_to_b.own_bar_bus_addr(&w, s).unwrap_err(),
                            MapError::NotOwnBar
                        );
                        // B's route and B's mapping, but A's segment: the
                        // offset would be read in B's CMB.
                        route_b.own_bar_bus_addr(&w, seg).unwrap_err()
                    },
                )
                .unwrap();
            assert_eq!(b_seg, MapError::NotInMapping);
            // A second mapping of A: its segments are not the first's.
            let other = mapper_a
                .map_bvec::<ToDevice, _, _>(
                    &mut [sq_a.seg().into_bvec_seg()],
                    &route_a,
                    SegBuf::with_capacity(1),
                    |w| {
                        let w = w.sync();
                        route_a.own_bar_bus_addr(&w, seg).unwrap_err()
                    },
                )
                .unwrap();
            assert_eq!(other, MapError::NotInMapping);
        })
        .unwrap();
}

#[test]
fn a_cmb_bus_range_past_the_top_is_an_error() {
    let m = machine(load("q35"));
    // SAFETY: a simulated CMB whose bus side ends past the top of the space.
    let cmb = unsafe {
        m.provider::<Cmb>(
            A,
            2,
            PhysAddr::new(0x1000),
            BusAddr::new_unchecked(u64::MAX - 0x7ff),
            0x1000,
        )
    }
    .unwrap();
    let nvme = m.device::<Client>(A, DmaLimits::BITS_64).unwrap();
    let route = P2pRoute::classify(&m, &cmb, &nvme).unwrap();
    let a = cmb.alloc(0x1000).unwrap();
    let got = own_bar_addrs(
        &nvme,
        &route,
        &mut [a.seg_range(0, 0x800).unwrap().into_bvec_seg()],
    );
    assert_eq!(got, [Ok(u64::MAX - 0x7ff)]);
    let got = own_bar_addrs(&nvme, &route, &mut [a.seg().into_bvec_seg()]);
    assert_eq!(
        got,
        [Err(MapError::Overflow {
            start: u64::MAX - 0x7ff,
            len: 0x1000
        })]
    );
}

// Every device address honours the device's DMA mask, the own-BAR one
// included: a drive with a 32-bit mask whose CMB sits above 4 GiB cannot be
// given a PRP entry into its own CMB (issue 18).

#[test]
fn the_own_bar_bus_address_honours_the_dma_mask() {
    let m = machine(load("q35"));
    // SAFETY: the simulated CMBs of A and B; nothing else uses them.
    let (cmb_a, cmb_b) = unsafe {
        (
            m.bar_provider::<Cmb>(A, 2).unwrap(),
            m.bar_provider::<Cmb>(B, 2).unwrap(),
        )
    };
    assert!(bus_start(&cmb_a) > u64::from(u32::MAX));
    let nvme_a = m.device::<Client>(A, DmaLimits::bits(32)).unwrap();
    let nvme_b = m.device::<Client>(B, DmaLimits::bits(32)).unwrap();
    let own = P2pRoute::classify(&m, &cmb_a, &nvme_a).unwrap();
    let sq = cmb_a.alloc(0x1000).unwrap();
    let mut bv = [sq.seg().into_bvec_seg()];
    // The mapping itself is fine: an offset in the BAR never goes on the wire.
    let got = own_bar_addrs(&nvme_a, &own, &mut bv);
    assert!(
        matches!(
            got.as_slice(),
            [Err(MapError::BeyondDmaMask {
                index: 0,
                mask: 0xffff_ffff,
                ..
            })]
        ),
        "{got:?}"
    );
    // The same CMB seen from the other drive, by bus address: refused too.
    let sq_b = cmb_b.alloc(0x1000).unwrap();
    let via_bus = P2pRoute::classify(&m, &cmb_b, &nvme_a).unwrap();
    assert!(matches!(via_bus, P2pRoute::ViaBusAddr(_)));
    // SAFETY: the simulated client reaches simulated memory by address.
    let mapper = unsafe { Mapper::direct(&nvme_a) }.unwrap();
    let err = mapper
        .map_bvec::<ToDevice, _, _>(
            &mut [sq_b.seg().into_bvec_seg()],
            &via_bus,
            SegBuf::with_capacity(1),
            |_| (),
        )
        .unwrap_err();
    assert!(
        matches!(err, MapError::BeyondDmaMask { index: 0, .. }),
        "{err:?}"
    );
    drop(nvme_b);
}

#[test]
fn the_own_bar_bus_address_up_to_the_mask_is_given() {
    let m = machine(load("q35"));
    // SAFETY: the simulated CMB of A; nothing else uses it.
    let cmb_a = unsafe { m.bar_provider::<Cmb>(A, 2) }.unwrap();
    let bus_start = bus_start(&cmb_a);
    let top = bus_start + cmb_a.size() - 1;
    let bits = 64 - top.leading_zeros();
    let nvme_a = m.device::<Client>(A, DmaLimits::bits(bits)).unwrap();
    let own = P2pRoute::classify(&m, &cmb_a, &nvme_a).unwrap();
    let all = cmb_a.alloc(cmb_a.size()).unwrap();
    let got = own_bar_addrs(&nvme_a, &own, &mut [all.seg().into_bvec_seg()]);
    assert_eq!(got, vec![Ok(bus_start)]);
}

/// The BAR's first bus address: CPU start plus the bus offset, wrapping.
fn bus_start(p: &Provider<Cmb>) -> u64 {
    p.cpu_start()
        .as_u64()
        .wrapping_add_signed(p.bus_offset().as_i64())
}

//! Issue 8's classes of misuse that only run time can see, each refused
//! with a typed error (the compile-time ones are in `tests/ui/`). Every
//! test is the program a driver author would write to try the misuse.

use std::panic::{AssertUnwindSafe, catch_unwind};

use dmaspace::dir::IommuPerm;
use dmaspace::error::{ClaimError, MapError, MapErrorKind};
use dmaspace::host::{CpuAccessible, SimulatedRam};
use dmaspace::machine::{Machine, MachineError};
use dmaspace::pci::{PciFunction, Topology};
use dmaspace::prelude::*;
use dmaspace::swiotlb::Swiotlb;
use dmaspace::vec::{HostSeg, SegOf};

brand!(Nvme);
brand!(Gpu);
brand!(Dom);

const A: Bdf = Bdf::new(0, 0, 3, 0);
const B: Bdf = Bdf::new(0, 0, 4, 0);

fn ram(base: u64, pages: usize) -> SimulatedRam {
    // SAFETY: simulated addresses only reach the software IOMMU and asserts.
    unsafe { SimulatedRam::new(PhysAddr::new(base), pages) }
}

/// Two NVMe drives on the root bus (a fleet of one brand).
fn two_drives() -> Machine {
    let topo = Topology::builder()
        .function(PciFunction::new(A, 0x1b36, 0x0010))
        .function(PciFunction::new(B, 0x1b36, 0x0010))
        .build()
        .unwrap();
    // SAFETY: a simulated machine; nothing reaches hardware.
    unsafe { Machine::assume(topo) }
}

fn gpu_bar(m: &Machine, at: Bdf, cpu: u64) -> Provider<Gpu> {
    // SAFETY: a simulated BAR of the simulated machine.
    unsafe {
        m.provider(
            at,
            1,
            PhysAddr::new(cpu),
            BusAddr::new_unchecked(cpu),
            1 << 20,
        )
    }
    .unwrap()
}

// Class 3: brands name a type; instances are told apart at run time.

#[test]
fn a_mapping_of_one_drive_is_refused_for_another_drive_of_the_same_brand() {
    let m = two_drives();
    let d0 = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let d1 = m.device::<Nvme>(B, DmaLimits::BITS_64).unwrap();
    assert_ne!(d0.id(), d1.id());
    let mut mem = ram(0x10_0000, 1);
    let mut page = mem.pages().next().unwrap();
    let mapper = direct(&d0).unwrap();
    mapper
        .map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            // The queue of drive 1 asks for drive 0's mapping.
            assert_eq!(v.segments(d1.id()).unwrap_err(), MapError::WrongDevice);
            assert_eq!(MapError::WrongDevice.kind(), MapErrorKind::WrongInstance);
            assert_eq!(v.segments(d0.id()).unwrap().len(), 1);
        })
        .unwrap();
}

#[test]
fn a_route_classified_for_one_drive_is_refused_by_the_mapper_of_another() {
    let m = two_drives();
    let d0 = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let d1 = m.device::<Nvme>(B, DmaLimits::BITS_64).unwrap();
    // The GPU memory is drive 0's own CMB stand-in: a same-device route for d0.
    let bar = gpu_bar(&m, A, 0x8000_0000);
    let route = P2pRoute::classify(&m, &bar, &d0).unwrap();
    let mem = bar.alloc(4096).unwrap();
    let mapper = direct(&d1).unwrap();
    let err = mapper
        .map_bvec::<ToDevice, _, _>(
            &mut [mem.seg().into_bvec_seg()],
            &route,
            SegBuf::with_capacity(1),
            |v| v.unmap(),
        )
        .unwrap_err();
    assert_eq!(err, MapError::RouteMismatch);
}

#[test]
fn memory_of_another_provider_of_the_same_brand_is_refused() {
    let m = two_drives();
    let d1 = m.device::<Nvme>(B, DmaLimits::BITS_64).unwrap();
    let bar0 = gpu_bar(&m, A, 0x8000_0000);
    let bar1 = gpu_bar(&m, B, 0x9000_0000);
    // SAFETY: a simulated host bridge that forwards P2P.
    let route: P2pRoute<'_, Gpu, Nvme> = unsafe { Route::assume_host_bridge(&bar0, &d1, 2) }.into();
    let own = bar0.alloc(4096).unwrap();
    let other = bar1.alloc(4096).unwrap();
    let mut mem = ram(0x10_0000, 1);
    let mut page = mem.pages().next().unwrap();
    let mut io = BvecP2p::<Gpu>::new();
    io.push(page.dma());
    io.push(own.seg());
    io.push(other.seg()); // same brand, another BAR: the route's offsets are not its own
    let mapper = direct(&d1).unwrap();
    let err = mapper
        .map_bvec::<ToDevice, _, _>(&mut io, &route, SegBuf::with_capacity(3), |v| v.unmap())
        .unwrap_err();
    assert_eq!(err, MapError::ForeignProvider { index: 2 });
}

// Class 5: "this BDF is that device" and "this topology is the machine".

#[test]
fn one_live_device_per_function_and_the_claim_ends_with_it() {
    let m = two_drives();
    let d = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    // Another driver, another brand: still the same function.
    assert_eq!(
        m.device::<Gpu>(A, DmaLimits::BITS_64).unwrap_err(),
        ClaimError::AlreadyClaimed { bdf: A }
    );
    let first = d.id();
    drop(d);
    let again = m.device::<Gpu>(A, DmaLimits::BITS_64).unwrap();
    assert_ne!(again.id(), first, "a new incarnation has a new identity");
}

#[test]
fn same_device_needs_the_same_function_of_the_same_machine() {
    let here = two_drives();
    let there = two_drives();
    let bar = gpu_bar(&here, A, 0x8000_0000);
    let own = here.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let same_bdf_elsewhere = there.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let neighbour = here.device::<Nvme>(B, DmaLimits::BITS_64).unwrap();
    assert!(Route::same_device(&bar, &own).is_some());
    assert!(Route::same_device(&bar, &same_bdf_elsewhere).is_none());
    assert!(Route::same_device(&bar, &neighbour).is_none());
}

#[test]
fn this_host_is_loaded_once_per_process() {
    let kernel = dmaspace::pci::KernelPolicy::linux_6_12();
    match Machine::from_sysfs_with(kernel.clone()) {
        Ok(host) => {
            assert_eq!(host.policy(), kernel.policy());
            assert!(matches!(
                Machine::from_sysfs_with(kernel.clone()),
                Err(MachineError::Claim(ClaimError::HostAlreadyLoaded))
            ));
            assert!(matches!(
                Machine::from_sysfs(),
                Err(MachineError::Claim(ClaimError::HostAlreadyLoaded))
            ));
            drop(host);
            // The running kernel's own rules, or a refusal that names it and
            // keeps no claim.
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            match (
                dmaspace::pci::KernelPolicy::for_release(&release),
                Machine::from_sysfs(),
            ) {
                (Ok(named), Ok(host)) => assert_eq!(host.policy(), named.policy()),
                (Err(_), Err(MachineError::UnknownKernel(e))) => {
                    assert_eq!(e.release, release.trim());
                    assert!(Machine::from_sysfs_with(kernel).is_ok(), "no claim kept");
                }
                (named, got) => panic!("kernel {release:?}: {named:?} but {got:?}"),
            }
        }
        // No readable PCI tree here: the failed load must not keep the claim.
        Err(MachineError::Sysfs(_)) => {
            assert!(matches!(
                Machine::from_sysfs_with(kernel),
                Err(MachineError::Sysfs(_))
            ));
        }
        Err(e) => panic!("unexpected: {e}"),
    }
}

// Class 6: the unmap cannot be skipped.

#[test]
fn forgetting_the_mapping_cannot_skip_the_unmap() {
    let m = two_drives();
    let d = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let dom = IommuDomain::<Dom>::software(0x10_0000, 8 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 2);
    let mut pages: Vec<_> = mem.pages().collect();
    let mut segs: Vec<HostSeg<'_>> = pages.iter_mut().map(|p| p.dma()).collect();
    let mapper = Mapper::iommu(&d, &dom).unwrap();
    let iova = mapper
        .map_host::<FromDevice, _>(&mut segs, SegBuf::with_capacity(2), |v| {
            let v = v.sync();
            let iova = v.segments(d.id()).unwrap()[0].addr().unwrap().as_u64();
            assert!(dom.translate(iova, IommuPerm::WRITE).is_ok());
            // The driver "keeps" the mapping. (Clippy knows the view has no
            // `Drop`: nothing the closure holds is the cleanup.)
            #[expect(clippy::forget_non_drop, reason = "the misuse under test")]
            std::mem::forget(v);
            iova
        })
        .unwrap();
    assert_eq!(
        dom.reserved_granules(),
        0,
        "unmapped when the call returned"
    );
    assert!(dom.translate(iova, IommuPerm::WRITE).is_err());
    // The CPU owns the pages again, and the device cannot reach them.
    pages[0].cpu_bytes_mut()[0] = 0xaa;
}

#[test]
fn a_panic_while_mapped_still_unmaps() {
    let m = two_drives();
    let d = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let dom = IommuDomain::<Dom>::software(0, 8 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 1);
    let mut page = mem.pages().next().unwrap();
    let mapper = Mapper::iommu(&d, &dom).unwrap();
    let seg = page.dma();
    let r = catch_unwind(AssertUnwindSafe(|| {
        mapper.map_host::<ToDevice, _>(&mut [seg], SegBuf::with_capacity(1), |v| {
            let _v = v.sync();
            panic!("driver bug while the device owns the buffer");
        })
    }));
    assert!(r.is_err());
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn a_leaked_mapper_keeps_its_device_attached_rather_than_letting_a_second_one_in() {
    let m = two_drives();
    let d = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    std::mem::forget(direct(&d).unwrap());
    assert_eq!(
        direct(&d).unwrap_err(),
        ClaimError::AlreadyAttached { bdf: A }
    );
}

// Class 7: the device's limits hold with an IOMMU too.

#[test]
fn a_32_bit_device_gets_iovas_below_4_gib() {
    let m = two_drives();
    let old = m.device::<Nvme>(A, DmaLimits::BITS_32).unwrap();
    // Aperture: 2 granules below 4 GiB, 6 above.
    let dom = IommuDomain::<Dom>::software(0xffff_e000, 8 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let mapper = Mapper::iommu(&old, &dom).unwrap();
    let [p0, p1, p2] = &mut pages[..] else {
        unreachable!()
    };
    let mut two = [p0.dma(), p1.dma()];
    mapper
        .map_host::<ToDevice, _>(&mut two, SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            let s = &v.segments(old.id()).unwrap()[0];
            let last = s.at(s.len() - 1).unwrap().as_u64();
            assert!(last <= 0xffff_ffff, "IOVA {last:#x} beyond the 32-bit mask");
            // The run below 4 GiB is taken: the next request cannot fit below the mask,
            // even though 6 free granules lie above it.
            let err = mapper
                .map_host::<ToDevice, _>(&mut [p2.dma()], SegBuf::with_capacity(1), |_| ())
                .unwrap_err();
            assert_eq!(err, MapError::IovaExhausted { len: 0x1000 });
        })
        .unwrap();
    // An aperture entirely above the mask serves nothing to this device.
    let dom_high = IommuDomain::<Dom>::software(0x1_0000_0000, 4 * 4096).unwrap();
    drop(mapper);
    let mapper = Mapper::iommu(&old, &dom_high).unwrap();
    let err = mapper
        .map_host::<ToDevice, _>(&mut [p2.dma()], SegBuf::with_capacity(1), |_| ())
        .unwrap_err();
    assert_eq!(err, MapError::IovaExhausted { len: 0x1000 });
}

#[test]
fn a_sub_granule_buffer_is_refused_through_the_iommu_but_not_directly() {
    let m = two_drives();
    let d = m.device::<Nvme>(A, DmaLimits::BITS_64).unwrap();
    let dom = IommuDomain::<Dom>::software(0, 8 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 1);
    // Four 1 KiB buffers in one 4 KiB granule: the CPU keeps `&mut` to three of them.
    let mut quarters: Vec<_> = mem.chunks(1024).collect();
    let mut seg = [quarters[1].dma()];
    assert!(!seg[0].covers_granules());
    {
        let iommu = Mapper::iommu(&d, &dom).unwrap();
        let err = iommu
            .map_host::<FromDevice, _>(&mut seg, SegBuf::with_capacity(1), |_| ())
            .unwrap_err();
        assert_eq!(
            err,
            MapError::PartialGranule {
                index: 0,
                granule: 4096
            }
        );
        assert_eq!(dom.reserved_granules(), 0);
    }
    // Without an IOMMU nothing is granted by granule: the exact range is used.
    let direct = direct(&d).unwrap();
    direct
        .map_host::<FromDevice, _>(&mut seg, SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            assert_eq!(v.segments(d.id()).unwrap()[0].len(), 1024);
        })
        .unwrap();
    quarters[0].cpu_bytes_mut()[0] = 1;
    // A sub-range of a whole-page buffer covers its granule: the rest is the same buffer.
    let mut whole = ram(0x30_0000, 1);
    let mut page = whole.pages().next().unwrap();
    assert!(page.dma_range(0x400, 0x400).unwrap().covers_granules());
}

#[test]
fn a_bus_address_beyond_the_mask_is_refused() {
    let m = two_drives();
    let old = m.device::<Nvme>(B, DmaLimits::BITS_32).unwrap();
    // SAFETY: a simulated BAR whose bus addresses lie above 4 GiB.
    let bar = unsafe {
        m.provider::<Gpu>(
            A,
            1,
            PhysAddr::new(0x8000_0000),
            BusAddr::new_unchecked(0x1_0000_0000),
            1 << 20,
        )
    }
    .unwrap();
    // SAFETY: a simulated switch between them.
    let route: P2pRoute<'_, Gpu, Nvme> = unsafe { Route::assume_bus_addr(&bar, &old, 2) }.into();
    let mem = bar.alloc(4096).unwrap();
    let mapper = direct(&old).unwrap();
    let err = mapper
        .map_bvec::<ToDevice, _, _>(
            &mut [mem.seg().into_bvec_seg()],
            &route,
            SegBuf::with_capacity(1),
            |v| v.unmap(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        MapError::BeyondDmaMask {
            index: 0,
            last: 0x1_0000_0fff,
            mask: 0xffff_ffff
        }
    );
}

// Class 8: bouncing never leaks a previous user's bytes.

#[test]
fn a_short_device_write_through_a_bounce_leaves_the_callers_own_bytes() {
    let m = two_drives();
    let old = m.device::<Nvme>(A, DmaLimits::BITS_32).unwrap();
    let mut low = ram(0x10_0000, 1);
    let mut high = ram(0x2_0000_0000, 2);
    let mut pool = Swiotlb::new(low.pages().next().unwrap());
    let mut bufs: Vec<_> = high.pages().collect();
    let [secret, mine] = &mut bufs[..] else {
        unreachable!()
    };
    secret.cpu_bytes_mut()[..16].copy_from_slice(b"SECRET-OF-USER-A");
    mine.cpu_bytes_mut()[..16].copy_from_slice(b"mine:untouched..");
    let mapper = direct(&old).unwrap();
    // User A's buffer is above the mask: it goes through the pool.
    assert!(matches!(
        mapper.map_host::<ToDevice, _>(&mut [secret.dma()], SegBuf::with_capacity(1), |_| ()),
        Err(MapError::BeyondDmaMask { .. })
    ));
    let mut a = pool.bounce(secret, 0, 16).unwrap();
    mapper
        .map_host::<ToDevice, _>(&mut [a.dma()], SegBuf::with_capacity(1), |v| v.unmap())
        .unwrap();
    // User B reads 16 bytes from a device that, this time, writes nothing
    // (a short or failed transfer). The slot A used is B's now.
    let mut b = pool.bounce(mine, 0, 16).unwrap();
    mapper
        .map_host::<FromDevice, _>(&mut [b.dma()], SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            assert_eq!(
                v.segments(old.id()).unwrap()[0].addr().unwrap().as_u64(),
                0x10_0000
            );
        })
        .unwrap();
    b.copy_back(mine, 0).unwrap();
    // Before Linux's 2022 fix (and this crate's before issue 8), B got A's secret.
    assert_eq!(&mine.cpu_bytes()[..16], b"mine:untouched..");
}

/// A direct (no IOMMU) mapper.
fn direct<'d, K: Brand>(
    dev: &'d Device<'_, K>,
) -> Result<Mapper<'d, K>, dmaspace::error::ClaimError> {
    // SAFETY: the simulated devices reach simulated memory by physical address.
    unsafe { Mapper::direct(dev) }
}

//! A backend that maps process virtual addresses (what VFIO type1 and
//! iommufd do), modelled on the software IOMMU: host memory known only by
//! its virtual address, and P2P memory through the host bridge reached
//! through the process mapping of the provider's BAR.

use dmaspace::backend::{AddrKind, BackendError, IommuBackend, MapEach};
use dmaspace::dir::{FromDevice, ToDevice};
use dmaspace::error::MapError;
use dmaspace::host::{CpuAccessible, HostPages};
use dmaspace::prelude::*;
use dmaspace::provider::ProviderError;
use dmaspace::vec::{BvecSeg, SegOf};
use dmaspace::{dir::IommuPerm, iommu::SoftIommu};

/// The software IOMMU, told it maps virtual addresses: `translate` then
/// gives the process address a device would reach.
#[derive(Debug)]
struct VirtSoft(SoftIommu);

// SAFETY: a software model: its "devices" are the mappers' outputs.
unsafe impl dmaspace::backend::AttachedByConstruction for VirtSoft {}

// SAFETY: every method forwards to `SoftIommu`, which keeps the contract;
// what the addresses mean (virtual, not physical) does not change it.
unsafe impl IommuBackend for VirtSoft {
    const MAPS: AddrKind = AddrKind::Virt;
    type Linker<'a> = MapEach<'a, Self>;
    fn linker(&self, perm: IommuPerm) -> MapEach<'_, Self> {
        MapEach::new(self, perm)
    }
    fn granule(&self) -> u64 {
        self.0.granule()
    }
    fn aperture(&self) -> (u64, u64) {
        self.0.aperture()
    }
    unsafe fn map(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        // SAFETY: forwarded; the caller upholds the contract.
        unsafe { self.0.map(iova, addr, len, perm, mmio) }
    }
    unsafe fn sync(&self, iova: u64, len: u64) {
        // SAFETY: forwarded.
        unsafe { self.0.sync(iova, len) };
    }
    unsafe fn unmap(&self, iova: u64, len: u64) {
        // SAFETY: forwarded.
        unsafe { self.0.unmap(iova, len) }
    }
}

brand!(Nvme);
brand!(Cmb);
brand!(Dom);

const NVME: Bdf = Bdf::new(0, 3, 0, 0);
const PEER: Bdf = Bdf::new(0, 4, 0, 0);

/// Three page-aligned pages of this process.
#[repr(C, align(4096))]
struct Pages([u8; 3 * 4096]);

fn domain() -> IommuDomain<Dom, VirtSoft> {
    IommuDomain::new(VirtSoft(SoftIommu::new(0x1000_0000, 1 << 24).unwrap())).unwrap()
}

fn nvme() -> Device<'static, Nvme> {
    // SAFETY: the only driver of this simulated function in each test.
    unsafe { Device::new_unchecked(NVME, DmaLimits::BITS_64) }
}

fn cmb() -> Provider<Cmb> {
    // SAFETY: a simulated BAR; its addresses reach only the software IOMMU.
    unsafe {
        Provider::new(
            PEER,
            2,
            PhysAddr::new(0xfe00_0000),
            BusAddr::new_unchecked(0xfe00_0000),
            1 << 20,
        )
    }
    .unwrap()
}

#[test]
fn host_memory_is_mapped_at_its_virtual_address() {
    let mut mem = Box::new(Pages([0; 3 * 4096]));
    let vaddr = mem.0.as_ptr() as u64;
    // SAFETY: memory of this process; the "device" is the software model.
    let mut pages = unsafe { HostPages::from_virt(&mut mem.0) }.unwrap();
    pages.cpu_bytes_mut()[0x1234] = 0x5a;
    let (dom, dev) = (domain(), nvme());
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let seg = pages.dma_range(0x200, 0x2000).unwrap();
    let iova = m
        .map_host::<ToDevice, _>(&mut [seg], SegBuf::with_capacity(1), |v| {
            let v = v.sync();
            let s = &v.segments(dev.id()).unwrap()[0];
            assert_eq!((s.len(), s.via()), (0x2000, Via::Iommu));
            let iova = s.addr().unwrap().as_u64();
            // The device reaches the buffer's own bytes, by virtual address.
            let reached = dom.backend().0.translate(iova + 0x1034, IommuPerm::READ);
            assert_eq!(reached.unwrap().as_u64(), vaddr + 0x1234);
            iova
        })
        .unwrap();
    assert!(dom.backend().0.translate(iova, IommuPerm::READ).is_err());
    assert_eq!(dom.reserved_bytes(), 0);
    assert_eq!(pages.cpu_bytes()[0x1234], 0x5a);
}

#[test]
fn virtual_granules_must_lie_inside_the_buffer() {
    let mut mem = Box::new(Pages([0; 3 * 4096]));
    // A buffer that starts and ends inside a page: its granules hold bytes
    // of its neighbours.
    // SAFETY: memory of this process; the "device" is the software model.
    let mut pages = unsafe { HostPages::from_virt(&mut mem.0[0x100..0x2100]) }.unwrap();
    let (dom, dev) = (domain(), nvme());
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let e = m
        .map_host::<ToDevice, _>(&mut [pages.dma()], SegBuf::with_capacity(1), |_| ())
        .unwrap_err();
    assert!(
        matches!(e, MapError::PartialGranule { index: 0, .. }),
        "{e}"
    );
    assert_eq!(dom.reserved_bytes(), 0);
}

#[test]
fn an_unknown_physical_address_is_refused_where_it_is_needed() {
    let mut mem = Box::new(Pages([0; 3 * 4096]));
    // SAFETY: memory of this process; nothing reaches hardware.
    let mut pages = unsafe { HostPages::from_virt(&mut mem.0) }.unwrap();
    let dev = nvme();
    // No IOMMU: the device would need the physical address.
    // SAFETY: a simulated device; the mapping is refused before any address exists.
    let direct = unsafe { Mapper::direct(&dev) }.unwrap();
    let e = direct
        .map_host::<FromDevice, _>(&mut [pages.dma()], SegBuf::with_capacity(1), |_| ())
        .unwrap_err();
    assert_eq!(e, MapError::NoPhysAddr { index: 0 });
    drop(direct);
    // A backend that maps physical addresses needs it too.
    let soft = IommuDomain::<Dom>::software(0x1000_0000, 1 << 20).unwrap();
    let m = Mapper::iommu(&dev, &soft).unwrap();
    let e = m
        .map_host::<FromDevice, _>(&mut [pages.dma()], SegBuf::with_capacity(1), |_| ())
        .unwrap_err();
    assert_eq!(e, MapError::NoPhysAddr { index: 0 });
    assert_eq!(soft.reserved_bytes(), 0);
}

#[test]
fn host_bridge_p2p_goes_through_the_providers_process_mapping() {
    let dev = nvme();
    let dom = domain();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    // Without a process mapping of the BAR the backend has nothing to map.
    let p = cmb();
    {
        let a = p.alloc(0x2000).unwrap();
        // SAFETY: a simulated AMD host bridge forwards P2P.
        let route: P2pRoute<'_, Cmb, Nvme> =
            unsafe { Route::assume_host_bridge(&p, &dev, 6) }.into();
        let mut bv = [a.seg().into_bvec_seg()];
        let e = m
            .map_bvec::<FromDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(1), |_| ())
            .unwrap_err();
        assert_eq!(e, MapError::NoCpuMapping { index: 0 });
    }
    // With it, the BAR is linked at that address, as MMIO.
    let mut p = p;
    let bar_vaddr = 0x7f12_3400_0000usize;
    // SAFETY: a simulated mapping of the simulated BAR.
    unsafe { p.set_cpu_mapping(bar_vaddr) }.unwrap();
    let _skip = p.alloc(0x3000).unwrap();
    let a = p.alloc(0x2000).unwrap();
    let offset = a.seg().phys().as_u64() - 0xfe00_0000;
    // SAFETY: as above.
    let route: P2pRoute<'_, Cmb, Nvme> = unsafe { Route::assume_host_bridge(&p, &dev, 6) }.into();
    let mut host = Box::new(Pages([0; 3 * 4096]));
    let host_vaddr = host.0.as_ptr() as u64;
    // SAFETY: memory of this process; the "device" is the software model.
    let mut hp = unsafe { HostPages::from_virt(&mut host.0) }.unwrap();
    let mut bv: [BvecSeg<'_, Cmb>; 2] = [hp.dma().into_bvec_seg(), a.seg().into_bvec_seg()];
    m.map_bvec::<FromDevice, _, _>(&mut bv, &route, SegBuf::with_capacity(2), |v| {
        let v = v.sync();
        let s = v.segments(dev.id()).unwrap();
        assert_eq!(s.len(), 1, "host and P2P links share one IOVA run");
        let iova = s[0].addr().unwrap().as_u64();
        let b = dom.backend();
        assert_eq!(
            b.0.translate(iova + 0x10, IommuPerm::WRITE)
                .unwrap()
                .as_u64(),
            host_vaddr + 0x10
        );
        let p2p = iova + 3 * 4096;
        assert_eq!(
            b.0.translate(p2p + 0x1008, IommuPerm::WRITE)
                .unwrap()
                .as_u64(),
            bar_vaddr as u64 + offset + 0x1008
        );
        assert!(b.0.is_mmio(p2p) && !b.0.is_mmio(iova));
    })
    .unwrap();
    assert_eq!(dom.reserved_bytes(), 0);
}

#[test]
fn a_process_mapping_must_be_page_aligned() {
    let mut p = cmb();
    // SAFETY: refused before anything is recorded.
    let e = unsafe { p.set_cpu_mapping(0x7f00_0000_0800) }.unwrap_err();
    assert!(matches!(e, ProviderError::BadCpuMapping { .. }), "{e}");
    // SAFETY: as above: the BAR would wrap the address space.
    assert!(unsafe { p.set_cpu_mapping(usize::MAX - 4095) }.is_err());
    assert_eq!(p.cpu_mapping(), None);
}

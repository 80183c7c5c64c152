//! The device's limits (`DmaLimits`): segments are split at the maximum
//! size and at boundaries, a request that needs too many segments or an
//! unaligned start is refused, and nothing stays mapped after a refusal.

use dmaspace::host::{HostPages, SimulatedRam};
use dmaspace::prelude::*;
use dmaspace::vec::{HostSeg, Unsynced};

brand!(Dev);
brand!(Dom);

fn ram(base: u64, pages: usize) -> SimulatedRam {
    // SAFETY: simulated addresses only reach the software IOMMU and asserts.
    unsafe { SimulatedRam::new(PhysAddr::new(base), pages) }
}

fn device(limits: DmaLimits) -> Device<'static, Dev> {
    // SAFETY: a simulated device; nothing reaches hardware.
    unsafe { Device::new_unchecked(Bdf::new(0, 4, 0, 0), limits) }
}

fn segs(v: DmaVec<'_, Dev, ToDevice, Unsynced>) -> Vec<(u64, u64)> {
    let v = v.sync();
    v.segments(v.device())
        .unwrap()
        .iter()
        .map(|s| (s.addr().unwrap().as_u64(), s.len()))
        .collect()
}

#[test]
fn an_iova_run_is_split_at_the_maximum_segment_size() {
    let dev = device(DmaLimits::BITS_64.max_segment_size(0x1800));
    let dom = IommuDomain::<Dom>::software(0x10_0000, 3 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let mut hs: Vec<HostSeg<'_>> = pages.iter_mut().map(HostPages::dma).collect();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let got = m
        .map_host::<ToDevice, _>(&mut hs, SegBuf::with_capacity(1), segs)
        .unwrap();
    assert_eq!(got, [(0x10_0000, 0x1800), (0x10_1800, 0x1800)]);
}

#[test]
fn limits_set_after_a_first_mapping_cut_the_next_one() {
    // A driver maps under limits any device of its kind takes, learns the
    // real ones from the device (NVMe: MDTS from Identify), then narrows.
    let mut dev = device(DmaLimits::BITS_64);
    let dom = IommuDomain::<Dom>::software(0x10_0000, 3 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 3);
    let run = |dev: &Device<'_, Dev>, mem: &mut SimulatedRam| {
        let mut pages: Vec<_> = mem.pages().collect();
        let mut hs: Vec<HostSeg<'_>> = pages.iter_mut().map(HostPages::dma).collect();
        let m = Mapper::iommu(dev, &dom).unwrap();
        m.map_host::<ToDevice, _>(&mut hs, SegBuf::with_capacity(4), segs)
            .unwrap()
    };
    assert_eq!(run(&dev, &mut mem), [(0x10_0000, 0x3000)]);
    dev.set_limits(DmaLimits::BITS_64.max_segment_size(0x1000));
    assert_eq!(dev.limits().max_segment_size_bytes(), 0x1000);
    assert_eq!(
        run(&dev, &mut mem),
        [
            (0x10_0000, 0x1000),
            (0x10_1000, 0x1000),
            (0x10_2000, 0x1000)
        ]
    );
}

#[test]
fn segments_never_cross_the_boundary() {
    // A 64 KiB boundary; the IOVA run starts 8 KiB below one.
    let dev = device(DmaLimits::BITS_64.segment_boundary(0xffff));
    let dom = IommuDomain::<Dom>::software(0xe000, 3 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let mut hs: Vec<HostSeg<'_>> = pages.iter_mut().map(HostPages::dma).collect();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let mut slots = [SegSlot::EMPTY; 2];
    let got = m
        .map_host::<ToDevice, _>(&mut hs, SegBuf::from_slots(&mut slots), segs)
        .unwrap();
    assert_eq!(got, [(0xe000, 0x2000), (0x1_0000, 0x1000)]);
    // One slot: the merged run fits, its pieces do not. Nothing stays mapped.
    let mut slots = [SegSlot::EMPTY; 1];
    let err = m
        .map_host::<ToDevice, _>(&mut hs, SegBuf::from_slots(&mut slots), segs)
        .unwrap_err();
    assert_eq!(err, MapError::OutOfCapacity { capacity: 1 });
    assert_eq!(dom.reserved_granules(), 0);
}

#[test]
fn a_request_needing_too_many_segments_is_refused_not_truncated() {
    let dev = device(DmaLimits::BITS_64.max_segment_size(0x1000).max_segments(2));
    let dom = IommuDomain::<Dom>::software(0, 8 * 4096).unwrap();
    let mut mem = ram(0x20_0000, 3);
    let mut pages: Vec<_> = mem.pages().collect();
    let mut hs: Vec<HostSeg<'_>> = pages.iter_mut().map(HostPages::dma).collect();
    let m = Mapper::iommu(&dev, &dom).unwrap();
    let err = m
        .map_host::<ToDevice, _>(&mut hs, SegBuf::with_capacity(8), segs)
        .unwrap_err();
    assert_eq!(err, MapError::TooManySegments { max: 2, needed: 3 });
    assert_eq!(dom.reserved_granules(), 0, "nothing stays mapped");
    assert_eq!(
        m.map_host::<ToDevice, _>(&mut hs[..2], SegBuf::with_capacity(8), segs)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn an_unaligned_segment_start_is_refused() {
    // NVMe PRP entries must be dword-aligned.
    let dev = device(DmaLimits::BITS_64.alignment(4));
    // SAFETY: the simulated device reaches simulated memory by physical address.
    let m = unsafe { Mapper::direct(&dev) }.unwrap();
    let mut mem = ram(0x20_0000, 1);
    let mut page = mem.pages().next().unwrap();
    let err = m
        .map_host::<ToDevice, _>(
            &mut [page.dma_range(2, 16).unwrap()],
            SegBuf::with_capacity(1),
            segs,
        )
        .unwrap_err();
    assert_eq!(
        err,
        MapError::Misaligned {
            addr: 0x20_0002,
            align: 4
        }
    );
    let got = m
        .map_host::<ToDevice, _>(
            &mut [page.dma_range(4, 16).unwrap()],
            SegBuf::with_capacity(1),
            segs,
        )
        .unwrap();
    assert_eq!(got, [(0x20_0004, 16)]);
}

#[test]
fn limits_apply_to_direct_segments_too_and_a_growable_output_grows() {
    let dev = device(DmaLimits::BITS_64.max_segment_size(0x400));
    // SAFETY: the simulated device reaches simulated memory by physical address.
    let m = unsafe { Mapper::direct(&dev) }.unwrap();
    let mut mem = ram(0x20_0000, 1);
    let mut page = mem.pages().next().unwrap();
    let got = m
        .map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), segs)
        .unwrap();
    let want: Vec<_> = (0..4).map(|i| (0x20_0000 + i * 0x400, 0x400)).collect();
    assert_eq!(got, want);
}

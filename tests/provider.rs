//! The P2P provider's allocator: shared by threads, sub-page and aligned
//! requests, first fit against a naive reference, exhaustion, forgotten
//! allocations, and the IOMMU whole-granule rule for P2P segments.

use std::collections::BTreeMap;
use std::sync::Mutex;

use dmaspace::dir::ToDevice;
use dmaspace::error::MapError;
use dmaspace::iommu::GRANULE;
use dmaspace::prelude::*;
use dmaspace::provider::{MIN_GRANULE, P2pAlloc, ProviderError};
use dmaspace::vec::SegOf;
use proptest::prelude::*;

brand!(Cmb);
brand!(Nic);
brand!(Dom);

fn provider(cpu: u64, size: u64) -> Provider<Cmb> {
    // SAFETY: a simulated BAR; its addresses only reach asserts and the
    // software IOMMU.
    unsafe {
        Provider::new(
            Bdf::new(0, 3, 0, 0),
            2,
            PhysAddr::new(cpu),
            BusAddr::new_unchecked(cpu),
            size,
        )
    }
    .unwrap()
}

fn phys(a: &P2pAlloc<'_, Cmb>) -> u64 {
    a.seg().phys().as_u64()
}

#[test]
fn sub_page_requests_take_64_byte_granules_and_aligned_ones_their_alignment() {
    let p = provider(0x10_0000, 1 << 20);
    assert_eq!(p.granule(), MIN_GRANULE);
    let a = p.alloc(1).unwrap();
    let b = p.alloc(65).unwrap(); // two granules
    let c = p.alloc(64).unwrap();
    assert_eq!(
        (phys(&a), phys(&b), phys(&c)),
        (0x10_0000, 0x10_0040, 0x10_00c0)
    );
    assert_eq!(p.allocated_bytes(), 4 * 64);
    for align in [128, 256, 512, 1024, 2048, 4096, 8192, 1 << 16] {
        let x = p.alloc_aligned(100, align).unwrap();
        assert_eq!(phys(&x) % align, 0, "align {align:#x}");
        assert_eq!(x.len(), 100);
    }
    // A page or more: whole pages, page-aligned.
    let before = p.allocated_bytes();
    let q = p.alloc(4097).unwrap();
    assert_eq!(phys(&q) % 4096, 0);
    assert_eq!(p.allocated_bytes() - before, 8192);
    assert_eq!(
        p.alloc_aligned(1, 3).unwrap_err(),
        ProviderError::BadAlignment { align: 3 }
    );
    assert_eq!(
        p.alloc_aligned(1, 0).unwrap_err(),
        ProviderError::BadAlignment { align: 0 }
    );
    assert_eq!(p.alloc(0).unwrap_err(), ProviderError::EmptyAllocation);
}

#[test]
fn alignment_is_of_the_cpu_address_not_of_the_offset_in_the_bar() {
    // A BAR that starts on an odd page: 8 KiB alignment is one page in.
    let p = provider(0x10_1000, 1 << 20);
    let a = p.alloc_aligned(64, 0x2000).unwrap();
    assert_eq!(phys(&a), 0x10_2000);
    // A large BAR: 16 KiB granules, so a page-aligned start cannot reach
    // 8 KiB alignment anywhere; 4 KiB still holds.
    let big = provider(0x40_0000_1000, 16 << 30);
    assert_eq!(big.granule(), 16 << 10);
    assert_eq!(
        big.alloc_aligned(1, 0x2000).unwrap_err(),
        ProviderError::BadAlignment { align: 0x2000 }
    );
    assert_eq!(
        big.alloc_aligned(1, 0x8000).unwrap_err(),
        ProviderError::BadAlignment { align: 0x8000 }
    );
    let one = big.alloc(1).unwrap();
    assert_eq!(phys(&one), 0x40_0000_1000);
    assert_eq!(big.allocated_bytes(), 16 << 10);
}

#[test]
fn a_bar_of_any_size_is_served_whole() {
    // Far more than the old 4096 granules, at 64 bytes each.
    let p = provider(0x1000_0000, 64 << 20);
    assert_eq!(p.granule(), 64);
    let all: Vec<_> = (0..(64 << 20) / 4096)
        .map(|_| p.alloc(4096).unwrap())
        .collect();
    assert_eq!(p.allocated_bytes(), 64 << 20);
    assert_eq!(p.alloc(1).unwrap_err(), ProviderError::Exhausted { len: 1 });
    drop(all);
    let whole = p.alloc(64 << 20).unwrap();
    assert_eq!(phys(&whole), 0x1000_0000);
}

#[test]
fn exhaustion_is_an_error_and_freeing_makes_room() {
    let p = provider(0x10_0000, 8192);
    let a = p.alloc(4096).unwrap();
    let b = p.alloc(2048).unwrap();
    assert_eq!(
        p.alloc(4096).unwrap_err(),
        ProviderError::Exhausted { len: 4096 }
    );
    assert_eq!(
        p.alloc(1 << 20).unwrap_err(),
        ProviderError::Exhausted { len: 1 << 20 }
    );
    assert_eq!(
        p.alloc(u64::MAX).unwrap_err(),
        ProviderError::Exhausted { len: u64::MAX }
    );
    let c = p.alloc(2048).unwrap();
    assert_eq!(phys(&c), 0x10_1800);
    drop(a);
    assert_eq!(phys(&p.alloc(4096).unwrap()), 0x10_0000);
    drop((b, c));
    assert_eq!(p.allocated_bytes(), 0);
}

#[test]
fn a_forgotten_allocation_leaks_its_range_and_is_never_handed_out_again() {
    let p = provider(0x10_0000, 4 * 4096);
    let a = p.alloc(4096).unwrap();
    let leaked = phys(&a);
    std::mem::forget(a);
    let rest: Vec<_> = (0..3).map(|_| p.alloc(4096).unwrap()).collect();
    assert!(rest.iter().all(|r| phys(r) != leaked));
    assert!(p.alloc(64).is_err());
    drop(rest);
    assert_eq!(p.allocated_bytes(), 4096);
    assert_ne!(phys(&p.alloc(4096).unwrap()), leaked);
}

#[test]
fn threads_share_one_provider_without_overlap() {
    let p = provider(0x8_0000_0000, 16 << 20);
    let live: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (p, live) = (&p, &live);
            s.spawn(move || {
                let mut mine = Vec::new();
                for i in 0..2000u64 {
                    let len = 1 + (i * 7919 + t * 104_729) % 9000;
                    let align = 64 << ((i + t) % 8);
                    let a = p.alloc_aligned(len, align).unwrap();
                    let (start, end) = (phys(&a), phys(&a) + len);
                    assert_eq!(start % align, 0);
                    {
                        let mut l = live.lock().unwrap();
                        if let Some((&s0, &e0)) = l.range(..end).next_back() {
                            assert!(e0 <= start, "{start:#x} overlaps {s0:#x}..{e0:#x}");
                        }
                        l.insert(start, end);
                    }
                    mine.push(a);
                    if mine.len() > 1 + (i % 32) as usize {
                        // Give back an old one (out of order with the others).
                        let old = mine.remove((i % 5) as usize % mine.len());
                        live.lock().unwrap().remove(&phys(&old));
                        drop(old);
                    }
                }
                for a in mine {
                    live.lock().unwrap().remove(&phys(&a));
                }
            });
        }
    });
    // Every granule came back: the bitmap is clean, and the whole BAR fits.
    assert_eq!(p.allocated_bytes(), 0);
    assert_eq!(phys(&p.alloc(16 << 20).unwrap()), 0x8_0000_0000);
}

#[test]
fn a_sub_page_p2p_allocation_is_refused_through_the_iommu_only() {
    let p = provider(0x4000_0000, 1 << 20);
    // SAFETY: a simulated client; nothing reaches hardware.
    let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    let small = p.alloc(512).unwrap();
    let page = p.alloc(4096).unwrap();
    assert!(!small.seg().covers_granules());
    assert!(page.seg().covers_granules());
    assert!(page.seg_range(100, 200).unwrap().covers_granules());
    // SAFETY: test: the host bridge forwards P2P between them (AMD Zen).
    let thru: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_host_bridge(&p, &nic, 6) }.into();
    // SAFETY: test: both below one switch, no ACS redirect.
    let bus: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&p, &nic, 4) }.into();
    macro_rules! map {
        ($m:expr, $seg:expr, $route:expr) => {
            $m.map_bvec::<ToDevice, _, _>(
                &mut [$seg.into_bvec_seg()],
                $route,
                SegBuf::with_capacity(1),
                |_| (),
            )
        };
    }
    {
        let dom = IommuDomain::<Dom>::software(0x100_0000, 16 * GRANULE).unwrap();
        let m = Mapper::iommu(&nic, &dom).unwrap();
        assert_eq!(
            map!(m, small.seg(), &thru).unwrap_err(),
            MapError::PartialGranule {
                index: 0,
                granule: GRANULE
            }
        );
        assert_eq!(dom.reserved_granules(), 0, "nothing stays reserved");
        map!(m, page.seg(), &thru).unwrap();
        // The bus-address route bypasses the IOMMU: any allocation goes.
        map!(m, small.seg(), &bus).unwrap();
    }
    // Without an IOMMU, the host-bridge route uses the physical address.
    // SAFETY: the simulated client reaches simulated memory by address.
    let direct = unsafe { Mapper::direct(&nic) }.unwrap();
    map!(direct, small.seg(), &thru).unwrap();
}

/// The reference: live ranges in a map, every candidate offset tried in
/// order, with the rules written out plainly.
struct Naive {
    cpu: u64,
    granules: u64,
    g: u64,
    live: BTreeMap<u64, u64>,
}

impl Naive {
    fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let unit = self.g.max(align.min(4096));
        let reserve = len.div_ceil(unit) * unit;
        let end = self.granules * self.g;
        let mut off = 0;
        while off + reserve <= end {
            let free = self
                .live
                .range(..off + reserve)
                .next_back()
                .is_none_or(|(_, &e)| e <= off);
            if (self.cpu + off) % align == 0 && free {
                self.live.insert(off, off + reserve);
                return Some(self.cpu + off);
            }
            off += self.g;
        }
        None
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { len: u64, align_shift: u32 },
    Free(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (1u64..20_000, 0u32..15).prop_map(|(len, align_shift)| Op::Alloc { len, align_shift }),
        2 => any::<usize>().prop_map(Op::Free),
    ];
    proptest::collection::vec(op, 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// First fit, exactly: the same address as the reference for every
    /// request, the same refusals, and the same bytes in use.
    #[test]
    fn matches_a_naive_first_fit(
        pages in 1u64..24,
        start_page in 0u64..16,
        ops in ops(),
    ) {
        let (cpu, size) = (0x4000_0000 + start_page * 4096, pages * 4096);
        let p = provider(cpu, size);
        let mut naive = Naive { cpu, granules: size / p.granule(), g: p.granule(), live: BTreeMap::new() };
        let mut held: Vec<P2pAlloc<'_, Cmb>> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { len, align_shift } => {
                    let align = 1u64 << align_shift;
                    let got = p.alloc_aligned(len, align).ok();
                    let want = naive.alloc(len, align);
                    prop_assert_eq!(got.as_ref().map(phys), want, "alloc({:#x}, {:#x})", len, align);
                    if let Some(a) = got {
                        prop_assert_eq!(a.len(), len);
                        held.push(a);
                    }
                }
                Op::Free(i) if !held.is_empty() => {
                    let a = held.swap_remove(i % held.len());
                    naive.live.remove(&(phys(&a) - cpu));
                }
                Op::Free(_) => {}
            }
            let used: u64 = naive.live.values().zip(naive.live.keys()).map(|(e, s)| e - s).sum();
            prop_assert_eq!(p.allocated_bytes(), used);
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! A Rust PCI driver for QEMU's `edu` device (1234:11e8) whose every DMA
//! address is a dmaspace type.
//!
//! edu has a DMA engine (BAR0: source 0x80, destination 0x88, count 0x90,
//! command 0x98) and a 4 KiB buffer at device address 0x40000. At probe the
//! driver moves data RAM -> edu -> RAM through a coherent buffer and through
//! two streaming scatter-gather tables (one `ToDevice`, one `FromDevice`),
//! compares every byte, and prints one line per check:
//! `dmaspace-edu: NAME: ok ...` or `dmaspace-edu: NAME: FAILED why`.
//! With `contains=1` (only behind an IOMMU) it also aims the engine at the
//! address of a freed buffer and checks that no byte of a live buffer moved.
//!
//! The registers take `DmaAddr<'_, Edu, D>` only: the source must be a
//! direction the device reads, the destination one it writes, and the
//! addresses come from `dmaspace_kernel`'s views of the kernel's mappings,
//! which they cannot outlive. The one `unsafe` for an address is the
//! deliberate stale one of the containment check.

use dmaspace::dir::{Bidirectional, DeviceReads, DeviceWrites, FromDevice, ToDevice};
use dmaspace::error::MapError;
use dmaspace::vec::DmaSeg;
use dmaspace::{brand, DmaAddr};
use dmaspace_kernel::{
    coherent, coherent_read, coherent_write, KernelDirection, PciDma, Streaming,
};
use kernel::{
    device::Core,
    dma::Coherent,
    io::Io,
    pci,
    prelude::*,
    time::{delay::fsleep, Delta},
};

brand!(
    /// QEMU's edu device.
    Edu
);

/// edu's registers in BAR0.
const REG_IDENT: usize = 0x00;
const REG_DMA_SRC: usize = 0x80;
const REG_DMA_DST: usize = 0x88;
const REG_DMA_CNT: usize = 0x90;
const REG_DMA_CMD: usize = 0x98;
const BAR0_SIZE: usize = 0x100;
/// Command bits: start; direction edu -> RAM.
const CMD_START: u32 = 1;
const CMD_FROM_EDU: u32 = 2;
/// edu's own buffer, as the engine addresses it. QEMU 7.2 aborts on a transfer
/// that ends exactly at its end: every transfer here stays below it.
const EDU_BUF: u32 = 0x40000;
const EDU_BUF_LEN: usize = 4096;
/// edu's DMA engine handles 28-bit addresses (QEMU's default `dma_mask`).
const EDU_DMA_BITS: u32 = 28;

type Bar0<'a> = pci::Bar<'a, BAR0_SIZE>;

/// Why a check failed (printed with `{:?}`).
#[derive(Debug)]
#[expect(dead_code, reason = "the fields are read by Debug, into the log")]
enum Fail {
    Kernel(Error),
    Map(MapError),
    /// The address does not fit edu's 32-bit register halves.
    AddrTooHigh(u64),
    /// The engine did not finish.
    Timeout,
    /// A transfer would reach the end of edu's buffer (QEMU 7.2 aborts).
    EduRange {
        off: usize,
        len: usize,
    },
    /// Byte `at` is `got`, `want` expected.
    Mismatch {
        at: usize,
        want: u8,
        got: u8,
    },
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Kernel(e)
    }
}
impl From<kernel::alloc::AllocError> for Fail {
    fn from(_: kernel::alloc::AllocError) -> Self {
        Fail::Kernel(ENOMEM)
    }
}
impl From<MapError> for Fail {
    fn from(e: MapError) -> Self {
        Fail::Map(e)
    }
}

fn pattern(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(seed) ^ ((i >> 8) as u8)
}

/// The address as edu's 32-bit register halves take it (the upper half stays 0).
fn low32(a: u64) -> Result<u32, Fail> {
    u32::try_from(a).map_err(|_| Fail::AddrTooHigh(a))
}

/// Runs one transfer and waits for the engine (edu's timer fires after 100 ms).
fn run(bar: &Bar0<'_>, src: u32, dst: u32, len: usize, cmd: u32) -> Result<(), Fail> {
    // 7.3's `pci::Bar` refuses 64-bit accesses at compile time; a 32-bit
    // write sets edu's 64-bit register with a zero upper half.
    bar.write32(src, REG_DMA_SRC);
    bar.write32(dst, REG_DMA_DST);
    bar.write32(len as u32, REG_DMA_CNT);
    bar.write32(cmd | CMD_START, REG_DMA_CMD);
    for _ in 0..200 {
        if bar.read32(REG_DMA_CMD) & CMD_START == 0 {
            return Ok(());
        }
        fsleep(Delta::from_millis(10));
    }
    Err(Fail::Timeout)
}

/// Refuses a transfer that would reach the end of edu's buffer.
fn edu_range(off: usize, len: usize) -> Result<(), Fail> {
    if len == 0 || off + len >= EDU_BUF_LEN {
        return Err(Fail::EduRange { off, len });
    }
    Ok(())
}

/// RAM -> edu: the source is memory the device may read.
fn to_edu<D: DeviceReads>(
    bar: &Bar0<'_>,
    src: DmaAddr<'_, Edu, D>,
    edu_off: usize,
    len: usize,
) -> Result<(), Fail> {
    edu_range(edu_off, len)?;
    run(bar, low32(src.as_u64())?, EDU_BUF + edu_off as u32, len, 0)
}

/// edu -> RAM: the destination is memory the device may write.
fn from_edu<D: DeviceWrites>(
    bar: &Bar0<'_>,
    edu_off: usize,
    dst: DmaAddr<'_, Edu, D>,
    len: usize,
) -> Result<(), Fail> {
    edu_range(edu_off, len)?;
    run(
        bar,
        EDU_BUF + edu_off as u32,
        low32(dst.as_u64())?,
        len,
        CMD_FROM_EDU,
    )
}

/// Calls `f(segment, offset in it, offset in the range, length)` for each
/// piece of the byte range `[start, start + len)` of a mapping's segments.
fn pieces<D: dmaspace::dir::Direction>(
    segs: &[DmaSeg<Edu, D>],
    start: usize,
    len: usize,
    mut f: impl FnMut(&DmaSeg<Edu, D>, u64, usize, usize) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let (mut seg_base, mut done) = (0usize, 0usize);
    for s in segs {
        let seg_len = s.len() as usize;
        let pos = start + done;
        if done < len && pos < seg_base + seg_len {
            let off = pos - seg_base;
            let n = (seg_len - off).min(len - done);
            f(s, off as u64, done, n)?;
            done += n;
        }
        seg_base += seg_len;
    }
    if done == len {
        Ok(())
    } else {
        Err(Fail::Map(MapError::NotInMapping))
    }
}

fn compare(got: &[u8], want: impl Fn(usize) -> u8, base: usize) -> Result<(), Fail> {
    for (i, &g) in got.iter().enumerate() {
        if g != want(i) {
            return Err(Fail::Mismatch {
                at: base + i,
                want: want(i),
                got: g,
            });
        }
    }
    Ok(())
}

/// Coherent: 2 KiB of a pattern to edu, back into the other half, compared.
fn check_coherent(
    dma: &PciDma<Edu>,
    pdev: &pci::Device<Core<'_>>,
    bar: &Bar0<'_>,
) -> Result<u64, Fail> {
    const HALF: usize = 2048;
    let c = Coherent::<u8>::zeroed_slice(pdev.as_ref(), 2 * HALF, GFP_KERNEL)?;
    let mut buf = KVec::from_elem(0u8, HALF, GFP_KERNEL)?;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(0x31, i);
    }
    coherent_write(&c, 0, &buf)?;
    buf.iter_mut().for_each(|b| *b = 0xee);
    coherent_write(&c, HALF, &buf)?;
    let addr = coherent(dma, &c, |v| -> Result<u64, Fail> {
        let seg: &DmaSeg<Edu, Bidirectional> = &v.segments(dma.device().id())?[0];
        to_edu(bar, seg.at(0)?, 0, HALF)?;
        from_edu(bar, 0, seg.at(HALF as u64)?, HALF)?;
        Ok(seg.at(0)?.as_u64())
    })??;
    coherent_read(&c, HALF, &mut buf)?;
    compare(&buf, |i| pattern(0x31, i), HALF)?;
    coherent_read(&c, 0, &mut buf)?;
    compare(&buf, |i| pattern(0x31, i), 0)?;
    Ok(addr)
}

/// Streaming: a range across a page boundary of a `ToDevice` table to edu,
/// back into a `FromDevice` table; every byte of both tables compared.
fn check_streaming(
    dma: &PciDma<Edu>,
    pdev: &pci::Device<Core<'_>>,
    bar: &Bar0<'_>,
) -> Result<(usize, usize, u64), Fail> {
    const LEN: usize = 8192;
    const START: usize = 2048;
    const N: usize = 4000;
    let mut a = Streaming::<Edu, ToDevice>::new(dma, pdev, LEN)?;
    let mut b = Streaming::<Edu, FromDevice>::new(dma, pdev, LEN)?;
    let mut buf = KVec::from_elem(0u8, LEN, GFP_KERNEL)?;
    for (i, x) in buf.iter_mut().enumerate() {
        *x = pattern(0x5b, i);
    }
    a.write(0, &buf)?;
    buf.iter_mut().for_each(|x| *x = 0xee);
    b.write(0, &buf)?;
    let (na, first) = a.segments(dma, pdev, |v| -> Result<(usize, u64), Fail> {
        let segs = v.segments(dma.device().id())?;
        pieces(segs, START, N, |s, off, done, n| {
            to_edu(bar, s.at(off)?, done, n)
        })?;
        Ok((segs.len(), segs[0].at(0)?.as_u64()))
    })??;
    let nb = b.segments(dma, pdev, |v| -> Result<usize, Fail> {
        let segs = v.segments(dma.device().id())?;
        pieces(segs, START, N, |s, off, done, n| {
            from_edu(bar, done, s.at(off)?, n)
        })?;
        Ok(segs.len())
    })??;
    b.read(0, &mut buf)?;
    compare(&buf[..START], |_| 0xee, 0)?;
    compare(&buf[START..START + N], |i| pattern(0x5b, START + i), START)?;
    compare(&buf[START + N..], |_| 0xee, START + N)?;
    a.read(0, &mut buf)?;
    compare(&buf, |i| pattern(0x5b, i), 0)?;
    Ok((na, nb, first))
}

/// Containment: the engine aimed at the address of a freed coherent buffer
/// (through dmaspace's `unsafe` escape) must change no byte of a live buffer;
/// the IOMMU faults it (the e2e checks the guest's DMAR log for `stale`).
fn check_contains(
    dma: &PciDma<Edu>,
    pdev: &pci::Device<Core<'_>>,
    bar: &Bar0<'_>,
) -> Result<u64, Fail> {
    const LEN: usize = 4096;
    let canary = Coherent::<u8>::zeroed_slice(pdev.as_ref(), LEN, GFP_KERNEL)?;
    let mut buf = KVec::from_elem(0x11u8, LEN, GFP_KERNEL)?;
    coherent_write(&canary, 0, &buf)?;
    let victim = Coherent::<u8>::zeroed_slice(pdev.as_ref(), LEN, GFP_KERNEL)?;
    let stale = coherent(dma, &victim, |v| -> Result<u64, Fail> {
        Ok(v.segments(dma.device().id())?[0].at(0)?.as_u64())
    })??;
    // dma_free_coherent: with iommu.strict=1 the IOVA is unmapped and flushed now.
    drop(victim);
    // SAFETY: deliberately false, and the point of this check: `stale` was
    // freed above. The IOMMU must stop the write; the canary proves that
    // no live buffer changed, the guest's DMAR log names the address.
    let gone = unsafe { DmaAddr::<Edu, FromDevice>::new_unchecked(stale) };
    from_edu(bar, 0, gone, 64)?;
    coherent_read(&canary, 0, &mut buf)?;
    compare(&buf, |_| 0x11, 0)?;
    Ok(stale)
}

struct EduDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <EduDriver as pci::Driver>::IdInfo,
    // No `pci::Vendor` for QEMU's 0x1234: match edu's class, check the IDs in probe.
    [(pci::DeviceId::from_class(0x00ff00, 0xffff00), ())]
);

impl pci::Driver for EduDriver {
    type IdInfo = ();
    type Data<'bound> = ();
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        if pdev.vendor_id().as_raw() != 0x1234 || pdev.device_id() != 0x11e8 {
            return Err(ENODEV);
        }
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar = pdev.iomap_region_sized::<BAR0_SIZE>(0, c"dmaspace_edu")?;
        dev_info!(pdev, "dmaspace-edu: ident {:#x}\n", bar.read32(REG_IDENT));
        // SAFETY: probe: no DMA allocation or mapping for this device runs
        // concurrently, and this is the only `PciDma` made for it.
        let dma = unsafe { PciDma::<Edu>::new(pdev, EDU_DMA_BITS)? };
        dev_info!(
            pdev,
            "dmaspace-edu: DmaLimits mask {:#x}\n",
            dma.device().limits().dma_mask()
        );
        dev_info!(
            pdev,
            "dmaspace-edu: directions {} {}\n",
            <ToDevice as KernelDirection>::DATA as u32,
            <FromDevice as KernelDirection>::DATA as u32
        );

        match check_coherent(&dma, pdev, &bar) {
            Ok(a) => dev_info!(
                pdev,
                "dmaspace-edu: coherent: ok (4096 bytes at {:#x})\n",
                a
            ),
            Err(e) => dev_err!(pdev, "dmaspace-edu: coherent: FAILED {:?}\n", e),
        }
        match check_streaming(&dma, pdev, &bar) {
            Ok((na, nb, a)) => dev_info!(
                pdev,
                "dmaspace-edu: streaming: ok (4000 bytes, {} + {} segments, first at {:#x})\n",
                na,
                nb,
                a
            ),
            Err(e) => dev_err!(pdev, "dmaspace-edu: streaming: FAILED {:?}\n", e),
        }
        if module_parameters::contains.value() {
            match check_contains(&dma, pdev, &bar) {
                Ok(a) => dev_info!(
                    pdev,
                    "dmaspace-edu: contains: ok (no byte changed) stale={:#x}\n",
                    a
                ),
                Err(e) => dev_err!(pdev, "dmaspace-edu: contains: FAILED {:?}\n", e),
            }
        }
        dev_info!(pdev, "dmaspace-edu: done\n");
        Ok(())
    }
}

kernel::module_pci_driver! {
    type: EduDriver,
    name: "dmaspace_edu",
    authors: ["dmaspace"],
    description: "QEMU edu driven with dmaspace-typed DMA addresses",
    license: "GPL v2",
    params: {
        contains: bool {
            default: false,
            description: "Also aim the engine at a freed buffer (only behind an IOMMU)",
        },
    },
}

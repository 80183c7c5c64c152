//! The scenarios of issue 10, each one verdict: `Ok(detail)` or `Err(why)`.
//! Every transfer is proven by comparing bytes: QEMU 7.2's NVMe completes a
//! command with success even when the IOMMU blocked its DMA.
//!
//! Each scenario opens its functions through VFIO (type1 or no-IOMMU) or
//! iommufd under one of dmaspace's backends, reads the guest's machine from
//! sysfs, claims the controllers as `Device<Nvme>`s with their `DmaLimits`,
//! and classifies P2P pairs with `P2pRoute::classify`: the route's kind
//! decides the driver's path, and a refused pair is the crate's typed
//! `RouteError::NotSupported`.

use std::fmt::Display;
use std::time::{Duration, Instant};

use dmaspace::PhysAddr;
use dmaspace::backend::BackendErrorKind;
use dmaspace::device::Device;
use dmaspace::dir::FromDevice;
use dmaspace::error::MapError;
use dmaspace::limits::DmaLimits;
use dmaspace::machine::Machine;
use dmaspace::map::Translation;
use dmaspace::provider::Provider;
use dmaspace::route::{P2pRoute, RouteError};
use dmaspace::vec::Via;
use dmaspace_vfio::backend::vfio_bar::VfioBarProvider;
use dmaspace_vfio::backend::vfio_dmabuf::DmaBufBar;
use dmaspace_vfio::backend::vfio_noiommu::NoIommuError;
use dmaspace_vfio::{MappedBar, PinnedMemory, VfioDevice};

use crate::classify::{kernel_distance, machine};
use crate::dma::{Backend, CmbMem, Nvme, Opened, open_iommufd, open_vfio};
use crate::kmsg::{Kmsg, dmar_fault_in};
use crate::nvme::{self, Controller, NvmeError};
use crate::seam::DevAddr;
use crate::with_mapper;
use dmaspace::pci::Bdf;

/// A scenario's verdict: what it showed, or why it failed.
pub type Outcome = Result<String, String>;

pub(crate) fn s<E: Display>(ctx: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{ctx}: {e}")
}

/// A seeded byte pattern (xorshift64*), different for every seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Compares `got` with `want`: `Err` names the first differing byte and how many differ.
pub fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} bytes, expected {}",
            got.len(),
            want.len()
        ));
    }
    let bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: {bad} of {} bytes differ, first at {i:#x} (got {:#04x}, want {:#04x})",
            want.len(),
            got[i],
            want[i]
        )),
    }
}

pub(crate) fn read_back(mem: &PinnedMemory, off: usize, len: usize) -> Result<Vec<u8>, String> {
    let mut v = vec![0u8; len];
    mem.read(off, &mut v).map_err(s("read buffer"))?;
    Ok(v)
}

/// Pinned host memory holding `data` at `off`.
pub(crate) fn filled(off: usize, data: &[u8]) -> Result<PinnedMemory, String> {
    let mut m = PinnedMemory::new(off + data.len()).map_err(s("alloc"))?;
    m.write(off, data).map_err(s("fill"))?;
    Ok(m)
}

/// Pinned host memory of `len` bytes, every byte `byte`.
pub(crate) fn poisoned(len: usize, byte: u8) -> Result<PinnedMemory, String> {
    let mut m = PinnedMemory::new(len).map_err(s("alloc"))?;
    let l = m.len();
    m.fill(0, l, byte).map_err(s("fill"))?;
    Ok(m)
}

/// Claims controller `i` of `o` as an NVMe device of `machine`, with the
/// limits it reports: claimed with the limits any NVMe has, for Identify
/// (MDTS), then narrowed (`Device::set_limits`, once that first mapper is
/// gone) to MDTS and QEMU's PRP limit.
pub(crate) fn claim<'m>(
    machine: &'m Machine,
    o: &Opened,
    i: usize,
) -> Result<Device<'m, Nvme>, String> {
    let vdev = &o.devices[i];
    let at = vdev.address();
    let mut dev = machine
        .device::<Nvme>(at, nvme::base_limits())
        .map_err(|e| e.to_string())?;
    let mdts = with_mapper!(&o, &dev, |m| {
        let c = Controller::init(vdev, &m, o.backend.mode(), false)
            .map_err(|e| format!("identify {}: {e}", vdev.address()))?;
        c.mdts_bytes()
    });
    dev.set_limits(nvme::limits(mdts));
    Ok(dev)
}

pub(crate) fn init<'m, 'd, T: Translation>(
    vdev: &'m VfioDevice,
    m: &'m dmaspace::map::Mapper<'d, Nvme, T>,
    o: &Opened,
) -> Result<Controller<'m, 'd, T>, String> {
    Controller::init(vdev, m, o.backend.mode(), true)
        .map_err(|e| format!("init {}: {e}", vdev.address()))
}

fn limits_text(l: DmaLimits) -> String {
    format!(
        "DmaLimits: segments up to {} KiB, none across a {} KiB boundary",
        l.max_segment_size_bytes() >> 10,
        (l.segment_boundary_mask() + 1) >> 10
    )
}

/// Several MiB of seeded data written from host buffers and read back into fresh
/// ones: a 4 MiB transfer from an unaligned first byte (PRP list over three
/// pages), a 2 MiB aligned one, a two-page one through PRP2, a one-block one.
pub fn host_io<T: Translation>(c: &mut Controller<'_, '_, T>, seed: u64) -> Outcome {
    let ns = c.namespace().map_err(s("namespace"))?;
    let bs = ns.lba_size;
    let page = 4096;
    // (write offset, read offset, length, first LBA)
    let cases: [(usize, usize, usize, u64); 4] = [
        (0x200, 0x400, 4 << 20, 0),
        (0, 0, 2 << 20, ((4 << 20) / bs) as u64),
        (0x600, 0xa00, (2 * page).max(bs), ((6 << 20) / bs) as u64),
        (page - bs.min(page), 0, bs, ((7 << 20) / bs) as u64),
    ];
    let need = ((9 << 20) / bs + 450) as u64;
    if ns.blocks < need {
        return Err(format!(
            "namespace has {} blocks, the test needs {need}",
            ns.blocks
        ));
    }
    let t0 = Instant::now();
    let (mut total, mut commands, mut lists, mut segments) = (0usize, 0, 0, 0);
    let mut writes = Vec::new();
    for (i, &(woff, _, len, lba)) in cases.iter().enumerate() {
        let data = pattern(seed + i as u64, len);
        let mut w = filled(woff, &data)?;
        let st = c
            .write_host(lba, &mut w, woff as u64, len as u64)
            .map_err(s("write"))?;
        commands += st.commands;
        segments += st.segments;
        lists = lists.max(st.max_list_pages);
        total += len;
        writes.push(data);
    }
    for (i, &(_, roff, len, lba)) in cases.iter().enumerate() {
        let mut r = poisoned(roff + len, 0xa5)?;
        let st = c
            .read_host(lba, &mut r, roff as u64, len as u64)
            .map_err(s("read"))?;
        commands += st.commands;
        segments += st.segments;
        lists = lists.max(st.max_list_pages);
        compare(
            &format!("case {i} ({len} bytes at LBA {lba})"),
            &read_back(&r, roff, len)?,
            &writes[i],
        )?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let sgl = if c.sgl_supported() {
        sgl_io(c, seed, &writes[0])?
    } else {
        "the controller offers no SGLs".into()
    };
    Ok(format!(
        "{}: {:.1} MiB written and read back in {commands} commands from {segments} mapped segments, PRP lists up to {lists} pages, unaligned first pages, {:.1} s ({:.1} MiB/s); {sgl}; {}",
        c.address(),
        total as f64 / f64::from(1 << 20),
        secs,
        2.0 * total as f64 / f64::from(1 << 20) / secs.max(1e-9),
        limits_text(c.mapper().device().limits()),
    ))
}

/// A vectored transfer's pieces: for each length, a buffer of its own
/// (filled with `fill`) holding the piece at offset `at(i)`.
fn piece_bufs(
    lens: &[usize],
    at: impl Fn(usize) -> usize,
    fill: u8,
) -> Result<Vec<(PinnedMemory, u64, u64)>, String> {
    lens.iter()
        .enumerate()
        .map(|(i, &l)| Ok((poisoned(at(i) + l + 64, fill)?, at(i) as u64, l as u64)))
        .collect()
}

/// The bytes of each piece, concatenated.
fn cat(
    bufs: &[PinnedMemory],
    lens: &[usize],
    at: impl Fn(usize) -> usize,
) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    for (i, (b, &l)) in bufs.iter().zip(lens).enumerate() {
        v.extend(read_back(b, at(i), l)?);
    }
    Ok(v)
}

/// SGLs, which PRPs cannot express: pieces of any length at any offset, one
/// descriptor each. (1) a gather write from three buffers, read back with
/// PRPs; (2) 300 pieces of one and a half blocks (two list pages chained by
/// a Last Segment descriptor) written, read back with PRPs, and read again
/// scattered into 300 fresh buffers, whose bytes around each piece must stay
/// untouched; (3) a scatter read of data written with PRPs (`prp_data`, at
/// LBA 0) into three pieces.
fn sgl_io<T: Translation>(
    c: &mut Controller<'_, '_, T>,
    seed: u64,
    prp_data: &[u8],
) -> Result<String, String> {
    let bs = c.namespace().map_err(s("namespace"))?.lba_size;
    let (mut commands, mut descs, mut lists) = (0usize, 0usize, 0usize);
    let mut tally = |st: nvme::IoStats| {
        commands += st.commands;
        descs += st.descriptors;
        lists = lists.max(st.max_list_pages);
    };
    // (1) Gather: 256 KiB from three pieces with odd ends.
    let lba1 = ((8 << 20) / bs) as u64;
    let lens1 = [1000, 69_000, (256 << 10) - 70_000];
    let at1 = |i: usize| [0x11, 0x7ff, 0x3][i];
    let data1 = pattern(seed + 0x51, lens1.iter().sum());
    let mut b1 = piece_bufs(&lens1, at1, 0)?;
    let mut at = 0;
    for (i, (b, _, l)) in b1.iter_mut().enumerate() {
        let l = *l as usize;
        b.write(at1(i), &data1[at..at + l]).map_err(s("fill"))?;
        at += l;
    }
    let (st, _) = c.write_host_sgl(lba1, b1).map_err(s("SGL write"))?;
    tally(st);
    let mut r1 = poisoned(data1.len(), 0xa5)?;
    c.read_host(lba1, &mut r1, 0, data1.len() as u64)
        .map_err(s("read"))?;
    compare(
        "SGL gather write, PRP read",
        &read_back(&r1, 0, data1.len())?,
        &data1,
    )?;
    // (2) 300 pieces of 1.5 blocks: a block spans two descriptors, and the
    // list needs two pages.
    let lba2 = ((9 << 20) / bs) as u64;
    let piece = bs + bs / 2;
    let lens2 = vec![piece; 300];
    let at2 = |i: usize| 100 + 8 * (i % 7);
    let data2 = pattern(seed + 0x52, piece * 300);
    let mut b2 = piece_bufs(&lens2, at2, 0)?;
    for (i, (b, _, _)) in b2.iter_mut().enumerate() {
        b.write(at2(i), &data2[i * piece..(i + 1) * piece])
            .map_err(s("fill"))?;
    }
    let (st, _) = c.write_host_sgl(lba2, b2).map_err(s("SGL write"))?;
    tally(st);
    let mut r2 = poisoned(data2.len(), 0xa5)?;
    c.read_host(lba2, &mut r2, 0, data2.len() as u64)
        .map_err(s("read"))?;
    compare(
        "300-piece SGL write, PRP read",
        &read_back(&r2, 0, data2.len())?,
        &data2,
    )?;
    let (st, s2) = c
        .read_host_sgl(lba2, piece_bufs(&lens2, at2, 0x5a)?)
        .map_err(s("SGL read"))?;
    tally(st);
    compare(
        "300-piece SGL scatter read",
        &cat(&s2, &lens2, at2)?,
        &data2,
    )?;
    for (i, b) in s2.iter().enumerate() {
        let all = read_back(b, 0, b.len())?;
        let (lo, hi) = (at2(i), at2(i) + piece);
        if let Some(p) = (0..lo).chain(hi..all.len()).find(|&p| all[p] != 0x5a) {
            return Err(format!(
                "SGL scatter read: buffer {i} changed at byte {p:#x}, outside its piece [{lo:#x}, {hi:#x})"
            ));
        }
    }
    // (3) Scatter read of PRP-written data.
    let lens3 = [4095, 123_457, (256 << 10) - 127_552];
    let at3 = |i: usize| [0x5, 0, 0xfff][i];
    let (st, b3) = c
        .read_host_sgl(0, piece_bufs(&lens3, at3, 0xa5)?)
        .map_err(s("SGL read"))?;
    tally(st);
    compare(
        "SGL scatter read of PRP-written data",
        &cat(&b3, &lens3, at3)?,
        &prp_data[..256 << 10],
    )?;
    Ok(format!(
        "SGLs: {:.2} MiB gathered from 3 and 300 pieces and scattered into 300 and 3 (odd lengths and offsets, a block across two descriptors; each buffer an owned mapping), {commands} commands, {descs} data descriptors, list pages up to {lists}",
        (data1.len() + 2 * data2.len() + (256 << 10)) as f64 / f64::from(1 << 20)
    ))
}

fn aperture_text(b: &Backend) -> String {
    match b.aperture() {
        Some((base, len)) => format!("{} domain, aperture {base:#x}+{len:#x}", b.name()),
        None => format!("{}, physical addresses", b.name()),
    }
}

/// `host-iova-type1`.
pub fn host_iova_type1(a: Bdf) -> Outcome {
    let o = open_vfio(&[a])?;
    let Backend::Type1 { domain, .. } = &o.backend else {
        return Err("the group is a no-IOMMU group, expected an IOMMU".into());
    };
    let machine = machine()?;
    let dev = claim(&machine, &o, 0)?;
    // The kernel's word decides a direct mapper: a type1 container's device is
    // translated, so `dmaspace_vfio::backend::vfio_noiommu::no_iommu_mapper` refuses it.
    let refused = match dmaspace_vfio::backend::vfio_noiommu::no_iommu_mapper(
        domain.backend().container(),
        &o.devices[0],
        &dev,
    ) {
        Err(e @ NoIommuError::NotNoIommu { .. }) => e.to_string(),
        Err(e) => return Err(format!("vfio_no_iommu on type1: {e}, want NotNoIommu")),
        Ok(_) => return Err("vfio_no_iommu accepted a type1 container".into()),
    };
    with_mapper!(&o, &dev, |m| {
        let mut c = init(&o.devices[0], &m, &o)?;
        let d = host_io(&mut c, 0x7e51)?;
        Ok(format!(
            "{d}; {}; direct mapper refused ({refused}); {} {}",
            aperture_text(&o.backend),
            c.model,
            c.serial
        ))
    })
}

/// `host-iova-iommufd`.
pub fn host_iova_iommufd(a: Bdf) -> Outcome {
    let o = open_iommufd(&[a])?;
    let machine = machine()?;
    let dev = claim(&machine, &o, 0)?;
    with_mapper!(&o, &dev, |m| {
        let mut c = init(&o.devices[0], &m, &o)?;
        let d = host_io(&mut c, 0x10fd)?;
        Ok(format!("{d}; {}", aperture_text(&o.backend)))
    })
}

/// A controller's CMB as P2P memory: BAR2 of the function published by
/// dmaspace's [`VfioBarProvider`] (the machine's record of BAR2 checked
/// against VFIO's region and the BAR register, the process mapping kept as
/// long as the provider), or, for iommufd on Linux 7.3, by [`DmaBufBar`]
/// (the same, and BAR2 exported as a dma-buf); and BAR2's bus address,
/// which the driver writes as CBA.
pub(crate) struct CmbBar<'d> {
    p: Published<'d>,
    pub(crate) bus_start: u64,
}

enum Published<'d> {
    Mmap(VfioBarProvider<CmbMem>),
    DmaBuf(DmaBufBar<'d, CmbMem>),
}

impl<'d> CmbBar<'d> {
    /// Publishes BAR2 of `vdev` on `machine` as P2P memory.
    pub(crate) fn of(machine: &Machine, vdev: &VfioDevice) -> Result<Self, String> {
        // SAFETY: BAR2 of an NVMe controller with CAP.CMBS is its CMB, plain
        // memory; this process drives the function alone (bound to vfio-pci,
        // opened above) and keeps the provider until its mappings are gone.
        let p = unsafe { VfioBarProvider::new(machine, vdev, 2) }.map_err(s("provider"))?;
        let bus_start = vdev.bar_bus_address(2).map_err(s("BAR2 register"))?;
        Ok(Self {
            p: Published::Mmap(p),
            bus_start,
        })
    }

    /// Publishes BAR2 of `vdev` on `machine` as P2P memory exported as a
    /// dma-buf (Linux 6.19 and later), for iommufd.
    pub(crate) fn exported(machine: &Machine, vdev: &'d VfioDevice) -> Result<Self, String> {
        // SAFETY: as in `of`.
        let p = unsafe { DmaBufBar::new(machine, vdev, 2) }.map_err(s("dma-buf provider"))?;
        let bus_start = vdev.bar_bus_address(2).map_err(s("BAR2 register"))?;
        Ok(Self {
            p: Published::DmaBuf(p),
            bus_start,
        })
    }

    /// The dma-buf publication, if it is one.
    pub(crate) fn dma_buf(&self) -> Option<&DmaBufBar<'d, CmbMem>> {
        match &self.p {
            Published::DmaBuf(d) => Some(d),
            Published::Mmap(_) => None,
        }
    }

    pub(crate) fn provider(&self) -> &Provider<CmbMem> {
        match &self.p {
            Published::Mmap(p) => p.provider(),
            Published::DmaBuf(d) => d.provider(),
        }
    }

    pub(crate) fn bar(&self) -> &MappedBar {
        match &self.p {
            Published::Mmap(p) => p.bar(),
            Published::DmaBuf(d) => d.bar(),
        }
    }

    /// Where P2P memory at `phys` lies in the BAR mapping.
    fn offset(&self, phys: PhysAddr) -> Result<usize, String> {
        match &self.p {
            Published::Mmap(p) => p.bar_offset(phys),
            Published::DmaBuf(d) => d.bar_offset(phys),
        }
        .ok_or_else(|| format!("{phys:?} is not in BAR2"))
    }

    pub(crate) fn cpu_read(&self, phys: PhysAddr, len: usize) -> Result<Vec<u8>, String> {
        let mut v = vec![0u8; len];
        self.bar()
            .read_bytes(self.offset(phys)?, &mut v)
            .map_err(s("CPU read of the CMB"))?;
        Ok(v)
    }
}

/// `own-cmb`: the controller reads LBAs into its own CMB and writes them from it
/// (same-device route: BAR offsets, which never leave the device); the CPU
/// checks the CMB through BAR2 and the host reads the namespace back.
pub fn own_cmb(a: Bdf) -> Outcome {
    let o = open_vfio(&[a])?;
    let machine = machine()?;
    let cmb = CmbBar::of(&machine, &o.devices[0])?;
    let dev = claim(&machine, &o, 0)?;
    let route = P2pRoute::classify(&machine, cmb.provider(), &dev).map_err(s("classify"))?;
    if !matches!(route, P2pRoute::SameDevice(_)) {
        return Err(format!(
            "own CMB classified as {}, expected the same-device route",
            route.kernel_name()
        ));
    }
    with_mapper!(&o, &dev, |m| {
        let mut c = init(&o.devices[0], &m, &o)?;
        let regs = c
            .enable_cmb(cmb.bus_start, cmb.bar().len() as u64)
            .map_err(s("enable CMB"))?;
        let bs = c.namespace().map_err(s("namespace"))?.lba_size;
        let len = (1usize << 20).min(regs.window.size as usize / 2) / bs * bs;
        let (lba_p, lba_q) = (((8 << 20) / bs) as u64, ((10 << 20) / bs) as u64);
        let pa = cmb.provider().alloc(len as u64).map_err(s("CMB alloc"))?;
        let qa = cmb.provider().alloc(len as u64).map_err(s("CMB alloc"))?;
        // Host → namespace → CMB (the controller reads into its own CMB).
        let p = pattern(0xc0b, len);
        c.write_host(lba_p, &mut filled(0, &p)?, 0, len as u64)
            .map_err(s("host write"))?;
        let st = c
            .read_p2p(lba_p, pa.seg(), &route)
            .map_err(s("read into CMB"))?;
        compare(
            "CMB after the controller read into it",
            &cmb.cpu_read(pa.phys(), len)?,
            &p,
        )?;
        // CPU → CMB → namespace (the controller writes from its own CMB) → host.
        let q = pattern(0xc0c, len);
        // SAFETY: `qa` is CMB memory this scenario allocated and no mapping of
        // it is live: a plain memory write of the CMB starts no DMA.
        unsafe { cmb.bar().write_bytes(cmb.offset(qa.phys())?, &q) }
            .map_err(s("CPU write of CMB"))?;
        c.write_p2p(lba_q, qa.seg(), &route)
            .map_err(s("write from CMB"))?;
        let mut r = poisoned(len, 0xa5)?;
        c.read_host(lba_q, &mut r, 0, len as u64)
            .map_err(s("host read"))?;
        compare(
            "namespace written from the CMB",
            &read_back(&r, 0, len)?,
            &q,
        )?;
        if regs.before != (0, 0) {
            return Err(format!(
                "CMBLOC/CMBSZ {:#x}/{:#x} with CMBMSC.CRE = 0: expected both hidden (QEMU 7.2)",
                regs.before.0, regs.before.1
            ));
        }
        let (via, first) = st.first.ok_or("no segment")?;
        Ok(format!(
            "{a}: route {} (same device); CMB {} KiB, CBA {:#x} = BAR2 bus start (the provider's); {via:?} segment at BAR offset {:#x} -> controller address {first:#x}; CMBLOC/CMBSZ {:#x}/{:#x} as left, {:#x}/{:#x} with CRE = 0, {:#x}/{:#x} after CRE|CMSE; {len} bytes each way, {} commands",
            route.kernel_name(),
            regs.window.size >> 10,
            regs.window.cba,
            cmb.offset(pa.phys())?,
            regs.left.0,
            regs.left.1,
            regs.before.0,
            regs.before.1,
            regs.after.0,
            regs.after.1,
            st.commands
        ))
    })
}

/// `iommu-contains`: after a buffer is unmapped, a read command that still
/// points at its IOVA (built with the `unsafe` escape) must not change a byte of
/// it, and the guest kernel logs a DMAR fault for that address.
pub fn iommu_contains(a: Bdf) -> Outcome {
    let o = open_vfio(&[a])?;
    if !matches!(o.backend, Backend::Type1 { .. }) {
        return Err("needs an IOMMU (type1)".into());
    }
    let machine = machine()?;
    let dev = claim(&machine, &o, 0)?;
    with_mapper!(&o, &dev, |m| {
        let mut c = init(&o.devices[0], &m, &o)?;
        let len = 64usize << 10;
        let lba = ((12 << 20) / c.namespace().map_err(s("namespace"))?.lba_size) as u64;
        let p = pattern(0xdead, len);
        c.write_host(lba, &mut filled(0, &p)?, 0, len as u64)
            .map_err(s("write"))?;
        // Positive control: the same buffer, mapped, does receive the data.
        let mut r = poisoned(len, 0x5a)?;
        c.read_host(lba, &mut r, 0, len as u64)
            .map_err(s("read (mapped)"))?;
        compare("positive control", &read_back(&r, 0, len)?, &p)?;
        // Map it once more and keep only the number of its IOVA: once the
        // mapping is gone no typed address of it exists any more.
        let l = r.len();
        r.fill(0, l, 0x5a).map_err(s("fill"))?;
        let (segs, stale) = c
            .with_host::<FromDevice, _>(&mut r, 0, len as u64, |_, segs| {
                Ok((segs.len(), segs[0].at(0)?.as_u64()))
            })
            .map_err(s("map"))?;
        if segs != 1 {
            return Err(format!("{segs} segments for one buffer through the IOMMU"));
        }
        let mut kmsg = Kmsg::from_now()?;
        let status = c.read_raw(lba, len as u64, |off| {
            // SAFETY: `stale` was this domain's IOVA of `r` and its mapping was
            // just unmapped; nothing was mapped since, so nothing is mapped there
            // and the IOMMU blocks the device. Were it not blocked, the writes
            // would land in `r`'s pages, which stay alive and owned here: no
            // memory is reached that this scenario does not own and check.
            unsafe { DevAddr::assume_valid(stale + off) }
        });
        compare(
            "unmapped buffer after a read aimed at its stale IOVA",
            &read_back(&r, 0, len)?,
            &vec![0x5a; len],
        )?;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seen = Vec::new();
        let fault = loop {
            seen.extend(kmsg.records());
            if let Some(l) = dmar_fault_in(&seen, stale, stale + len as u64) {
                break l;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no DMAR fault logged for {stale:#x}+{len:#x}; kernel said: {:?}",
                    seen.iter().rev().take(3).collect::<Vec<_>>()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(format!(
            "{a}: stale IOVA {stale:#x} (from the crate's allocator, unmapped by the VfioType1 backend) blocked, {len} bytes untouched, command status {}; kernel: {fault}",
            match status {
                Ok(_) =>
                    "success (QEMU 7.2 reports success although the DMA was blocked)".to_string(),
                Err(e) => format!("error ({e})"),
            }
        ))
    })
}

/// The crate's route from provider `cmb` (B's CMB) to client `dev` (A),
/// classified on the guest's machine and checked against the guest kernel.
pub(crate) fn classify_checked<'r>(
    machine: &'r Machine,
    cmb: &'r CmbBar,
    dev: &'r Device<'_, Nvme>,
    a: Bdf,
    b: Bdf,
) -> Result<Result<P2pRoute<'r, CmbMem, Nvme>, RouteError>, String> {
    let route = P2pRoute::classify(machine, cmb.provider(), dev);
    let crate_distance = match &route {
        Ok(r) => i32::try_from(r.distance()).unwrap_or(i32::MAX),
        Err(RouteError::NotSupported(v)) => v.kernel_distance(),
        Err(e) => return Err(format!("classify {b} -> {a}: {e}")),
    };
    match kernel_distance(b, a) {
        Some(k) if k == crate_distance => Ok(route),
        Some(k) => Err(format!(
            "dmaspace says distance {crate_distance}, the guest kernel's pci_p2pdma_distance says {k}"
        )),
        None => Err("no P2P_DIST line in /proc/p2p_oracle (oracle module not loaded?)".into()),
    }
}

/// A reads its LBAs straight into B's CMB by `route_ab`; B writes them from its
/// CMB to its own namespace (same-device route `route_bb`); the host reads B's
/// namespace back and compares with A's data.
pub(crate) fn p2p_copy<T: Translation>(
    ca: &mut Controller<'_, '_, T>,
    cb: &mut Controller<'_, '_, T>,
    cmb: &CmbBar,
    route_ab: &P2pRoute<'_, CmbMem, Nvme>,
    route_bb: &P2pRoute<'_, CmbMem, Nvme>,
) -> Outcome {
    let regs = cb
        .enable_cmb(cmb.bus_start, cmb.bar().len() as u64)
        .map_err(s("enable B's CMB"))?;
    let bs = ca.namespace().map_err(s("namespace"))?.lba_size;
    let len = (1usize << 20).min(regs.window.size as usize) / bs * bs;
    let (lba_a, lba_b) = (0u64, ((4 << 20) / bs) as u64);
    // B's target LBAs hold something else first.
    let z = pattern(0xb0, len);
    cb.write_host(lba_b, &mut filled(0, &z)?, 0, len as u64)
        .map_err(s("B host write"))?;
    // A's data.
    let p = pattern(0xa0, len);
    ca.write_host(lba_a, &mut filled(0, &p)?, 0, len as u64)
        .map_err(s("A host write"))?;
    // A → B's CMB, by the classified route.
    let peer = cmb
        .provider()
        .alloc(len as u64)
        .map_err(s("B's CMB alloc"))?;
    let st = ca
        .read_p2p(lba_a, peer.seg(), route_ab)
        .map_err(s("A reads into B's CMB"))?;
    compare(
        "B's CMB after A's peer-to-peer read",
        &cmb.cpu_read(peer.phys(), len)?,
        &p,
    )?;
    // B: CMB → namespace; host reads it back.
    cb.write_p2p(lba_b, peer.seg(), route_bb)
        .map_err(s("B writes from its CMB"))?;
    let mut r = poisoned(len, 0xa5)?;
    cb.read_host(lba_b, &mut r, 0, len as u64)
        .map_err(s("host read of B"))?;
    compare("B's namespace vs A's data", &read_back(&r, 0, len)?, &p)?;
    let how = match st.first {
        Some((Via::Iommu, a)) if cmb.dma_buf().is_some() => format!(
            "B's CMB mapped at IOVA {a:#x} of A's IOAS (IOMMU_IOAS_MAP_FILE of B's dma-buf, through the IommufdIoas backend)"
        ),
        Some((Via::Iommu, a)) => format!(
            "B's CMB mapped at IOVA {a:#x} of A's domain (MMIO, through the VfioType1 backend)"
        ),
        Some((Via::BusAddr, a)) => format!("B's CMB at bus address {a:#x} (IOMMU bypassed)"),
        Some((via, a)) => format!("{via:?} at {a:#x}"),
        None => "nothing".into(),
    };
    Ok(format!(
        "{len} bytes via {how}, {} commands, verified",
        st.commands
    ))
}

/// `p2p-host-bridge` and `p2p-bus-addr`: classify (B's CMB → A) on the guest's
/// machine; the route's kind decides the path.
fn p2p(o: &Opened, expect: &str) -> Outcome {
    let (va, vb) = (&o.devices[0], &o.devices[1]);
    let (a, b) = (va.address(), vb.address());
    let machine = machine()?;
    let cmb = CmbBar::of(&machine, vb)?;
    let dev_a = claim(&machine, o, 0)?;
    let dev_b = claim(&machine, o, 1)?;
    let route_ab =
        classify_checked(&machine, &cmb, &dev_a, a, b)?.map_err(|e| format!("refused: {e}"))?;
    if route_ab.kernel_name() != expect {
        return Err(format!(
            "route is {} (distance {}), the scenario expects {expect}",
            route_ab.kernel_name(),
            route_ab.distance()
        ));
    }
    let route_bb =
        P2pRoute::classify(&machine, cmb.provider(), &dev_b).map_err(s("classify B -> B"))?;
    let d = with_mapper!(&o, &dev_a, &dev_b, |ma, mb| {
        let mut ca = init(va, &ma, o)?;
        let mut cb = init(vb, &mb, o)?;
        p2p_copy(&mut ca, &mut cb, &cmb, &route_ab, &route_bb)?
    });
    Ok(format!(
        "{b} -> {a}: dmaspace {} distance {} = kernel (sysfs of the guest); {d}",
        route_ab.kernel_name(),
        route_ab.distance()
    ))
}

/// `p2p-host-bridge` (AMD Zen CPU model: the host-bridge route is allowed).
pub fn p2p_host_bridge(a: Bdf, b: Bdf) -> Outcome {
    let o = open_vfio(&[a, b])?;
    if !matches!(o.backend, Backend::Type1 { .. }) {
        return Err("needs an IOMMU (type1)".into());
    }
    p2p(&o, "thru_host_bridge")
}

/// `p2p-bus-addr` (both below one switch, no-IOMMU mode).
pub fn p2p_bus_addr(a: Bdf, b: Bdf) -> Outcome {
    let o = open_vfio(&[a, b])?;
    if !matches!(o.backend, Backend::NoIommu { .. }) {
        return Err(
            "expects no-IOMMU mode (QEMU routes every DMA through its IOMMU, even inside a switch)"
                .into(),
        );
    }
    p2p(&o, "bus_addr")
}

/// `p2p-refused`: where Linux says not supported, the crate refuses the route
/// with its typed error, before any controller is enabled or anything mapped.
pub fn p2p_refused(a: Bdf, b: Bdf) -> Outcome {
    let o = open_vfio(&[a, b])?;
    let machine = machine()?;
    let cmb = CmbBar::of(&machine, &o.devices[1])?;
    // No Identify: claiming with the limits every NVMe has issues no DMA.
    let dev = machine
        .device::<Nvme>(a, nvme::base_limits())
        .map_err(|e| e.to_string())?;
    match classify_checked(&machine, &cmb, &dev, a, b)? {
        Err(e @ RouteError::NotSupported(_)) => Ok(format!(
            "RouteError::NotSupported: {e}; the guest kernel agrees (distance -1); refused before any controller was enabled or memory mapped"
        )),
        Err(e) => Err(format!("refused for another reason: {e}")),
        Ok(r) => Err(format!(
            "the route was allowed ({}, distance {}): expected not supported",
            r.kernel_name(),
            r.distance()
        )),
    }
}

/// `p2p-iommufd-refused`: iommufd (Linux 6.12) cannot map another device's BAR;
/// the backend says so with a typed error, nothing is half-mapped, and the IOAS
/// still works.
pub fn p2p_iommufd_refused(a: Bdf, b: Bdf) -> Outcome {
    let o = open_iommufd(&[a, b])?;
    let Backend::Iommufd { domain } = &o.backend else {
        return Err("not an iommufd backend".into());
    };
    let machine = machine()?;
    let cmb = CmbBar::of(&machine, &o.devices[1])?;
    let dev = claim(&machine, &o, 0)?;
    let route =
        classify_checked(&machine, &cmb, &dev, a, b)?.map_err(|e| format!("refused: {e}"))?;
    if !matches!(route, P2pRoute::ViaHostBridge(_)) {
        return Err(format!(
            "route {}: expected thru_host_bridge",
            route.kernel_name()
        ));
    }
    let m = crate::dma::iommufd_mapper(domain, &o.devices, &dev)?;
    let mut c = init(&o.devices[0], &m, &o)?;
    let len = 64u64 << 10;
    let peer = cmb.provider().alloc(len).map_err(s("B's CMB alloc"))?;
    let before = (
        domain.reserved_bytes(),
        domain.backend().mapped_bytes(),
        c.io_submitted(),
    );
    let err = match c.read_p2p(0, peer.seg(), &route) {
        Ok(_) => {
            return Err(
                "iommufd mapped a PFNMAP BAR: this kernel can do P2P through iommufd".into(),
            );
        }
        Err(NvmeError::Map(MapError::Backend(e))) if e.kind() == BackendErrorKind::Unmappable => e,
        Err(e) => {
            return Err(format!(
                "expected a BackendError of kind Unmappable, got: {e}"
            ));
        }
    };
    let after = (
        domain.reserved_bytes(),
        domain.backend().mapped_bytes(),
        c.io_submitted(),
    );
    if before != after {
        return Err(format!(
            "after the refusal (reserved IOVA, mapped bytes, I/O commands) went from {before:?} to {after:?}"
        ));
    }
    // The range the refused mapping had is what the allocator hands out again
    // for that size: the kernel holds nothing there.
    let probe = domain.alloc(len).map_err(s("IOVA probe"))?;
    let at = probe.start().as_u64();
    // SAFETY: the range is `probe`'s, reserved by this test and never linked:
    // no mapping of the domain lives there, so the unmap takes nothing away.
    match unsafe { domain.backend().ioas().unmap(at, probe.len()) } {
        Err(e) if e.errno() == Some(libc::ENOENT) => {}
        other => {
            return Err(format!(
                "after the refusal, IOMMU_IOAS_UNMAP of {at:#x}+{len:#x} gave {other:?}"
            ));
        }
    }
    drop(probe);
    // And the IOAS still carries host DMA.
    let d = host_io_small(&mut c)?;
    // Linux 6.12 has no dma-buf export of a BAR either (the 7.3 path).
    let export = match o.devices[1].export_dma_buf(2, 0, len) {
        Ok(_) => return Err("Linux 6.12 exported a BAR as a dma-buf".into()),
        Err(e) if matches!(e.errno(), Some(libc::ENOTTY | libc::EINVAL)) => e.to_string(),
        Err(e) => return Err(format!("dma-buf export: {e}, want ENOTTY or EINVAL")),
    };
    Ok(format!(
        "route {} (distance {}) needs {b}'s BAR2 in {a}'s IOAS; MapError::Backend: {err}; nothing mapped or reserved after it, no command issued, IOMMU_IOAS_UNMAP of {at:#x}+{len:#x} says ENOENT; {d}; the 7.3 path is not there: {export}",
        route.kernel_name(),
        route.distance(),
    ))
}

pub(crate) fn host_io_small<T: Translation>(c: &mut Controller<'_, '_, T>) -> Outcome {
    let len = 64usize << 10;
    let p = pattern(0x5a11, len);
    c.write_host(0, &mut filled(0, &p)?, 0, len as u64)
        .map_err(s("write"))?;
    let mut r = poisoned(len, 0)?;
    c.read_host(0, &mut r, 0, len as u64).map_err(s("read"))?;
    compare("host I/O after the refusal", &read_back(&r, 0, len)?, &p)?;
    Ok("host I/O on the same IOAS verified".into())
}

/// `bad-input`: each bad input gives one clear error line and a non-zero exit,
/// no panic. Runs `nvme-e2e open BDF` as a child for each.
pub fn bad_input(missing: Bdf, on_nvme: Bdf, not_viable: Bdf) -> Outcome {
    let me = std::env::current_exe().map_err(s("current_exe"))?;
    let cases: [(String, &str); 4] = [
        (missing.to_string(), "no PCI function"),
        (on_nvme.to_string(), "still bound to nvme"),
        (not_viable.to_string(), "is not viable"),
        ("00:1f.9".to_string(), "not a PCI address"),
    ];
    let mut lines = Vec::new();
    for (arg, want) in cases {
        let out = std::process::Command::new(&me)
            .args(["open", &arg])
            .output()
            .map_err(s("spawn"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let errs: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let code = out.status.code();
        if code == Some(0) || code == Some(101) || code.is_none() {
            return Err(format!(
                "open {arg}: exit {code:?} (want a clean non-zero exit)"
            ));
        }
        if err.contains("panicked")
            || errs.len() != 1
            || !errs[0].starts_with("error: ")
            || !errs[0].contains(want)
        {
            return Err(format!(
                "open {arg}: stderr {errs:?}, want one 'error: ...{want}...' line"
            ));
        }
        lines.push(format!("[{arg}] {}", errs[0]));
    }
    Ok(lines.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_seeded_and_distinct() {
        assert_eq!(pattern(1, 100), pattern(1, 100));
        assert_ne!(pattern(1, 100), pattern(2, 100));
        assert_eq!(pattern(3, 13).len(), 13);
        assert!(compare("x", &pattern(1, 64), &pattern(1, 64)).is_ok());
        let e = compare("x", &pattern(1, 64), &pattern(2, 64)).unwrap_err();
        assert!(e.contains("first at 0x0"), "{e}");
    }

    #[test]
    fn dmar_fault_lines_are_found_by_address() {
        let l = vec![
            "DMAR: DRHD: handling fault status reg 2".to_string(),
            "DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x10043000 [fault reason 0x05] PTE Write access is not set".to_string(),
        ];
        assert!(dmar_fault_in(&l, 0x1004_0000, 0x1005_0000).is_some());
        assert!(dmar_fault_in(&l, 0x1005_0000, 0x1006_0000).is_none());
    }
}

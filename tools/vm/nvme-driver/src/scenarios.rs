//! The scenarios of issue 10, each one verdict: `Ok(detail)` or `Err(why)`.
//! Every transfer is proven by comparing bytes: QEMU 7.2's NVMe completes a
//! command with success even when the IOMMU blocked its DMA.

use std::fmt::Display;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dmaspace::linux::{
    Iommufd, PciAddress, Sysfs, VfioContainer, VfioDevice, VfioErrorKind, VfioGroup, VfioIommuType,
    page_size,
};
use dmaspace::topology::MapType;

use crate::classify;
use crate::dma::{Backend, Dma, DmaError, HostBuf, PeerWindow};
use crate::nvme::{Cmb, Controller};
use crate::seam::{DevAddr, SeamError, Target};

/// A scenario's verdict: what it showed, or why it failed.
pub type Outcome = Result<String, String>;

fn s<E: Display>(ctx: &'static str) -> impl Fn(E) -> String {
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

fn read_back(buf: &HostBuf, off: usize, len: usize) -> Result<Vec<u8>, String> {
    let mut v = vec![0u8; len];
    buf.mem().read(off, &mut v).map_err(s("read buffer"))?;
    Ok(v)
}

/// Opens `addrs` through VFIO groups in one container: type1, or no-IOMMU when
/// the groups are no-IOMMU groups. Checks sysfs first, so each bad input gets
/// its own typed error.
pub fn open_vfio(addrs: &[PciAddress]) -> Result<(Rc<Dma>, Vec<VfioDevice>), String> {
    let sysfs = Sysfs::live();
    for &a in addrs {
        sysfs.require_vfio_pci(a).map_err(|e| e.to_string())?;
    }
    let mut container = VfioContainer::open(&sysfs).map_err(|e| e.to_string())?;
    let mut groups: Vec<VfioGroup> = Vec::new();
    let mut which = Vec::new();
    for &a in addrs {
        let node = sysfs.group(a).map_err(|e| e.to_string())?;
        match groups.iter().position(|g| g.node().id == node.id) {
            Some(i) => which.push(i),
            None => {
                let g = VfioGroup::open_for_device(&sysfs, a).map_err(|e| e.to_string())?;
                g.set_container(&container).map_err(|e| e.to_string())?;
                which.push(groups.len());
                groups.push(g);
            }
        }
    }
    let noiommu = groups.iter().all(|g| g.node().noiommu);
    let t = if noiommu {
        VfioIommuType::NoIommu
    } else {
        VfioIommuType::Type1v2
    };
    container.set_iommu(t).map_err(|e| e.to_string())?;
    let mut devs = Vec::new();
    for (&a, &i) in addrs.iter().zip(&which) {
        devs.push(groups[i].device(a).map_err(|e| e.to_string())?);
    }
    let backend = if noiommu {
        Backend::NoIommu {
            _container: container,
            _groups: groups,
        }
    } else {
        Backend::Type1 {
            container,
            _groups: groups,
        }
    };
    Ok((Dma::new(backend), devs))
}

/// Opens `addrs` through their VFIO device cdevs, bound to one iommufd and
/// attached to one IOAS.
pub fn open_iommufd(addrs: &[PciAddress]) -> Result<(Rc<Dma>, Vec<VfioDevice>), String> {
    let sysfs = Sysfs::live();
    let fd = Iommufd::open(&sysfs).map_err(|e| e.to_string())?;
    let ioas = fd.alloc_ioas().map_err(|e| e.to_string())?;
    let mut devs = Vec::new();
    for &a in addrs {
        let d = VfioDevice::open_cdev(&sysfs, a).map_err(|e| e.to_string())?;
        d.bind_iommufd(&fd).map_err(|e| e.to_string())?;
        d.attach_ioas(&ioas).map_err(|e| e.to_string())?;
        devs.push(d);
    }
    Ok((Dma::new(Backend::Iommufd { _fd: fd, ioas }), devs))
}

fn controllers(dma: &Rc<Dma>, devs: Vec<VfioDevice>) -> Result<Vec<Controller>, String> {
    devs.into_iter()
        .map(|d| {
            let a = d.address();
            Controller::init(d, Rc::clone(dma)).map_err(|e| format!("init {a}: {e}"))
        })
        .collect()
}

/// Several MiB of seeded data written from host buffers and read back into fresh
/// ones: a 4 MiB transfer from an unaligned first byte (PRP list over three
/// pages), a 2 MiB aligned one, a two-page one through PRP2, a one-block one.
pub fn host_io(c: &mut Controller, seed: u64) -> Outcome {
    let ns = c.namespace().map_err(s("namespace"))?;
    let bs = ns.lba_size;
    let dma = Rc::clone(c.dma());
    let page = page_size();
    // (write offset, read offset, length, first LBA)
    let cases: [(usize, usize, usize, u64); 4] = [
        (0x200, 0x400, 4 << 20, 0),
        (0, 0, 2 << 20, ((4 << 20) / bs) as u64),
        (0x600, 0xa00, (2 * page).max(bs), ((6 << 20) / bs) as u64),
        (page - bs.min(page), 0, bs, ((7 << 20) / bs) as u64),
    ];
    let need = ((7 << 20) / bs + 1) as u64;
    if ns.blocks < need {
        return Err(format!(
            "namespace has {} blocks, the test needs {need}",
            ns.blocks
        ));
    }
    let t0 = Instant::now();
    let mut total = 0usize;
    let mut commands = 0;
    let mut lists = 0;
    let mut writes = Vec::new();
    for (i, &(woff, _, len, lba)) in cases.iter().enumerate() {
        let data = pattern(seed + i as u64, len);
        let mut w = dma.alloc(woff + len).map_err(s("alloc"))?;
        w.mem_mut().write(woff, &data).map_err(s("fill"))?;
        let st = c
            .write(lba, Target::Host(&w, woff), len)
            .map_err(s("write"))?;
        commands += st.commands;
        lists = lists.max(st.max_list_pages);
        total += len;
        writes.push(data);
    }
    for (i, &(_, roff, len, lba)) in cases.iter().enumerate() {
        let mut r = dma.alloc(roff + len).map_err(s("alloc"))?;
        let rlen = r.len();
        r.mem_mut().fill(0, rlen, 0xa5).map_err(s("fill"))?;
        let st = c
            .read(lba, Target::Host(&r, roff), len)
            .map_err(s("read"))?;
        commands += st.commands;
        lists = lists.max(st.max_list_pages);
        compare(
            &format!("case {i} ({len} bytes at LBA {lba})"),
            &read_back(&r, roff, len)?,
            &writes[i],
        )?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(format!(
        "{} via {}: {:.1} MiB written and read back in {commands} commands, PRP lists up to {lists} pages, unaligned first pages, {:.1} s ({:.1} MiB/s)",
        c.address(),
        dma.backend().name(),
        total as f64 / f64::from(1 << 20),
        secs,
        2.0 * total as f64 / f64::from(1 << 20) / secs.max(1e-9)
    ))
}

/// `host-iova-type1`.
pub fn host_iova_type1(a: PciAddress) -> Outcome {
    let (dma, devs) = open_vfio(&[a])?;
    if !matches!(dma.backend(), Backend::Type1 { .. }) {
        return Err("the group is a no-IOMMU group, expected an IOMMU".into());
    }
    let mut c = controllers(&dma, devs)?.remove(0);
    let d = host_io(&mut c, 0x7e51)?;
    Ok(format!("{d}; {} {}", c.model, c.serial))
}

/// `host-iova-iommufd`.
pub fn host_iova_iommufd(a: PciAddress) -> Outcome {
    let (dma, devs) = open_iommufd(&[a])?;
    let mut c = controllers(&dma, devs)?.remove(0);
    host_io(&mut c, 0x10fd)
}

/// `own-cmb`: the controller reads LBAs into its own CMB and writes them from it
/// (addresses are CMB offsets, which never leave the device); the CPU checks
/// the CMB through BAR2 and the host reads the namespace back.
pub fn own_cmb(a: PciAddress) -> Outcome {
    let (dma, devs) = open_vfio(&[a])?;
    let mut c = controllers(&dma, devs)?.remove(0);
    let cmb = c.enable_cmb().map_err(s("enable CMB"))?;
    let bs = c.namespace().map_err(s("namespace"))?.lba_size;
    let len = (1usize << 20).min(cmb.len() / 2) / bs * bs;
    let (lba_p, lba_q) = (((8 << 20) / bs) as u64, ((10 << 20) / bs) as u64);
    // Host → namespace → CMB (controller reads into its own CMB).
    let p = pattern(0xc0b, len);
    let mut h = dma.alloc(len).map_err(s("alloc"))?;
    h.mem_mut().write(0, &p).map_err(s("fill"))?;
    c.write(lba_p, Target::Host(&h, 0), len)
        .map_err(s("host write"))?;
    let st = c
        .read(lba_p, Target::OwnCmb(&cmb, 0), len)
        .map_err(s("read into CMB"))?;
    let mut v = vec![0u8; len];
    cmb.cpu_read(0, &mut v).map_err(s("CPU read of CMB"))?;
    compare("CMB after the controller read into it", &v, &p)?;
    // CPU → CMB → namespace (controller writes from its own CMB) → host.
    let q = pattern(0xc0c, len);
    cmb.cpu_write(len, &q).map_err(s("CPU write of CMB"))?;
    c.write(lba_q, Target::OwnCmb(&cmb, len), len)
        .map_err(s("write from CMB"))?;
    let mut r = dma.alloc(len).map_err(s("alloc"))?;
    r.mem_mut().fill(0, len, 0xa5).map_err(s("fill"))?;
    c.read(lba_q, Target::Host(&r, 0), len)
        .map_err(s("host read"))?;
    compare(
        "namespace written from the CMB",
        &read_back(&r, 0, len)?,
        &q,
    )?;
    if cmb.regs_before != (0, 0) {
        return Err(format!(
            "CMBLOC/CMBSZ {:#x}/{:#x} with CMBMSC.CRE = 0: expected both hidden (QEMU 7.2)",
            cmb.regs_before.0, cmb.regs_before.1
        ));
    }
    Ok(format!(
        "{a}: CMB {} KiB at controller address {:#x} (BAR2 bus address); CMBLOC/CMBSZ {:#x}/{:#x} as the nvme driver left them, {:#x}/{:#x} with CRE = 0, {:#x}/{:#x} after CRE|CMSE; {len} bytes each way, {} commands",
        cmb.len() >> 10,
        cmb.controller_base(),
        cmb.regs_left.0,
        cmb.regs_left.1,
        cmb.regs_before.0,
        cmb.regs_before.1,
        cmb.regs_after.0,
        cmb.regs_after.1,
        st.commands
    ))
}

/// The kernel log from now on (`/dev/kmsg`, non-blocking).
struct Kmsg(File);

impl Kmsg {
    fn from_now() -> Result<Self, String> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(s("open /dev/kmsg"))?;
        f.seek(SeekFrom::End(0)).map_err(s("seek /dev/kmsg"))?;
        Ok(Self(f))
    }

    /// Records logged since, one per read.
    fn records(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let msg = rec.split_once(';').map_or(rec.as_str(), |(_, m)| m);
                    out.push(msg.lines().next().unwrap_or("").to_string());
                }
                // EPIPE: records were overwritten; keep reading.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(_) => break,
            }
        }
        out
    }
}

/// A DMAR fault line for an address in `[lo, hi)`.
fn dmar_fault_in(lines: &[String], lo: u64, hi: u64) -> Option<String> {
    lines.iter().find_map(|l| {
        let i = l.find("fault addr 0x")?;
        let hex: String = l[i + 13..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        let a = u64::from_str_radix(&hex, 16).ok()?;
        (l.contains("DMAR") && (lo..hi).contains(&a)).then(|| l.clone())
    })
}

/// `iommu-contains`: after a buffer is unmapped, a read command that still
/// points at its IOVA (built with the `unsafe` escape) must not change a byte of
/// it, and the guest kernel logs a DMAR fault for that address.
pub fn iommu_contains(a: PciAddress) -> Outcome {
    let (dma, devs) = open_vfio(&[a])?;
    if !matches!(dma.backend(), Backend::Type1 { .. }) {
        return Err("needs an IOMMU (type1)".into());
    }
    let mut c = controllers(&dma, devs)?.remove(0);
    let len = 64 << 10;
    let lba = ((12 << 20) / c.namespace().map_err(s("namespace"))?.lba_size) as u64;
    let p = pattern(0xdead, len);
    let mut w = dma.alloc(len).map_err(s("alloc"))?;
    w.mem_mut().write(0, &p).map_err(s("fill"))?;
    c.write(lba, Target::Host(&w, 0), len).map_err(s("write"))?;
    // Positive control: the same buffer, mapped, does receive the data.
    let mut r = dma.alloc(len).map_err(s("alloc"))?;
    r.mem_mut().fill(0, len, 0x5a).map_err(s("fill"))?;
    c.read(lba, Target::Host(&r, 0), len)
        .map_err(s("read (mapped)"))?;
    compare("positive control", &read_back(&r, 0, len)?, &p)?;
    // Unmap, refill, and check the seam now refuses the buffer.
    r.mem_mut().fill(0, len, 0x5a).map_err(s("fill"))?;
    let stale = dma
        .unmap(&mut r)
        .map_err(s("unmap"))?
        .ok_or("the buffer had no IOVA")?;
    match c.addr_of(Target::Host(&r, 0)) {
        Err(SeamError::NotMapped) => {}
        other => return Err(format!("the seam gave {other:?} for an unmapped buffer")),
    }
    let mut kmsg = Kmsg::from_now()?;
    let status = c.read_with(lba, len, |_, off| {
        // SAFETY: `stale` was this domain's IOVA of `r` and was just unmapped; the
        // allocator never hands it out again, so nothing is mapped there and the
        // IOMMU blocks the device. Were it not blocked, the writes would land in
        // `r`'s pages, which stay alive and owned here: no memory is reached
        // that this scenario does not own and check.
        Ok(unsafe { DevAddr::assume_valid(stale + off as u64) })
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
        "{a}: stale IOVA {stale:#x} blocked, {len} bytes untouched, command status {}; kernel: {fault}",
        match status {
            Ok(_) => "success (QEMU 7.2 reports success although the DMA was blocked)".to_string(),
            Err(e) => format!("error ({e})"),
        }
    ))
}

/// The route from client `a` to provider `b`'s CMB, as dmaspace classifies the
/// pair from the guest's sysfs — checked against the guest kernel — and the
/// window that realizes it.
fn peer_route(
    a: &Controller,
    b: &Controller,
    cmb: &Cmb,
) -> Result<(Result<PeerWindow, String>, classify::Route), String> {
    let r = classify::classify(b.address(), a.address())?;
    match r.kernel_distance {
        Some(k) if k == r.crate_distance => {}
        Some(k) => {
            return Err(format!(
                "dmaspace says {} (distance {}), the guest kernel's pci_p2pdma_distance says {k}",
                r.map_type, r.crate_distance
            ));
        }
        None => {
            return Err("no P2P_DIST line in /proc/p2p_oracle (oracle module not loaded?)".into());
        }
    }
    let w = match r.map_type {
        MapType::NotSupported => Err(format!(
            "refused: P2P {} -> {} is not supported (dmaspace and the kernel agree: distance -1)",
            b.address(),
            a.address()
        )),
        MapType::ThruHostBridge => a
            .dma()
            .map_peer_bar(cmb.bar(), a.address())
            .map_err(|e| format!("map {}'s BAR2 for {}: {e}", b.address(), a.address())),
        MapType::BusAddr => b
            .device()
            .bar_bus_address(2)
            .map(|base| PeerWindow::bus_addr(a.address(), base, cmb.bar().len()))
            .map_err(|e| e.to_string()),
    };
    Ok((w, r))
}

/// A reads its LBAs straight into B's CMB; B writes them from its CMB to its own
/// namespace; the host reads B's namespace back and compares with A's data.
fn p2p_copy(a: &mut Controller, b: &mut Controller, expect: MapType) -> Outcome {
    let cmb = b.enable_cmb().map_err(s("enable B's CMB"))?;
    let (window, route) = peer_route(a, b, &cmb)?;
    if route.map_type != expect {
        return Err(format!(
            "route is {} (distance {}), the scenario expects {expect}",
            route.map_type, route.crate_distance
        ));
    }
    let window = window?;
    let bs = a.namespace().map_err(s("namespace"))?.lba_size;
    let len = (1usize << 20).min(cmb.len()) / bs * bs;
    let (lba_a, lba_b) = (0u64, ((4 << 20) / bs) as u64);
    // B's target LBAs hold something else first.
    let z = pattern(0xb0, len);
    let mut hb = b.dma().alloc(len).map_err(s("alloc"))?;
    hb.mem_mut().write(0, &z).map_err(s("fill"))?;
    b.write(lba_b, Target::Host(&hb, 0), len)
        .map_err(s("B host write"))?;
    // A's data.
    let p = pattern(0xa0, len);
    let mut ha = a.dma().alloc(len).map_err(s("alloc"))?;
    ha.mem_mut().write(0, &p).map_err(s("fill"))?;
    a.write(lba_a, Target::Host(&ha, 0), len)
        .map_err(s("A host write"))?;
    // A → B's CMB, by the classified route.
    let st = a
        .read(lba_a, Target::Peer(&window, cmb.bar_offset()), len)
        .map_err(s("A reads into B's CMB"))?;
    let mut v = vec![0u8; len];
    cmb.cpu_read(0, &mut v).map_err(s("CPU read of B's CMB"))?;
    compare("B's CMB after A's peer-to-peer read", &v, &p)?;
    // B: CMB → namespace; host reads it back.
    b.write(lba_b, Target::OwnCmb(&cmb, 0), len)
        .map_err(s("B writes from its CMB"))?;
    let mut r = b.dma().alloc(len).map_err(s("alloc"))?;
    r.mem_mut().fill(0, len, 0xa5).map_err(s("fill"))?;
    b.read(lba_b, Target::Host(&r, 0), len)
        .map_err(s("host read of B"))?;
    compare("B's namespace vs A's data", &read_back(&r, 0, len)?, &p)?;
    let how = match window.route() {
        crate::dma::PeerRoute::Iova { base, .. } => {
            format!("B's BAR2 mapped at IOVA {base:#x} in A's container")
        }
        crate::dma::PeerRoute::BusAddr { base } => format!("B's BAR2 bus address {base:#x}"),
    };
    Ok(format!(
        "{} -> {}: dmaspace {} distance {} = kernel {}; {len} bytes via {how}, {} commands, verified",
        b.address(),
        a.address(),
        route.map_type,
        route.crate_distance,
        route.kernel_distance.unwrap_or(i32::MIN),
        st.commands
    ))
}

/// `p2p-host-bridge` (AMD Zen CPU model: the host-bridge route is allowed).
pub fn p2p_host_bridge(a: PciAddress, b: PciAddress) -> Outcome {
    let (dma, devs) = open_vfio(&[a, b])?;
    if !matches!(dma.backend(), Backend::Type1 { .. }) {
        return Err("needs an IOMMU (type1)".into());
    }
    let mut cs = controllers(&dma, devs)?;
    let mut cb = cs.pop().ok_or("no B")?;
    let mut ca = cs.pop().ok_or("no A")?;
    p2p_copy(&mut ca, &mut cb, MapType::ThruHostBridge)
}

/// `p2p-bus-addr` (both below one switch, no-IOMMU mode).
pub fn p2p_bus_addr(a: PciAddress, b: PciAddress) -> Outcome {
    let (dma, devs) = open_vfio(&[a, b])?;
    if !matches!(dma.backend(), Backend::NoIommu { .. }) {
        return Err(
            "expects no-IOMMU mode (QEMU routes every DMA through its IOMMU, even inside a switch)"
                .into(),
        );
    }
    let mut cs = controllers(&dma, devs)?;
    let mut cb = cs.pop().ok_or("no B")?;
    let mut ca = cs.pop().ok_or("no A")?;
    p2p_copy(&mut ca, &mut cb, MapType::BusAddr)
}

/// `p2p-refused`: where Linux says not supported, the driver refuses before
/// issuing any I/O.
pub fn p2p_refused(a: PciAddress, b: PciAddress) -> Outcome {
    let (dma, devs) = open_vfio(&[a, b])?;
    let mut cs = controllers(&dma, devs)?;
    let mut cb = cs.pop().ok_or("no B")?;
    let ca = cs.pop().ok_or("no A")?;
    let cmb = cb.enable_cmb().map_err(s("enable B's CMB"))?;
    let before = (ca.io_submitted(), cb.io_submitted());
    let (window, route) = peer_route(&ca, &cb, &cmb)?;
    let after = (ca.io_submitted(), cb.io_submitted());
    match window {
        Ok(_) => Err(format!(
            "the route was allowed ({}, distance {}): expected not supported",
            route.map_type, route.crate_distance
        )),
        Err(why) if before == after && route.map_type == MapType::NotSupported => Ok(format!(
            "{why}; kernel distance {}; no I/O issued",
            route.kernel_distance.unwrap_or(i32::MIN)
        )),
        Err(why) => Err(format!(
            "refused, but I/O was issued or the reason is wrong: {why}"
        )),
    }
}

/// `p2p-iommufd-refused`: iommufd (Linux 6.12) cannot map another device's BAR;
/// the backend says so with a typed error, nothing is half-mapped, and the IOAS
/// still works.
pub fn p2p_iommufd_refused(a: PciAddress, b: PciAddress) -> Outcome {
    let (dma, mut devs) = open_iommufd(&[a, b])?;
    let db = devs.pop().ok_or("no B")?;
    let bar = db.map_bar(2).map_err(s("mmap B's BAR2"))?;
    let mut ca = controllers(&dma, devs)?.remove(0);
    let route = classify::classify(b, a)?;
    let Backend::Iommufd { ioas, .. } = dma.backend() else {
        return Err("not an iommufd backend".into());
    };
    let iova = dma.peek_iova();
    let err = match dma.map_peer_bar(&bar, a) {
        Ok(_) => {
            return Err(
                "iommufd mapped a PFNMAP BAR: this kernel can do P2P through iommufd".into(),
            );
        }
        Err(DmaError::Sys(e)) if e.kind() == &VfioErrorKind::PfnmapNotMappable => e,
        Err(e) => return Err(format!("expected PfnmapNotMappable, got: {e}")),
    };
    // Nothing half-mapped: the range unmaps as empty, and host memory maps there.
    match ioas.unmap(iova, bar.len() as u64) {
        Err(e) if e.errno() == Some(libc::ENOENT) => {}
        other => {
            return Err(format!(
                "after the refusal, unmap of the range gave {other:?}"
            ));
        }
    }
    let probe = dmaspace::linux::PinnedMemory::new(bar.len()).map_err(s("alloc"))?;
    ioas.map(&probe, iova)
        .map_err(s("map host memory at the refused range"))?;
    ioas.unmap(iova, bar.len() as u64)
        .map_err(s("unmap probe"))?;
    // And the IOAS still carries host DMA.
    let d = host_io_small(&mut ca)?;
    Ok(format!(
        "route {} (distance {}) needs {b}'s BAR2 in {a}'s IOAS; iommufd: {err}; range {iova:#x}+{:#x} left empty; {d}",
        route.map_type,
        route.crate_distance,
        bar.len()
    ))
}

fn host_io_small(c: &mut Controller) -> Outcome {
    let len = 64 << 10;
    let dma = Rc::clone(c.dma());
    let p = pattern(0x5a11, len);
    let mut w = dma.alloc(len).map_err(s("alloc"))?;
    w.mem_mut().write(0, &p).map_err(s("fill"))?;
    c.write(0, Target::Host(&w, 0), len).map_err(s("write"))?;
    let r = dma.alloc(len).map_err(s("alloc"))?;
    c.read(0, Target::Host(&r, 0), len).map_err(s("read"))?;
    compare("host I/O after the refusal", &read_back(&r, 0, len)?, &p)?;
    Ok("host I/O on the same IOAS verified".into())
}

/// `bad-input`: each bad input gives one clear error line and a non-zero exit,
/// no panic. Runs `nvme-e2e open BDF` as a child for each.
pub fn bad_input(missing: PciAddress, on_nvme: PciAddress, not_viable: PciAddress) -> Outcome {
    let me = std::env::current_exe().map_err(s("current_exe"))?;
    let cases: [(String, &str); 4] = [
        (missing.to_string(), "no PCI function"),
        (on_nvme.to_string(), "still bound to nvme"),
        (not_viable.to_string(), "is not viable"),
        ("00:1f.9".to_string(), "invalid argument"),
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

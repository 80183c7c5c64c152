//! The scenarios of Linux 7.3's P2P path through iommufd (issue 19): B's CMB
//! exported by VFIO as a dma-buf, published as dmaspace's `DmaBufBar`,
//! imported into the IOAS, and mapped for A by the `IommufdIoas` backend with
//! `IOMMU_IOAS_MAP_FILE`, only by a route the kernel's P2PDMA rules allow.
//! Every byte is compared, as everywhere in this driver.

use std::time::{Duration, Instant};

use dmaspace::backend::BackendErrorKind;
use dmaspace::dir::FromDevice;
use dmaspace::error::MapError;
use dmaspace::route::{P2pRoute, RouteError};
use dmaspace_vfio::{VfioDevice, VfioErrorKind};

use crate::classify::{machine, policy_name};
use crate::dma::{Backend, Opened, open_iommufd};
use crate::kmsg::{Kmsg, dmar_fault_in};
use crate::nvme::{self, NvmeError};
use crate::scenarios::{
    CmbBar, Outcome, claim, classify_checked, compare, filled, init, p2p_copy, pattern, s,
};
use crate::with_mapper;
use dmaspace::pci::Bdf;

/// B's CMB as a dma-buf, imported into the IOAS of `o` (an iommufd
/// backend); `Err` unless the guest runs a kernel that exports.
fn exported_cmb<'d>(
    o: &'d Opened,
    machine: &dmaspace::machine::Machine,
) -> Result<CmbBar<'d>, String> {
    let Backend::Iommufd { domain } = &o.backend else {
        return Err("not an iommufd backend".into());
    };
    let cmb = CmbBar::exported(machine, &o.devices[1])?;
    let bar = cmb.dma_buf().ok_or("not a dma-buf publication")?;
    domain.backend().ioas().import(bar);
    Ok(cmb)
}

/// Linux 7.3 still cannot pin B's BAR `mmap` (`IOMMU_IOAS_MAP`: `EFAULT`):
/// the dma-buf is what makes the path. Tried at an IOVA the domain reserved
/// and never links; nothing stays mapped.
fn mmap_path_still_refused(o: &Opened, cmb: &CmbBar<'_>) -> Result<String, String> {
    let Backend::Iommufd { domain } = &o.backend else {
        return Err("not an iommufd backend".into());
    };
    // A one-page slice of the BAR mapping is not expressible: map_bar maps
    // all of it, so the probe range is as large as the BAR.
    let whole = domain
        .alloc(cmb.bar().len() as u64)
        .map_err(s("IOVA probe"))?;
    let wat = whole.start().as_u64();
    // SAFETY: the range is `whole`'s, reserved here and never linked by the
    // domain; if the map succeeded it is unmapped below before `whole` goes.
    let r = unsafe { domain.backend().ioas().map_bar(cmb.bar(), wat) };
    let out = match r {
        Err(e) if *e.kind() == VfioErrorKind::PfnmapNotMappable => Ok(format!(
            "IOMMU_IOAS_MAP of B's BAR mmap at {wat:#x} still EFAULT"
        )),
        Err(e) => Err(format!("IOMMU_IOAS_MAP of the BAR mmap: {e}, want EFAULT")),
        Ok(()) => {
            // SAFETY: as above: the range is this probe's.
            let _ = unsafe { domain.backend().ioas().unmap(wat, cmb.bar().len() as u64) };
            Err("IOMMU_IOAS_MAP of a BAR mmap succeeded: the kernel pins PFNMAP now".into())
        }
    };
    drop(whole);
    out
}

/// `p2p-iommufd-dmabuf` (AMD Zen CPU model, Linux 7.3): A reads LBAs into
/// B's CMB through iommufd via the dma-buf, B writes them from its CMB, the
/// host reads them back; every byte compared.
pub fn p2p_iommufd_dmabuf(a: Bdf, b: Bdf) -> Outcome {
    let o = open_iommufd(&[a, b])?;
    let machine = machine()?;
    let cmb = exported_cmb(&o, &machine)?;
    let refused = mmap_path_still_refused(&o, &cmb)?;
    let dev_a = claim(&machine, &o, 0)?;
    let dev_b = claim(&machine, &o, 1)?;
    let route_ab =
        classify_checked(&machine, &cmb, &dev_a, a, b)?.map_err(|e| format!("refused: {e}"))?;
    if !matches!(route_ab, P2pRoute::ViaHostBridge(_)) {
        return Err(format!(
            "route {} (distance {}): expected thru_host_bridge",
            route_ab.kernel_name(),
            route_ab.distance()
        ));
    }
    let route_bb =
        P2pRoute::classify(&machine, cmb.provider(), &dev_b).map_err(s("classify B -> B"))?;
    let d = with_mapper!(&o, &dev_a, &dev_b, |ma, mb| {
        let mut ca = init(&o.devices[0], &ma, &o)?;
        let mut cb = init(&o.devices[1], &mb, &o)?;
        p2p_copy(&mut ca, &mut cb, &cmb, &route_ab, &route_bb)?
    });
    Ok(format!(
        "{b} -> {a}: dmaspace {} distance {} = kernel ({}); {refused}; {d}",
        route_ab.kernel_name(),
        route_ab.distance(),
        policy_name()
    ))
}

/// `p2p-dmabuf-refused` (qemu64 CPU model, Linux 7.3): the kernel's P2PDMA
/// rules refuse the root-bus pair, yet iommufd maps B's dma-buf for A's IOAS
/// all the same (shown with the raw call, then undone); the crate refuses
/// the route with its typed error, and nothing is mapped through it.
pub fn p2p_dmabuf_refused(a: Bdf, b: Bdf) -> Outcome {
    let o = open_iommufd(&[a, b])?;
    let Backend::Iommufd { domain } = &o.backend else {
        return Err("not an iommufd backend".into());
    };
    let machine = machine()?;
    let cmb = exported_cmb(&o, &machine)?;
    // No Identify: claiming with the limits every NVMe has issues no DMA.
    let dev = machine
        .device::<crate::dma::Nvme>(a, nvme::base_limits())
        .map_err(|e| e.to_string())?;
    let verdict = match classify_checked(&machine, &cmb, &dev, a, b)? {
        Err(e @ RouteError::NotSupported(_)) => e.to_string(),
        Err(e) => return Err(format!("refused for another reason: {e}")),
        Ok(r) => {
            return Err(format!(
                "the route was allowed ({}, distance {}): expected not supported",
                r.kernel_name(),
                r.distance()
            ));
        }
    };
    // The kernel would map it: a raw IOMMU_IOAS_MAP_FILE of a second export.
    let len = 64u64 << 10;
    let raw = o.devices[1]
        .export_dma_buf(2, 0, len)
        .map_err(s("export B's BAR2"))?;
    let probe = domain.alloc(len).map_err(s("IOVA probe"))?;
    let at = probe.start().as_u64();
    // SAFETY: the range is `probe`'s, reserved here and never linked by the
    // domain; it is unmapped just below. No device is told the address.
    unsafe {
        domain
            .backend()
            .ioas()
            .map_dma_buf(&raw, 0, len, at, true, true)
    }
    .map_err(|e| format!("the kernel refused the raw dma-buf map too: {e}"))?;
    // SAFETY: as above.
    let n = unsafe { domain.backend().ioas().unmap(at, len) }.map_err(s("raw unmap"))?;
    drop(probe);
    let mapped = domain.backend().mapped_bytes();
    if mapped != 0 || domain.reserved_bytes() != 0 {
        return Err(format!(
            "after the refusal the backend maps {mapped} bytes, the domain reserves {}",
            domain.reserved_bytes()
        ));
    }
    Ok(format!(
        "{b} -> {a}: the kernel's IOMMU_IOAS_MAP_FILE of B's dma-buf at {at:#x} succeeded ({n} bytes, unmapped again): iommufd checks no route; dmaspace ({}): RouteError::NotSupported: {verdict}; the guest kernel agrees (distance -1); no mapping, no reserved IOVA, no controller enabled",
        policy_name()
    ))
}

/// Waits (3 s at most) for the kernel to log a DMAR fault in `[lo, hi)`.
fn fault_in(kmsg: &mut Kmsg, lo: u64, hi: u64) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    loop {
        seen.extend(kmsg.records());
        if let Some(l) = dmar_fault_in(&seen, lo, hi) {
            return Ok(l);
        }
        if Instant::now() > deadline {
            return Err(format!("no DMAR fault logged for {lo:#x}..{hi:#x}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets or clears Memory Space Enable of `dev` behind the crate's back.
fn decode(dev: &VfioDevice, on: bool) -> Result<(), String> {
    let cmd = dev.config_read_u16(0x04).map_err(s("command register"))?;
    let cmd = if on { cmd | 0x2 } else { cmd & !0x2 };
    // SAFETY: this is the revocation the crate cannot prevent, done on
    // purpose through the `unsafe` escape as another actor would: B's BARs
    // stop decoding (VFIO revokes its dma-bufs), none moves. Nothing of
    // this process's memory is reached: B's CMB is B's, and the mapping
    // of it that lives is torn down by the kernel.
    unsafe { dev.config_write(0x04, &cmd.to_le_bytes()) }.map_err(s("command register write"))
}

/// `p2p-dmabuf-revoked` (AMD Zen, Linux 7.3): the lifecycle of B's dma-buf.
/// What the crate prevents is compile errors (`tests/ui/vfio_*_dma_buf_*`,
/// `vfio_reset_while_peer_bar_mapped`); here what it cannot prevent: B's
/// decoding turned off behind its back while A's mapping of B's CMB lives.
/// `DmaBufBar::check` and the next map report it typed; A's transfer into the
/// revoked mapping changes no byte and the kernel logs the DMAR fault; with
/// decoding back on the old mapping stays dead (what no check can see). Then
/// the mapping and the export are dropped, B is reset (`&mut`, now
/// allowed), and a new export carries verified bytes.
pub fn p2p_dmabuf_revoked(a: Bdf, b: Bdf) -> Outcome {
    let mut o = open_iommufd(&[a, b])?;
    let machine = machine()?;
    let len = 64usize << 10;
    let first = {
        let cmb = exported_cmb(&o, &machine)?;
        let Backend::Iommufd { domain } = &o.backend else {
            return Err("not an iommufd backend".into());
        };
        let iommufd = domain.backend().ioas().iommufd();
        let bar = cmb.dma_buf().ok_or("not a dma-buf")?;
        let dev_a = claim(&machine, &o, 0)?;
        let route =
            classify_checked(&machine, &cmb, &dev_a, a, b)?.map_err(|e| format!("refused: {e}"))?;
        with_mapper!(&o, &dev_a, |m| {
            let mut c = init(&o.devices[0], &m, &o)?;
            let lba = 0u64;
            let p = pattern(0x5e0, len);
            c.write_host(lba, &mut filled(0, &p)?, 0, len as u64)
                .map_err(s("A host write"))?;
            let peer = cmb.provider().alloc(len as u64).map_err(s("CMB alloc"))?;
            let other = cmb.provider().alloc(4096).map_err(s("CMB alloc"))?;
            bar.check(iommufd).map_err(s("check before"))?;
            let r = c.with_p2p::<FromDevice, _>(peer.seg(), &route, |c, segs| {
                let iova = segs[0].at(0)?.as_u64();
                // Positive control: the live mapping carries A's data.
                c.read_into(lba, segs)?;
                let got = cmb
                    .cpu_read(peer.phys(), len)
                    .map_err(NvmeError::Protocol)?;
                compare("B's CMB through the live mapping", &got, &p)
                    .map_err(NvmeError::Protocol)?;
                Ok(iova)
            });
            let iova = r.map_err(s("positive control"))?;
            // The mapping again, held while B's decoding goes off.
            let Backend::Iommufd { domain } = &o.backend else {
                return Err("not an iommufd backend".into());
            };
            let before = domain.backend().mapped_bytes();
            let out = c.with_p2p::<FromDevice, _>(peer.seg(), &route, |c, segs| {
                let iova = segs[0].at(0)?.as_u64();
                let fail = NvmeError::Protocol;
                // B's CMB holds a known filler first.
                let filler = vec![0xc3u8; len];
                // SAFETY: B's CMB is plain memory this process owns (the
                // provider's contract); no DMA into this range is running.
                unsafe { cmb.bar().write_bytes(cmb_off(&cmb, peer.phys())?, &filler) }
                    .map_err(|e| fail(format!("CPU fill of the CMB: {e}")))?;
                decode(&o.devices[1], false).map_err(fail)?;
                let checked = match bar.check(iommufd) {
                    Err(e) if *e.kind() == VfioErrorKind::Revoked => e.to_string(),
                    other => return Err(fail(format!("check after decode off: {other:?}"))),
                };
                let remap = match c.read_p2p(lba, other.seg(), &route) {
                    Err(NvmeError::Map(MapError::Backend(e)))
                        if e.kind() == BackendErrorKind::Revoked =>
                    {
                        e.to_string()
                    }
                    other => return Err(fail(format!("a new map while revoked: {other:?}"))),
                };
                let mut kmsg = Kmsg::from_now().map_err(fail)?;
                let st = c.read_into(lba, segs);
                let fault = fault_in(&mut kmsg, iova, iova + len as u64)
                    .map_err(|e| fail(format!("read into the revoked mapping: {e}")))?;
                decode(&o.devices[1], true).map_err(fail)?;
                let after = cmb.cpu_read(peer.phys(), len).map_err(fail)?;
                compare("B's CMB after a transfer into the revoked mapping", &after, &filler)
                    .map_err(fail)?;
                bar.check(iommufd)
                    .map_err(|e| fail(format!("check with decoding back on: {e}")))?;
                let mut kmsg = Kmsg::from_now().map_err(fail)?;
                let _ = c.read_into(lba, segs);
                // The bytes are the proof; the fault line is reported as seen.
                let fault2 = fault_in(&mut kmsg, iova, iova + len as u64)
                    .unwrap_or_else(|e| format!("{e} within 3 s"));
                let again = cmb.cpu_read(peer.phys(), len).map_err(fail)?;
                compare("B's CMB after decoding came back", &again, &filler).map_err(fail)?;
                Ok(format!(
                    "decoding off: check says {checked}; a new map says {remap}; A's read into the live mapping at {iova:#x} ({}) changed none of {len} bytes, kernel: {fault}; decoding back on: check says live, the old mapping stays dead (bytes unchanged, kernel: {fault2})",
                    match st {
                        Ok(_) => "command status success".to_string(),
                        Err(e) => format!("command error {e}"),
                    }
                ))
            });
            let out = out.map_err(s("revocation"))?;
            let after = domain.backend().mapped_bytes();
            if after != before {
                return Err(format!(
                    "the backend mapped {before} bytes before the revoked mapping and {after} after its unmap"
                ));
            }
            Ok::<_, String>(format!(
                "positive control at {iova:#x} verified; {out}; the revoked mapping unmapped"
            ))
        })?
    };
    // Every mapping and the export are gone: B may be reset now.
    o.devices[1].reset().map_err(s("reset B"))?;
    let second = {
        let cmb = exported_cmb(&o, &machine)?;
        let dev_a = claim(&machine, &o, 0)?;
        let route =
            classify_checked(&machine, &cmb, &dev_a, a, b)?.map_err(|e| format!("refused: {e}"))?;
        with_mapper!(&o, &dev_a, |m| {
            let mut c = init(&o.devices[0], &m, &o)?;
            let p = pattern(0x5e1, len);
            c.write_host(8, &mut filled(0, &p)?, 0, len as u64)
                .map_err(s("A host write"))?;
            let peer = cmb.provider().alloc(len as u64).map_err(s("CMB alloc"))?;
            c.read_p2p(8, peer.seg(), &route)
                .map_err(s("A reads into the new export"))?;
            compare(
                "B's CMB through the new export",
                &cmb.cpu_read(peer.phys(), len)?,
                &p,
            )?;
            Ok::<_, String>(format!("{len} bytes through a new export, verified"))
        })?
    };
    Ok(format!(
        "{first}; export dropped, B reset (VfioDevice::reset takes &mut: no export lived); {second}"
    ))
}

/// Where `phys` lies in B's BAR2 mapping.
fn cmb_off(cmb: &CmbBar<'_>, phys: dmaspace::PhysAddr) -> Result<usize, NvmeError> {
    cmb.dma_buf()
        .and_then(|d| d.bar_offset(phys))
        .ok_or_else(|| NvmeError::Protocol(format!("{phys:?} is not in BAR2")))
}

//! A simulated virtio-blk device behind the software IOMMU, and a fake
//! virtio-drivers `Transport` in front of it.
//!
//! Memory model: an identity-mapped machine (rCore-style): the "physical"
//! address of any byte of this process is its virtual address. The device
//! reaches memory only through `SoftIommu::translate`, one granule at a
//! time, with the permission the access needs (read: descriptors, the
//! available ring, buffers the driver wrote; write: buffers the driver
//! reads, the used ring); what translate grants is then read or written
//! at that physical (= virtual) address.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use dmaspace::PhysAddr;
use dmaspace::dir::IommuPerm;
use dmaspace::error::IommuFault;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr as VirtioAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub const SECTOR: usize = 512;
pub const GRANULE: u64 = 4096;
pub const VERSION_1: u64 = 1 << 32;
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// Identity: the memory model of the tests (see the module docs).
pub fn identity(p: NonNull<u8>, _len: usize) -> Option<PhysAddr> {
    Some(PhysAddr::new(p.as_ptr() as u64))
}

/// One page, page-aligned: a driver buffer that can be mapped in place.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// What the device reaches memory through.
pub type Translate = Box<dyn Fn(u64, IommuPerm) -> Result<PhysAddr, IommuFault> + Send>;

/// One descriptor the device walked.
#[derive(Debug, Clone, Copy)]
pub struct SeenDesc {
    pub addr: u64,
    pub len: u32,
    pub device_writes: bool,
}

/// The simulated virtio-blk device.
pub struct BlkModel {
    translate: Translate,
    pub disk: Vec<u8>,
    /// Features the device offers.
    pub offered: u64,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// QEMU's `iommu_platform=on`: FEATURES_OK is refused unless the driver
    /// accepted ACCESS_PLATFORM.
    pub iommu_platform: bool,
    /// Refuse FEATURES_OK whatever the driver chose.
    pub refuse_features: bool,
    pub status: DeviceStatus,
    queue: Option<(u32, u64, u64, u64)>,
    last_avail: u16,
    /// Every translation fault the device met.
    pub faults: Vec<IommuFault>,
    /// Every descriptor walked.
    pub seen: Vec<SeenDesc>,
    /// Physical ranges the device could reach through the IOVA granules
    /// of the buffers it was given (translated granule by granule).
    pub reachable: Vec<(u64, u64)>,
    /// Requests completed.
    pub completed: usize,
}

impl BlkModel {
    pub fn new(translate: Translate, sectors: usize) -> Self {
        let disk = (0..sectors * SECTOR)
            .map(|i| seed_byte(i / SECTOR, i % SECTOR))
            .collect();
        Self {
            translate,
            disk,
            offered: VERSION_1 | ACCESS_PLATFORM,
            driver_features: 0,
            iommu_platform: true,
            refuse_features: false,
            status: DeviceStatus::empty(),
            queue: None,
            last_avail: 0,
            faults: Vec::new(),
            seen: Vec::new(),
            reachable: Vec::new(),
            completed: 0,
        }
    }

    /// The ring addresses the driver gave (descriptors, driver area, device area).
    pub fn rings(&self) -> Option<(u64, u64, u64)> {
        self.queue.map(|(_, d, a, u)| (d, a, u))
    }

    /// Device access: `len` bytes at device address `addr`, granule by
    /// granule through the IOMMU; `f` gets each piece's physical address.
    fn access(
        &mut self,
        addr: u64,
        len: usize,
        perm: IommuPerm,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), IommuFault> {
        let mut done = 0usize;
        while done < len {
            let at = addr + done as u64;
            let in_granule = (GRANULE - at % GRANULE) as usize;
            let n = in_granule.min(len - done);
            let phys = match (self.translate)(at, perm) {
                Ok(p) => p.as_u64(),
                Err(e) => {
                    self.faults.push(e);
                    return Err(e);
                }
            };
            f(phys, done, n);
            done += n;
        }
        Ok(())
    }

    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), IommuFault> {
        let len = out.len();
        let dst = out.as_mut_ptr();
        self.access(addr, len, IommuPerm::READ, |phys, at, n| {
            // SAFETY: the IOMMU granted read access to `phys` (identity
            // memory model: a byte of this process that the adapter mapped
            // for the device); `out` is the model's own buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    std::ptr::with_exposed_provenance::<u8>(phys as usize),
                    dst.add(at),
                    n,
                );
            }
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), IommuFault> {
        let src = data.as_ptr();
        self.access(addr, data.len(), IommuPerm::WRITE, |phys, at, n| {
            // SAFETY: the IOMMU granted write access to `phys` (identity
            // memory model); `data` is the model's own buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.add(at),
                    std::ptr::with_exposed_provenance_mut::<u8>(phys as usize),
                    n,
                );
            }
        })
    }

    fn u16_at(&mut self, addr: u64) -> Result<u16, IommuFault> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Records where the device could reach through the granules of a
    /// buffer it was given: every byte of each granule, translated.
    fn note_reachable(&mut self, addr: u64, len: u32, perm: IommuPerm) {
        let first = addr & !(GRANULE - 1);
        let end = (addr + u64::from(len)).next_multiple_of(GRANULE);
        let mut g = first;
        while g < end {
            for off in [0, GRANULE / 2, GRANULE - 1] {
                if let Ok(p) = (self.translate)(g + off, perm) {
                    let base = p.as_u64() - off;
                    if !self.reachable.contains(&(base, GRANULE)) {
                        self.reachable.push((base, GRANULE));
                    }
                }
            }
            g += GRANULE;
        }
    }

    /// Processes every new entry of the available ring.
    fn process(&mut self) {
        let Some((size, desc, avail, used)) = self.queue else {
            return;
        };
        let Ok(avail_idx) = self.u16_at(avail + 2) else {
            return;
        };
        while self.last_avail != avail_idx {
            let slot = u64::from(self.last_avail % size as u16);
            let Ok(head) = self.u16_at(avail + 4 + 2 * slot) else {
                return;
            };
            let mut chain = Vec::new();
            let mut i = head;
            loop {
                let mut d = [0u8; 16];
                if self.read(desc + 16 * u64::from(i), &mut d).is_err() {
                    return;
                }
                let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
                let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
                let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
                let next = u16::from_le_bytes(d[14..16].try_into().unwrap());
                let sd = SeenDesc {
                    addr,
                    len,
                    device_writes: flags & 2 != 0,
                };
                self.seen.push(sd);
                let perm = if sd.device_writes {
                    IommuPerm::WRITE
                } else {
                    IommuPerm::READ
                };
                self.note_reachable(addr, len, perm);
                chain.push(sd);
                if flags & 1 == 0 {
                    break;
                }
                i = next;
            }
            let written = self.serve(&chain);
            // The used ring: element, then index.
            let Ok(used_idx) = self.u16_at(used + 2) else {
                return;
            };
            let mut elem = [0u8; 8];
            elem[0..4].copy_from_slice(&u32::from(head).to_le_bytes());
            elem[4..8].copy_from_slice(&written.to_le_bytes());
            let uslot = u64::from(used_idx % size as u16);
            if self.write(used + 4 + 8 * uslot, &elem).is_err() {
                return;
            }
            if self
                .write(used + 2, &used_idx.wrapping_add(1).to_le_bytes())
                .is_err()
            {
                return;
            }
            self.last_avail = self.last_avail.wrapping_add(1);
            self.completed += 1;
        }
    }

    /// Serves one request chain: header, data, status. Returns the bytes
    /// the device wrote.
    fn serve(&mut self, chain: &[SeenDesc]) -> u32 {
        let (Some(hdr), Some(status)) = (chain.first(), chain.last()) else {
            return 0;
        };
        let mut h = [0u8; 16];
        if hdr.device_writes || self.read(hdr.addr, &mut h).is_err() {
            return 0;
        }
        let kind = u32::from_le_bytes(h[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(h[8..16].try_into().unwrap()) as usize;
        let data = &chain[1..chain.len() - 1];
        let mut at = sector * SECTOR;
        let mut written = 0u32;
        let mut ok = true;
        for d in data {
            let len = d.len as usize;
            if at + len > self.disk.len() {
                ok = false;
                break;
            }
            match (kind, d.device_writes) {
                (0, true) => {
                    let bytes = self.disk[at..at + len].to_vec();
                    ok &= self.write(d.addr, &bytes).is_ok();
                    written += d.len;
                }
                (1, false) => {
                    let mut bytes = vec![0u8; len];
                    ok &= self.read(d.addr, &mut bytes).is_ok();
                    if ok {
                        self.disk[at..at + len].copy_from_slice(&bytes);
                    }
                }
                _ => ok = false,
            }
            at += len;
        }
        let code = if ok { 0u8 } else { 1 };
        if status.device_writes && self.write(status.addr, &[code]).is_ok() {
            written += 1;
        }
        written
    }
}

/// The byte the disk is seeded with.
pub fn seed_byte(sector: usize, offset: usize) -> u8 {
    (sector.wrapping_mul(31) ^ offset.wrapping_mul(7)) as u8
}

/// A virtio-drivers transport whose device is a [`BlkModel`].
pub struct FakeTransport {
    pub model: Arc<Mutex<BlkModel>>,
}

impl FakeTransport {
    pub fn new(model: BlkModel) -> (Self, Arc<Mutex<BlkModel>>) {
        let model = Arc::new(Mutex::new(model));
        (
            Self {
                model: Arc::clone(&model),
            },
            model,
        )
    }

    fn config(&self) -> [u8; 64] {
        let m = self
            .model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut c = [0u8; 64];
        let sectors = (m.disk.len() / SECTOR) as u64;
        c[0..8].copy_from_slice(&sectors.to_le_bytes());
        c
    }
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn read_device_features(&mut self) -> u64 {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .offered
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .driver_features = driver_features;
    }

    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        16
    }

    fn notify(&mut self, _queue: u16) {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .process();
    }

    fn get_status(&self) -> DeviceStatus {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut m = self
            .model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut s = status;
        if status.is_empty() {
            m.queue = None;
            m.last_avail = 0;
        }
        if s.contains(DeviceStatus::FEATURES_OK) {
            let refuse =
                m.refuse_features || (m.iommu_platform && m.driver_features & ACCESS_PLATFORM == 0);
            if refuse {
                s.remove(DeviceStatus::FEATURES_OK);
            }
        }
        m.status = s;
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        _queue: u16,
        size: u32,
        descriptors: VirtioAddr,
        driver_area: VirtioAddr,
        device_area: VirtioAddr,
    ) {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .queue = Some((size, descriptors, driver_area, device_area));
    }

    fn queue_unset(&mut self, _queue: u16) {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .queue = None;
    }

    fn queue_used(&mut self, _queue: u16) -> bool {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .queue
            .is_some()
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let c = self.config();
        let end = offset + size_of::<T>();
        if end > c.len() {
            return Err(Error::ConfigSpaceTooSmall);
        }
        T::read_from_bytes(&c[offset..end]).map_err(|_| Error::InvalidParam)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), Error> {
        Ok(())
    }
}

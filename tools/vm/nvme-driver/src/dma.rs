//! A DMA domain for the driver: one of dmaspace's src/linux backends (VFIO
//! type1 container, iommufd IOAS, or no-IOMMU container), an IOVA allocator,
//! and host buffers mapped in it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use dmaspace::linux::{
    Ioas, Iommufd, MappedBar, PciAddress, PinnedMemory, VfioContainer, VfioError as SysError,
    VfioGroup, page_size,
};

/// Identity of one DMA domain (a container or an IOAS) in this process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DomainId(u32);

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The kernel interface behind a domain.
pub enum Backend {
    /// VFIO type1: IOVAs mapped from process virtual addresses.
    Type1 {
        /// The container.
        container: VfioContainer,
        /// Its groups (kept open while their devices are used).
        _groups: Vec<VfioGroup>,
    },
    /// iommufd: IOVAs mapped into an IOAS.
    Iommufd {
        /// `/dev/iommu` (kept open).
        _fd: Iommufd,
        /// The address space.
        ioas: Ioas,
    },
    /// No IOMMU: DMA addresses are physical addresses (pagemap).
    NoIommu {
        /// The container (kept open: no mappings to make).
        _container: VfioContainer,
        /// Its no-IOMMU groups.
        _groups: Vec<VfioGroup>,
    },
}

impl Backend {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Type1 { .. } => "vfio-type1",
            Self::Iommufd { .. } => "iommufd",
            Self::NoIommu { .. } => "vfio-noiommu",
        }
    }
}

/// The first IOVA handed out: clear of page 0 and of the low MiBs.
const IOVA_START: u64 = 0x1000_0000;
/// x86's interrupt window, reserved in every Intel IOMMU domain.
const MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0x10_0000);

/// A DMA domain.
pub struct Dma {
    id: DomainId,
    backend: Backend,
    next_iova: Cell<u64>,
    /// Ranges no IOVA may take: the MSI window, and the CMB windows of the
    /// controllers of this domain (a controller takes an address inside its
    /// CMB window as its own memory and never sends it to the IOMMU).
    excluded: RefCell<Vec<(u64, u64)>>,
    /// Live IOVA mappings (start, len).
    live: RefCell<Vec<(u64, u64)>>,
}

/// An error of the DMA layer.
#[derive(Debug)]
pub enum DmaError {
    /// The kernel said no.
    Sys(SysError),
    /// The request itself is wrong.
    Invalid(String),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sys(e) => write!(f, "{e}"),
            Self::Invalid(s) => f.write_str(s),
        }
    }
}

impl From<SysError> for DmaError {
    fn from(e: SysError) -> Self {
        Self::Sys(e)
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The first page-aligned range of `len` bytes at or above `from` that overlaps
/// none of `excluded`; `(start, end)`.
fn next_free(from: u64, len: u64, page: u64, excluded: &[(u64, u64)]) -> Option<(u64, u64)> {
    let len = len.checked_next_multiple_of(page)?.max(page);
    let mut at = from.checked_next_multiple_of(page)?;
    while let Some(&(s, l)) = excluded.iter().find(|&&w| overlaps((at, len), w)) {
        at = s.checked_add(l)?.checked_next_multiple_of(page)?;
    }
    Some((at, at.checked_add(len)?))
}

static NEXT_DOMAIN: AtomicU32 = AtomicU32::new(1);

impl Dma {
    /// A domain over `backend`.
    pub fn new(backend: Backend) -> Rc<Self> {
        Rc::new(Self {
            id: DomainId(NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed)),
            backend,
            next_iova: Cell::new(IOVA_START),
            excluded: RefCell::new(vec![MSI_WINDOW]),
            live: RefCell::new(Vec::new()),
        })
    }

    /// Its identity.
    pub fn id(&self) -> DomainId {
        self.id
    }

    /// Its backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Reserves `len` bytes of IOVA space, clear of the excluded ranges. A bump
    /// allocator: an IOVA is never handed out twice (the negative control relies
    /// on a stale IOVA staying unmapped).
    fn alloc_iova(&self, len: u64) -> Result<u64, DmaError> {
        let (at, end) = next_free(
            self.next_iova.get(),
            len,
            page_size() as u64,
            &self.excluded.borrow(),
        )
        .ok_or_else(|| DmaError::Invalid("IOVA space exhausted".into()))?;
        self.next_iova.set(end);
        Ok(at)
    }

    /// Keeps IOVAs out of `[start, start + len)` from now on; fails if a live
    /// mapping is already there.
    pub fn exclude(&self, start: u64, len: u64) -> Result<(), DmaError> {
        if let Some(&(s, l)) = self
            .live
            .borrow()
            .iter()
            .find(|&&m| overlaps(m, (start, len)))
        {
            return Err(DmaError::Invalid(format!(
                "IOVA mapping {s:#x}+{l:#x} overlaps the window {start:#x}+{len:#x} a controller claims"
            )));
        }
        self.excluded.borrow_mut().push((start, len));
        Ok(())
    }

    /// Pinned host memory of `len` bytes (whole pages), zero-filled, mapped for
    /// the devices of this domain.
    pub fn alloc(self: &Rc<Self>, len: usize) -> Result<HostBuf, DmaError> {
        let mem = PinnedMemory::new(len)?;
        let dma = match &self.backend {
            Backend::Type1 { container: c, .. } => {
                let iova = self.alloc_iova(mem.len() as u64)?;
                c.map_dma(&mem, iova)?;
                self.live.borrow_mut().push((iova, mem.len() as u64));
                HostDma::Iova(iova)
            }
            Backend::Iommufd { ioas, .. } => {
                let iova = self.alloc_iova(mem.len() as u64)?;
                ioas.map(&mem, iova)?;
                self.live.borrow_mut().push((iova, mem.len() as u64));
                HostDma::Iova(iova)
            }
            Backend::NoIommu { .. } => {
                let page = page_size();
                let pages = (0..mem.len() / page)
                    .map(|i| mem.phys_addr(i * page))
                    .collect::<Result<Vec<_>, _>>()?;
                HostDma::Phys { pages, page }
            }
        };
        Ok(HostBuf {
            mem,
            domain: Rc::clone(self),
            dma,
        })
    }

    fn unmap_iova(&self, iova: u64, len: u64) -> Result<(), DmaError> {
        match &self.backend {
            Backend::Type1 { container: c, .. } => {
                c.unmap_dma(iova, len)?;
            }
            Backend::Iommufd { ioas, .. } => {
                ioas.unmap(iova, len)?;
            }
            Backend::NoIommu { .. } => {}
        }
        self.live.borrow_mut().retain(|&m| m != (iova, len));
        Ok(())
    }

    /// Unmaps `buf` but keeps its memory; returns the IOVA it had (never handed
    /// out again). Its device address is gone: the seam refuses it from now on.
    pub fn unmap(&self, buf: &mut HostBuf) -> Result<Option<u64>, DmaError> {
        match buf.dma {
            HostDma::Iova(iova) => {
                self.unmap_iova(iova, buf.mem.len() as u64)?;
                buf.dma = HostDma::Unmapped;
                Ok(Some(iova))
            }
            HostDma::Phys { .. } => {
                buf.dma = HostDma::Unmapped;
                Ok(None)
            }
            HostDma::Unmapped => Ok(None),
        }
    }

    /// Maps a peer's BAR into this domain for `client` (the host-bridge route):
    /// type1 accepts the PFNMAP range; iommufd in 6.12 refuses it with a typed
    /// error (`PfnmapNotMappable`), and nothing is mapped.
    pub fn map_peer_bar(
        &self,
        bar: &MappedBar,
        client: PciAddress,
    ) -> Result<PeerWindow, DmaError> {
        let len = bar.len() as u64;
        let iova = self.alloc_iova(len)?;
        match &self.backend {
            Backend::Type1 { container: c, .. } => c.map_bar(bar, iova)?,
            Backend::Iommufd { ioas, .. } => ioas.map_bar(bar, iova)?,
            Backend::NoIommu { .. } => {
                return Err(DmaError::Invalid(
                    "no IOMMU: a peer BAR is reached by its bus address, not mapped".into(),
                ));
            }
        }
        self.live.borrow_mut().push((iova, len));
        Ok(PeerWindow {
            client,
            len: bar.len(),
            route: PeerRoute::Iova {
                domain: self.id,
                base: iova,
            },
        })
    }

    /// Where the next IOVA allocation starts looking (for probing that a failed
    /// mapping left its range free).
    pub fn peek_iova(&self) -> u64 {
        self.next_iova.get()
    }
}

/// How the devices of a domain reach a host buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostDma {
    /// At this IOVA (contiguous).
    Iova(u64),
    /// At these physical addresses, one per page (no IOMMU).
    Phys {
        /// Physical address of each page.
        pages: Vec<u64>,
        /// The page size.
        page: usize,
    },
    /// Not reachable (unmapped).
    Unmapped,
}

/// Pinned host memory mapped in one domain. Unmapped when dropped.
pub struct HostBuf {
    mem: PinnedMemory,
    domain: Rc<Dma>,
    dma: HostDma,
}

impl fmt::Debug for HostBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBuf")
            .field("domain", &self.domain.id)
            .field("len", &self.mem.len())
            .field("dma", &self.dma)
            .finish()
    }
}

impl HostBuf {
    /// Its domain.
    pub fn domain(&self) -> DomainId {
        self.domain.id
    }

    /// How the devices reach it.
    pub fn dma(&self) -> &HostDma {
        &self.dma
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// The CPU's access to the bytes.
    pub fn mem(&self) -> &PinnedMemory {
        &self.mem
    }

    /// The CPU's write access to the bytes.
    pub fn mem_mut(&mut self) -> &mut PinnedMemory {
        &mut self.mem
    }
}

impl Drop for HostBuf {
    fn drop(&mut self) {
        if let HostDma::Iova(iova) = self.dma {
            // Best effort: on failure the kernel keeps the pages pinned until the
            // container or IOAS closes, so the device never reaches reused memory.
            let _ = self.domain.unmap_iova(iova, self.mem.len() as u64);
        }
    }
}

/// How a client reaches a peer's BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRoute {
    /// Through the host bridge: the BAR mapped at this IOVA of the client's domain.
    Iova {
        /// The domain it is mapped in.
        domain: DomainId,
        /// The IOVA of the BAR's first byte.
        base: u64,
    },
    /// Through a switch: the BAR's PCI bus address (IOMMU bypassed, or none).
    BusAddr {
        /// The bus address of the BAR's first byte.
        base: u64,
    },
}

/// A peer's BAR as one client reaches it.
#[derive(Debug)]
pub struct PeerWindow {
    client: PciAddress,
    len: usize,
    route: PeerRoute,
}

impl PeerWindow {
    /// The bus-address route: `base` is the BAR's bus address (config space).
    pub fn bus_addr(client: PciAddress, base: u64, len: usize) -> Self {
        Self {
            client,
            len,
            route: PeerRoute::BusAddr { base },
        }
    }

    /// The client it was classified and mapped for.
    pub fn client(&self) -> PciAddress {
        self.client
    }

    /// Length of the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The route.
    pub fn route(&self) -> PeerRoute {
        self.route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_half_open() {
        assert!(overlaps((0, 10), (9, 1)));
        assert!(!overlaps((0, 10), (10, 1)));
        assert!(!overlaps((10, 1), (0, 10)));
        assert!(overlaps((5, 1), (0, 10)));
    }

    #[test]
    fn the_seam_checks_peer_windows() {
        use crate::seam::{SeamError, Target, device_addr};
        let a: PciAddress = "0000:03:00.0".parse().unwrap();
        let b: PciAddress = "0000:04:00.0".parse().unwrap();
        let w = PeerWindow::bus_addr(a, 0xfdc0_0000, 0x40_0000);
        let d = DomainId(7);
        assert_eq!(
            device_addr(d, a, Target::Peer(&w, 0x1000)).unwrap().raw(),
            0xfdc0_1000
        );
        assert_eq!(
            device_addr(d, b, Target::Peer(&w, 0)),
            Err(SeamError::WrongClient {
                client: b,
                route_for: a
            })
        );
        assert_eq!(
            device_addr(d, a, Target::Peer(&w, 0x40_0000)),
            Err(SeamError::OutOfRange {
                offset: 0x40_0000,
                len: 0x40_0000
            })
        );
        // A window mapped in another domain is refused.
        let w = PeerWindow {
            client: a,
            len: 0x1000,
            route: PeerRoute::Iova {
                domain: DomainId(8),
                base: 0x1000_0000,
            },
        };
        assert_eq!(
            device_addr(d, a, Target::Peer(&w, 0)),
            Err(SeamError::WrongDomain {
                want: d,
                got: DomainId(8)
            })
        );
    }

    #[test]
    fn iovas_skip_excluded_windows_and_are_page_rounded() {
        let p = 0x1000;
        assert_eq!(next_free(0x1000, 1, p, &[]), Some((0x1000, 0x2000)));
        assert_eq!(next_free(0x1001, 0x1000, p, &[]), Some((0x2000, 0x3000)));
        // A CMB window at 0x3000..0x5000 pushes a 2-page request past it.
        assert_eq!(
            next_free(0x2000, 0x2000, p, &[(0x3000, 0x2000)]),
            Some((0x5000, 0x7000))
        );
        // Chained windows, the MSI window among them.
        let ex = [(0xfee0_0000, 0x10_0000), (0xfef0_0000, 0x1000)];
        assert_eq!(
            next_free(0xfedf_f000, 0x2000, p, &ex),
            Some((0xfef0_1000, 0xfef0_3000))
        );
        // The top of the space: no wrap.
        assert_eq!(next_free(u64::MAX - 0xfff, 0x2000, p, &[]), None);
    }
}

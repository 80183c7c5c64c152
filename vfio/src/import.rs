//! What an IOAS keeps of the dma-bufs it imported
//! ([`Ioas::import`](crate::Ioas::import)): each BAR's dma-buf and VFIO's
//! `mmap` of it, so that a map of a process range inside the `mmap` becomes
//! `IOMMU_IOAS_MAP_FILE` of the same bytes of the dma-buf.

use core::fmt;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::vec::Vec;

use crate::MappedBar;
use dmaspace::pci::Bdf;

/// The dma-buf of a whole BAR and VFIO's `mmap` of it: what an IOAS that
/// imported the BAR keeps (weakly) to turn a map of a virtual range inside
/// the `mmap` into `IOMMU_IOAS_MAP_FILE` of the same bytes of the dma-buf.
/// While the record lives, the `mmap` does, so no other memory can be at
/// those virtual addresses.
pub(crate) struct ExportRecord {
    pub(crate) dmabuf: OwnedFd,
    pub(crate) bar: MappedBar,
    pub(crate) device: Bdf,
}

impl ExportRecord {
    /// Where `[vaddr, vaddr + len)` lies in the BAR (and so in the
    /// dma-buf): `Ok(None)` if it does not meet the BAR's `mmap`,
    /// `Err(())` if it straddles its edge.
    fn offset_of(&self, vaddr: u64, len: u64) -> Result<Option<u64>, ()> {
        range_offset(self.bar.vaddr(), self.bar.len() as u64, vaddr, len)
    }
}

/// Where `[vaddr, vaddr + len)` lies in `[start, start + size)`: `Ok(None)`
/// if they do not meet, `Err(())` if it straddles an edge.
fn range_offset(start: u64, size: u64, vaddr: u64, len: u64) -> Result<Option<u64>, ()> {
    let end = vaddr.saturating_add(len);
    let bar_end = start.saturating_add(size);
    if end <= start || vaddr >= bar_end {
        Ok(None)
    } else if vaddr >= start && end <= bar_end {
        Ok(Some(vaddr - start))
    } else {
        Err(())
    }
}

impl fmt::Debug for ExportRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportRecord")
            .field("device", &self.device)
            .field("bar", &self.bar.index())
            .field("len", &self.bar.len())
            .finish_non_exhaustive()
    }
}

/// The dma-bufs an IOAS imported, weakly: a record that died (its
/// `DmaBufBar` dropped) no longer names the virtual range it had.
#[derive(Debug, Default)]
pub(crate) struct Imports(Mutex<Vec<Weak<ExportRecord>>>);

/// How the IOAS maps a virtual range.
pub(crate) enum Source {
    /// Through the process mapping (`IOMMU_IOAS_MAP`).
    Vaddr,
    /// Through an imported dma-buf, at this offset (`IOMMU_IOAS_MAP_FILE`).
    DmaBuf(Arc<ExportRecord>, u64),
}

impl Imports {
    /// How `[vaddr, vaddr + len)` is mapped; `Err(())` if it straddles the
    /// edge of an imported BAR's `mmap` (no one call maps it).
    pub(crate) fn source(&self, vaddr: u64, len: u64) -> Result<Source, ()> {
        let live = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for rec in live.iter().filter_map(Weak::upgrade) {
            if let Some(off) = rec.offset_of(vaddr, len)? {
                return Ok(Source::DmaBuf(rec, off));
            }
        }
        Ok(Source::Vaddr)
    }

    pub(crate) fn add(&self, rec: &Arc<ExportRecord>) {
        let mut live = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        if !live.iter().any(|w| w.ptr_eq(&Arc::downgrade(rec))) {
            live.push(Arc::downgrade(rec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_size;

    #[test]
    fn ranges_inside_the_bar_map_from_the_dma_buf_at_their_offset() {
        let (start, size) = (0x7f00_0000_0000u64, 0x10_0000u64);
        let off = |vaddr, len| range_offset(start, size, vaddr, len);
        assert_eq!(off(start, 4096), Ok(Some(0)));
        assert_eq!(off(start + 0x3000, 0x2000), Ok(Some(0x3000)));
        assert_eq!(off(start + size - 4096, 4096), Ok(Some(size - 4096)));
        assert_eq!(off(start, size), Ok(Some(0)));
        assert_eq!(off(start - 4096, 4096), Ok(None));
        assert_eq!(off(start + size, 4096), Ok(None));
        assert_eq!(off(start - 4096, 8192), Err(()));
        assert_eq!(off(start + size - 4096, 8192), Err(()));
        assert_eq!(off(start - 4096, size + 8192), Err(()));
    }

    /// The registry an IOAS keeps: a range inside an imported BAR's `mmap`
    /// maps from the dma-buf at its offset, one across its edge is refused,
    /// any other through its process address; and once the owner drops the
    /// record, its addresses name nothing (the `mmap` is gone with it).
    #[test]
    #[cfg_attr(miri, ignore = "mmap is a foreign call")]
    fn an_import_names_its_bar_while_it_lives() {
        let page = page_size() as u64;
        let bar = MappedBar::anonymous(4 * page as usize);
        let start = bar.vaddr();
        let rec = Arc::new(ExportRecord {
            dmabuf: std::fs::File::open("/dev/null").unwrap().into(),
            bar,
            device: Bdf::new(0, 0, 4, 0),
        });
        let imports = Imports::default();
        imports.add(&rec);
        imports.add(&rec);
        assert_eq!(
            imports.0.lock().unwrap().len(),
            1,
            "importing twice is once"
        );
        let want = Arc::as_ptr(&rec);
        let at = |vaddr, len| match imports.source(vaddr, len) {
            Ok(Source::DmaBuf(r, off)) => {
                assert_eq!(Arc::as_ptr(&r), want);
                Some(Some(off))
            }
            Ok(Source::Vaddr) => Some(None),
            Err(()) => None,
        };
        assert_eq!(at(start + page, 2 * page), Some(Some(page)));
        assert_eq!(at(start + 4 * page, page), Some(None));
        assert_eq!(at(start + 3 * page, 2 * page), None);
        drop(rec);
        assert_eq!(at(start + page, 2 * page), Some(None));
        imports.add(&Arc::new(ExportRecord {
            dmabuf: std::fs::File::open("/dev/null").unwrap().into(),
            bar: MappedBar::anonymous(page as usize),
            device: Bdf::new(0, 0, 5, 0),
        }));
        assert_eq!(
            imports.0.lock().unwrap().len(),
            1,
            "dead records are pruned"
        );
    }
}

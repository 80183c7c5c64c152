//! PRP (Physical Region Page) layout of one command (NVMe base spec 4.1.1):
//! PRP1 may start anywhere in a page (dword-aligned); every later entry is a
//! page start. Two pages fit in PRP1/PRP2; more need a PRP list, whose pages
//! hold `page / 8` entries each, the last slot of a full page pointing to the
//! next list page.
//!
//! Data entries are [`DevAddr`]s of the command's mapping; the list pages are
//! named by index here and resolved by the caller, whose PRP list memory is
//! mapped separately (coherent pages).

use crate::seam::DevAddr;

/// One slot of a PRP list page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEntry<'a> {
    /// A data page.
    Data(DevAddr<'a>),
    /// The next list page (by index), in the last slot of a full page.
    Chain(usize),
}

/// What PRP2 holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prp2<'a> {
    /// Nothing: the data fits PRP1's page.
    None,
    /// The second data page.
    Data(DevAddr<'a>),
    /// List page 0.
    List,
}

/// Where the entries of one command go.
#[derive(Debug, PartialEq, Eq)]
pub struct PrpPlan<'a> {
    /// PRP1: the first data address.
    pub prp1: DevAddr<'a>,
    /// PRP2.
    pub prp2: Prp2<'a>,
    /// The contents of each list page used.
    pub lists: Vec<Vec<ListEntry<'a>>>,
}

/// Why a layout is impossible.
#[derive(Debug, PartialEq, Eq)]
pub enum PrpError<E> {
    /// Zero bytes.
    Empty,
    /// The first address is not dword-aligned.
    FirstUnaligned(u64),
    /// An entry after the first is not page-aligned (the target is not a page
    /// run in device address space).
    EntryUnaligned(u64),
    /// More list pages needed than available.
    TooManyListPages {
        /// Needed.
        need: usize,
        /// Available.
        have: usize,
    },
    /// The seam refused an address.
    Addr(E),
}

/// Lays out a command of `len` bytes. `data_at(off)` is the device address of
/// byte `off` of the command's data (called for 0 and for each later page
/// start); at most `max_lists` list pages.
pub fn plan<'a, E>(
    len: usize,
    page: usize,
    max_lists: usize,
    mut data_at: impl FnMut(usize) -> Result<DevAddr<'a>, E>,
) -> Result<PrpPlan<'a>, PrpError<E>> {
    if len == 0 {
        return Err(PrpError::Empty);
    }
    let prp1 = data_at(0).map_err(PrpError::Addr)?;
    if prp1.raw() % 4 != 0 {
        return Err(PrpError::FirstUnaligned(prp1.raw()));
    }
    let first_room = page - (prp1.raw() as usize % page);
    let mut entries = Vec::new();
    let mut off = first_room;
    while off < len {
        let a = data_at(off).map_err(PrpError::Addr)?;
        if a.raw() % page as u64 != 0 {
            return Err(PrpError::EntryUnaligned(a.raw()));
        }
        entries.push(a);
        off += page;
    }
    let (prp2, lists) = match entries.len() {
        0 => (Prp2::None, Vec::new()),
        1 => (Prp2::Data(entries[0]), Vec::new()),
        n => {
            let per = page / 8;
            // Each full page but the last carries per-1 entries and a chain pointer.
            let need = if n <= per {
                1
            } else {
                1 + (n - per).div_ceil(per - 1)
            };
            if need > max_lists {
                return Err(PrpError::TooManyListPages {
                    need,
                    have: max_lists,
                });
            }
            let mut lists = Vec::with_capacity(need);
            let mut rest = &entries[..];
            for i in 0..need {
                let mut l: Vec<ListEntry<'a>> = Vec::with_capacity(per);
                if rest.len() <= per {
                    l.extend(rest.iter().map(|&a| ListEntry::Data(a)));
                    rest = &[];
                } else {
                    l.extend(rest[..per - 1].iter().map(|&a| ListEntry::Data(a)));
                    rest = &rest[per - 1..];
                    l.push(ListEntry::Chain(i + 1));
                }
                lists.push(l);
            }
            (Prp2::List, lists)
        }
    };
    Ok(PrpPlan { prp1, prp2, lists })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn addr(x: u64) -> DevAddr<'static> {
        // SAFETY: test values, never given to a device.
        unsafe { DevAddr::assume_valid(x) }
    }

    fn run(base: u64, len: usize, max_lists: usize) -> Result<PrpPlan<'static>, PrpError<()>> {
        plan(len, PAGE, max_lists, |off| Ok(addr(base + off as u64)))
    }

    fn data(l: &[ListEntry<'_>]) -> Vec<u64> {
        l.iter()
            .filter_map(|e| match e {
                ListEntry::Data(a) => Some(a.raw()),
                ListEntry::Chain(_) => None,
            })
            .collect()
    }

    #[test]
    fn one_and_two_pages_need_no_list() {
        let p = run(0x10_0000, 512, 4).unwrap();
        assert_eq!(
            (p.prp1, p.prp2, p.lists.len()),
            (addr(0x10_0000), Prp2::None, 0)
        );
        let p = run(0x10_0000, PAGE, 4).unwrap();
        assert_eq!(p.prp2, Prp2::None);
        let p = run(0x10_0000, PAGE + 1, 4).unwrap();
        assert_eq!(p.prp2, Prp2::Data(addr(0x10_1000)));
        // Unaligned first page: 4 KiB spans two pages.
        let p = run(0x10_0200, PAGE, 4).unwrap();
        assert_eq!(
            (p.prp1, p.prp2),
            (addr(0x10_0200), Prp2::Data(addr(0x10_1000)))
        );
    }

    #[test]
    fn a_list_holds_512_entries_then_chains() {
        // 3 pages: PRP2 points at a list of 2.
        let p = run(0x10_0000, 3 * PAGE, 4).unwrap();
        assert_eq!(p.prp2, Prp2::List);
        assert_eq!(p.lists.len(), 1);
        assert_eq!(data(&p.lists[0]), [0x10_1000, 0x10_2000]);
        // 513 pages: 512 list entries fit in one list page exactly.
        let p = run(0x10_0000, 513 * PAGE, 4).unwrap();
        assert_eq!(p.lists.len(), 1);
        assert_eq!(p.lists[0].len(), 512);
        // 4 MiB from an unaligned first byte: PRP1 + 1024 entries ->
        // 511 + chain, 511 + chain, 2.
        let p = run(0x10_0200, 4 << 20, 8).unwrap();
        let lens: Vec<usize> = p.lists.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![512, 512, 2]);
        assert_eq!(p.lists[0][511], ListEntry::Chain(1), "chain to list page 1");
        assert_eq!(p.lists[1][511], ListEntry::Chain(2), "chain to list page 2");
        assert_eq!(p.lists[0][0], ListEntry::Data(addr(0x10_1000)));
        assert_eq!(
            *p.lists[2].last().unwrap(),
            ListEntry::Data(addr(0x10_0000 + (1024 << 12)))
        );
        let n: usize = p.lists.iter().map(|l| data(l).len()).sum();
        assert_eq!(n, 1024);
    }

    #[test]
    fn impossible_layouts_are_errors() {
        assert_eq!(run(0x10_0000, 0, 4), Err(PrpError::Empty));
        assert_eq!(
            run(0x10_0002, 8, 4),
            Err(PrpError::FirstUnaligned(0x10_0002))
        );
        assert_eq!(
            run(0x10_0000, 4 << 20, 1),
            Err(PrpError::TooManyListPages { need: 2, have: 1 })
        );
        // A target that is not one page run in device space.
        let scattered = |off: usize| {
            Ok(addr(if off == 0 {
                0x10_0000
            } else {
                0x20_0008 + off as u64
            }))
        };
        let r: Result<PrpPlan<'_>, PrpError<()>> = plan(3 * PAGE, PAGE, 4, scattered);
        assert_eq!(r, Err(PrpError::EntryUnaligned(0x20_1008)));
        let r: Result<PrpPlan<'_>, PrpError<&str>> = plan(PAGE, PAGE, 4, |_| Err("refused"));
        assert_eq!(r, Err(PrpError::Addr("refused")));
    }
}

//! SGL (Scatter Gather List) layout of one I/O command (NVMe base spec
//! 4.1.2): the command's data pointer is one 16-byte descriptor, either the
//! whole transfer as one Data Block, or a (Last) Segment descriptor naming a
//! list of descriptors in memory. A list page holds `page / 16` descriptors;
//! when more are needed, the last slot of a full page is a Segment (or, for
//! the final page, Last Segment) descriptor naming the next page.
//!
//! Unlike PRPs, a data block may start and end anywhere: each mapped segment
//! is one descriptor, whatever its alignment, so a transfer may gather from
//! (or scatter into) byte-granular pieces. QEMU's controller reports
//! SGLS = 1 (supported, no alignment) and takes SGLs on I/O commands only
//! (admin commands must use PRPs).
//!
//! Data addresses are [`DevAddr`]s of the command's mapping; list pages are
//! named by index here and resolved by the caller (coherent pages).

use crate::seam::DevAddr;

/// Bytes per descriptor.
pub const DESC: usize = 16;

/// Descriptor types (high nibble of byte 15; sub type 0, "address").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Data Block: `len` bytes at the address.
    Data = 0x0,
    /// Segment: a list of descriptors that ends with another (Last) Segment.
    Segment = 0x2,
    /// Last Segment: a list of data descriptors only.
    LastSegment = 0x3,
}

/// A descriptor whose address is either data or list page `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Desc<'a> {
    /// A data block.
    Data(DevAddr<'a>, u32),
    /// List page `page`, holding `len` bytes of descriptors, of kind `kind`.
    List {
        /// List page index.
        page: usize,
        /// Bytes of descriptors in it.
        len: u32,
        /// Segment or Last Segment.
        kind: Kind,
    },
}

/// The two little-endian quadwords of a descriptor at `addr`.
pub fn words(addr: u64, len: u32, kind: Kind) -> [u64; 2] {
    [addr, u64::from(len) | ((kind as u64) << 60)]
}

/// Where the descriptors of one command go.
#[derive(Debug, PartialEq, Eq)]
pub struct SglPlan<'a> {
    /// The command's data pointer (SGL1).
    pub dptr: Desc<'a>,
    /// The contents of each list page used.
    pub lists: Vec<Vec<Desc<'a>>>,
}

/// Why a layout is impossible.
#[derive(Debug, PartialEq, Eq)]
pub enum SglError {
    /// No data, or a zero-length piece.
    Empty,
    /// More list pages needed than available.
    TooManyListPages {
        /// Needed.
        need: usize,
        /// Available.
        have: usize,
    },
}

/// Lays out the data blocks `data` (address, length) of one command in at
/// most `max_lists` list pages of `page` bytes.
pub fn plan<'a>(
    data: &[(DevAddr<'a>, u32)],
    page: usize,
    max_lists: usize,
) -> Result<SglPlan<'a>, SglError> {
    if data.is_empty() || data.iter().any(|&(_, l)| l == 0) {
        return Err(SglError::Empty);
    }
    if let [(a, l)] = *data {
        return Ok(SglPlan {
            dptr: Desc::Data(a, l),
            lists: Vec::new(),
        });
    }
    let per_page = page / DESC;
    // Pages: every page but the last holds per_page - 1 data descriptors and
    // the pointer to the next page.
    let need = if data.len() <= per_page {
        1
    } else {
        (data.len() - 1).div_ceil(per_page - 1)
    };
    if need > max_lists {
        return Err(SglError::TooManyListPages {
            need,
            have: max_lists,
        });
    }
    let mut lists: Vec<Vec<Desc<'a>>> = Vec::with_capacity(need);
    let mut rest = data;
    for i in 0..need {
        let last = i + 1 == need;
        let take = if last { rest.len() } else { per_page - 1 };
        let (here, tail) = rest.split_at(take);
        rest = tail;
        lists.push(here.iter().map(|&(a, l)| Desc::Data(a, l)).collect());
    }
    // Chain pointers: page i ends with the descriptor of page i + 1, a Last
    // Segment for the final page, a Segment otherwise.
    let kind_of = |k: usize| {
        if k + 1 == need {
            Kind::LastSegment
        } else {
            Kind::Segment
        }
    };
    let bytes = |entries: usize| (entries * DESC) as u32;
    let sizes: Vec<usize> = (0..need)
        .map(|k| lists[k].len() + usize::from(k + 1 < need))
        .collect();
    for (i, list) in lists.iter_mut().enumerate().take(need - 1) {
        list.push(Desc::List {
            page: i + 1,
            len: bytes(sizes[i + 1]),
            kind: kind_of(i + 1),
        });
    }
    Ok(SglPlan {
        dptr: Desc::List {
            page: 0,
            len: bytes(sizes[0]),
            kind: kind_of(0),
        },
        lists,
    })
}

/// A piece of a command: (piece index, offset in the piece, length).
pub type Piece = (usize, u64, u64);

/// Cuts a transfer made of pieces of lengths `lens` (in order) into commands:
/// each command's pieces `(piece index, offset in it, length)`, at most
/// `max_bytes` bytes and `max_descs` descriptors, a whole number of `block`s.
/// Pieces may have any length; a command cuts a piece where it must.
///
/// # Errors
///
/// A message when the transfer is not a whole number of blocks, or when
/// `max_descs` descriptors cannot hold one block at some point.
pub fn commands(
    lens: &[u64],
    block: u64,
    max_bytes: u64,
    max_descs: usize,
) -> Result<Vec<Vec<Piece>>, String> {
    let total: u64 = lens.iter().sum();
    if block == 0 || total == 0 || total % block != 0 || max_bytes < block || max_descs == 0 {
        return Err(format!(
            "{total} bytes in {block}-byte blocks, at most {max_bytes} bytes and {max_descs} descriptors per command"
        ));
    }
    let mut out = Vec::new();
    let (mut piece, mut off) = (0usize, 0u64);
    let mut s = 0u64;
    while s < total {
        let room = (total - s).min(max_bytes / block * block);
        // Take pieces while descriptors and bytes last.
        let mut cmd = Vec::new();
        let (mut p, mut o, mut got) = (piece, off, 0u64);
        while got < room && cmd.len() < max_descs {
            if o == lens[p] {
                // An empty piece takes no descriptor.
                (p, o) = (p + 1, 0);
                continue;
            }
            let l = (lens[p] - o).min(room - got);
            cmd.push((p, o, l));
            got += l;
            o += l;
            if o == lens[p] {
                p += 1;
                o = 0;
            }
        }
        // Out of descriptors before `room`: end on a block boundary.
        let keep = got / block * block;
        if keep == 0 {
            return Err(format!(
                "{max_descs} descriptors do not hold one {block}-byte block at byte {s:#x}"
            ));
        }
        let mut cut = got - keep;
        while cut > 0 {
            let (cp, co, cl) = cmd.pop().expect("cut is within the pieces taken");
            if cl > cut {
                cmd.push((cp, co, cl - cut));
                cut = 0;
            } else {
                cut -= cl;
            }
        }
        let &(lp, lo, ll) = cmd.last().expect("keep > 0");
        (piece, off) = if lo + ll == lens[lp] {
            (lp + 1, 0)
        } else {
            (lp, lo + ll)
        };
        s += keep;
        out.push(cmd);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn addr(x: u64) -> DevAddr<'static> {
        // SAFETY: test values, never given to a device.
        unsafe { DevAddr::assume_valid(x) }
    }

    fn pieces(n: usize) -> Vec<(DevAddr<'static>, u32)> {
        (0..n)
            .map(|i| (addr(0x10_0000 + 0x1000 * i as u64 + 3), 1000 + i as u32))
            .collect()
    }

    #[test]
    fn descriptor_words_put_the_type_in_byte_15() {
        let [a, b] = words(0x1122_3344_5566_7788, 0x200, Kind::LastSegment);
        assert_eq!(a, 0x1122_3344_5566_7788);
        let bytes = b.to_le_bytes();
        assert_eq!(&bytes[..4], &0x200u32.to_le_bytes());
        assert_eq!(&bytes[4..7], &[0, 0, 0]);
        assert_eq!(bytes[7], 0x30);
        assert_eq!(words(0, 1, Kind::Segment)[1].to_le_bytes()[7], 0x20);
        assert_eq!(words(0, 1, Kind::Data)[1].to_le_bytes()[7], 0x00);
    }

    #[test]
    fn one_piece_is_inline_and_a_few_are_one_last_segment() {
        let one = plan(&pieces(1), PAGE, 4).unwrap();
        assert_eq!(one.dptr, Desc::Data(addr(0x10_0003), 1000));
        assert!(one.lists.is_empty());
        let full = plan(&pieces(256), PAGE, 4).unwrap();
        assert_eq!(
            full.dptr,
            Desc::List {
                page: 0,
                len: 256 * 16,
                kind: Kind::LastSegment
            }
        );
        assert_eq!(full.lists.len(), 1);
        assert_eq!(full.lists[0].len(), 256);
        assert!(
            full.lists[0]
                .iter()
                .all(|d| matches!(d, Desc::Data(_, l) if *l >= 1000))
        );
    }

    #[test]
    fn more_than_a_page_chains_segments_and_ends_with_a_last_segment() {
        let p = plan(&pieces(600), PAGE, 4).unwrap();
        // 255 + 255 + 90.
        assert_eq!(p.lists.len(), 3);
        assert_eq!(
            p.dptr,
            Desc::List {
                page: 0,
                len: 256 * 16,
                kind: Kind::Segment
            }
        );
        assert_eq!(p.lists[0].len(), 256);
        assert_eq!(
            p.lists[0][255],
            Desc::List {
                page: 1,
                len: 256 * 16,
                kind: Kind::Segment
            }
        );
        assert_eq!(
            p.lists[1][255],
            Desc::List {
                page: 2,
                len: 90 * 16,
                kind: Kind::LastSegment
            }
        );
        assert_eq!(p.lists[2].len(), 90);
        assert!(p.lists[2].iter().all(|d| matches!(d, Desc::Data(..))));
        // Every data descriptor once, in order.
        let data: Vec<_> = p
            .lists
            .iter()
            .flatten()
            .filter_map(|d| match d {
                Desc::Data(a, l) => Some((*a, *l)),
                Desc::List { .. } => None,
            })
            .collect();
        assert_eq!(data, pieces(600));
        // 257 pieces: 255 + 2.
        let q = plan(&pieces(257), PAGE, 4).unwrap();
        assert_eq!(q.lists.iter().map(Vec::len).collect::<Vec<_>>(), [256, 2]);
        assert_eq!(
            q.dptr,
            Desc::List {
                page: 0,
                len: 256 * 16,
                kind: Kind::Segment
            }
        );
    }

    #[test]
    fn impossible_layouts_are_errors() {
        assert_eq!(plan(&[], PAGE, 4), Err(SglError::Empty));
        assert_eq!(plan(&[(addr(0), 0)], PAGE, 4), Err(SglError::Empty));
        assert_eq!(
            plan(&pieces(1100), PAGE, 4),
            Err(SglError::TooManyListPages { need: 5, have: 4 })
        );
    }

    #[test]
    fn commands_cut_pieces_at_block_and_size_limits() {
        // One command when everything fits.
        let c = commands(&[1000, 24, 2048], 512, 1 << 20, 16).unwrap();
        assert_eq!(c, [vec![(0, 0, 1000), (1, 0, 24), (2, 0, 2048)]]);
        // A byte limit splits a piece.
        let c = commands(&[3072], 512, 1024, 16).unwrap();
        assert_eq!(
            c,
            [
                vec![(0, 0, 1024)],
                vec![(0, 1024, 1024)],
                vec![(0, 2048, 1024)]
            ]
        );
        // Out of descriptors: back to the last block boundary.
        let c = commands(&[700, 700, 700, 1996], 512, 1 << 20, 2).unwrap();
        let flat: Vec<u64> = c.iter().map(|k| k.iter().map(|p| p.2).sum()).collect();
        assert!(flat.iter().all(|n| n % 512 == 0), "{c:?}");
        assert_eq!(flat.iter().sum::<u64>(), 4096);
        assert!(c.iter().all(|k| k.len() <= 2));
        // The pieces, concatenated, are the transfer exactly once.
        let mut at = Vec::new();
        for k in &c {
            for &(p, o, l) in k {
                at.push((p, o, l));
            }
        }
        let mut pos = [0u64; 4];
        for (p, o, l) in at {
            assert_eq!(pos[p], o);
            pos[p] += l;
        }
        assert_eq!(pos, [700, 700, 700, 1996]);
    }

    #[test]
    fn commands_refuse_what_cannot_be_cut() {
        assert!(commands(&[1000], 512, 1 << 20, 4).is_err());
        assert!(commands(&[], 512, 1 << 20, 4).is_err());
        // One descriptor cannot hold a whole block of 100-byte pieces.
        assert!(commands(&[100; 512], 512, 1 << 20, 1).is_err());
        // Empty pieces take no descriptor.
        let c = commands(&[0, 512, 0, 512], 512, 1 << 20, 2).unwrap();
        assert_eq!(c, [vec![(1, 0, 512), (3, 0, 512)]]);
    }
}

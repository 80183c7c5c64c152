//! Parsing a function's sysfs `resource` file, with the bus starts from the
//! BAR registers of its `config`.

use core::fmt;

use crate::bar::BAR_COUNT;
use crate::config::has_cap;
use crate::{Bar, BarError, BarFlags, Bars};

/// `IORESOURCE_DISABLED`: the resource is not decoded.
const IORESOURCE_DISABLED: u64 = 0x1000_0000;
/// `IORESOURCE_UNSET`: no address was assigned (start is 0, end is size - 1).
const IORESOURCE_UNSET: u64 = 0x2000_0000;
/// Offset of the first BAR register.
const BAR_REG: usize = 0x10;
/// Capability ID of Enhanced Allocation: its BARs are not in the registers.
const CAP_ID_EA: u8 = 0x14;

/// What is wrong with one line of a sysfs `resource` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResourceProblem {
    /// Not three `0x`-prefixed hex numbers of at most 16 digits.
    Syntax,
    /// The end lies below the start.
    EndBelowStart { start: u64, end: u64 },
    /// A BAR the [`Bar`] invariants refuse.
    Bar(BarError),
    /// Fewer lines than the six BARs.
    TooShort { lines: usize },
}

/// A `resource` file that is not what sysfs writes; `line` is 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResourceError {
    pub(crate) line: usize,
    pub(crate) problem: ResourceProblem,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            ResourceProblem::TooShort { lines } => write!(
                f,
                "{lines} lines, but sysfs writes one per BAR (at least {BAR_COUNT})"
            ),
            ResourceProblem::Syntax => write!(
                f,
                "line {}: expected `0x<start> 0x<end> 0x<flags>` (hex, at most 16 digits each)",
                self.line
            ),
            ResourceProblem::EndBelowStart { start, end } => write!(
                f,
                "line {}: end {end:#x} lies below start {start:#x}",
                self.line
            ),
            ResourceProblem::Bar(e) => write!(f, "line {}: {e}", self.line),
        }
    }
}

fn hex(token: &str) -> Option<u64> {
    let digits = token.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn dword(cfg: &[u8], at: usize) -> Option<u32> {
    let b = cfg.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The bus start of memory BAR `bar` from its BAR register(s), or `None`
/// when the image does not say: too short, a header without that register,
/// a register of another kind (I/O, 32 vs 64-bit) than the resource, an
/// address not aligned to the BAR's size, a VF (its BAR registers read as
/// zero; the PF's SR-IOV capability holds them), or a function with
/// Enhanced Allocation (its BARs are not in the registers).
fn bus_start_of(cfg: &[u8], bar: &Bar, vf: bool) -> Option<u64> {
    if vf || !bar.is_memory() {
        return None;
    }
    let registers = match cfg.get(0x0e)? & 0x7f {
        0 => 6,
        1 => 2,
        2 => 1,
        _ => 0,
    };
    let i = usize::from(bar.index());
    if i >= registers || has_cap(cfg, CAP_ID_EA) == Some(true) {
        return None;
    }
    let lo = dword(cfg, BAR_REG + 4 * i)?;
    let is_64 = match (lo & 1, (lo >> 1) & 3) {
        (1, _) | (_, 3) => return None, // I/O register, or reserved type
        (_, 2) => true,
        _ => false, // 32-bit, or below 1 MiB
    };
    if is_64 != bar.flags().contains(BarFlags::MEM_64) {
        return None;
    }
    let hi = if is_64 {
        if i + 1 >= registers {
            return None;
        }
        dword(cfg, BAR_REG + 4 * (i + 1))?
    } else {
        0
    };
    let bus = (u64::from(hi) << 32) | u64::from(lo & !0xf);
    let size = bar.size();
    if size.is_power_of_two() && bus & (size - 1) != 0 {
        return None;
    }
    // Read from this BAR's own register(s) in the function's config space,
    // of the kind and alignment its resource says: the address the device
    // decodes.
    Some(bus)
}

/// Parses a sysfs `resource` file (`0x%016llx 0x%016llx 0x%016llx` = start,
/// end, flags per line; lines 0..=5 are the BARs, then the ROM, SR-IOV BARs
/// and bridge windows, which are checked for syntax only) and takes each
/// memory BAR's bus start from `cfg`, the function's config-space image.
///
/// An all-zero line is an unused BAR; a BAR the kernel marks
/// `IORESOURCE_UNSET` or `IORESOURCE_DISABLED` has no address and is left
/// out. The upper half of a 64-bit BAR is an all-zero line.
pub(crate) fn parse_resource(text: &str, cfg: &[u8], vf: bool) -> Result<Bars, ResourceError> {
    let mut bars = Bars::NONE;
    let mut lines = 0;
    for (i, line) in text.lines().enumerate() {
        lines = i + 1;
        let err = |problem| ResourceError {
            line: i + 1,
            problem,
        };
        let mut tokens = line.split_ascii_whitespace();
        let (Some(start), Some(end), Some(flags), None) = (
            tokens.next().and_then(hex),
            tokens.next().and_then(hex),
            tokens.next().and_then(hex),
            tokens.next(),
        ) else {
            return Err(err(ResourceProblem::Syntax));
        };
        if i >= BAR_COUNT
            || (start, end, flags) == (0, 0, 0)
            || flags & (IORESOURCE_UNSET | IORESOURCE_DISABLED) != 0
        {
            continue;
        }
        if end < start {
            return Err(err(ResourceProblem::EndBelowStart { start, end }));
        }
        let size = (end - start)
            .checked_add(1)
            .ok_or_else(|| err(ResourceProblem::Bar(BarError::Range { start, size: 0 })))?;
        let kind = BarFlags::from_bits_truncate(flags);
        // `i < BAR_COUNT`, so it fits a u8.
        let index = u8::try_from(i).map_err(|_| err(ResourceProblem::Syntax))?;
        let bar = Bar::new(index, start, size, kind).map_err(|e| err(ResourceProblem::Bar(e)))?;
        // A bus range that would wrap is not this BAR's either: unknown.
        let bar = match bus_start_of(cfg, &bar, vf).map(|bus| bar.with_bus_start(bus)) {
            Some(Ok(with_bus)) => with_bus,
            Some(Err(_)) | None => bar,
        };
        bars = bars.with(bar);
    }
    if lines < BAR_COUNT {
        return Err(ResourceError {
            line: lines,
            problem: ResourceProblem::TooShort { lines },
        });
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NVMe of the kernel fixtures (QEMU, `cmb_size_mb=16`): BAR0 16 KiB
    /// 64-bit registers, BAR2 the 16 MiB 64-bit prefetchable CMB.
    const NVME: &str = "\
0x00000000fe600000 0x00000000fe603fff 0x0000000000140204
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x00000000f7000000 0x00000000f7ffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
";

    fn nvme_config() -> [u8; 64] {
        let mut c = [0u8; 64];
        c[0x10..0x14].copy_from_slice(&0xfe60_0004u32.to_le_bytes());
        c[0x18..0x1c].copy_from_slice(&0xf700_000cu32.to_le_bytes());
        c
    }

    #[test]
    fn the_kernels_nvme_lines() {
        let bars = parse_resource(NVME, &nvme_config(), false).unwrap();
        let cmb = bars.get(2).unwrap();
        assert_eq!(cmb.cpu_start(), 0xf700_0000);
        assert_eq!(cmb.size(), 16 << 20);
        assert_eq!(
            cmb.flags(),
            BarFlags::MEM | BarFlags::PREFETCH | BarFlags::MEM_64
        );
        assert_eq!(cmb.bus_start(), Some(0xf700_0000));
        assert_eq!(bars.get(0).map(Bar::size), Some(0x4000));
        assert!(bars.get(1).is_none() && bars.get(3).is_none());
        assert_eq!(bars.iter().count(), 2);
    }

    #[test]
    fn the_high_dword_and_a_bus_offset() {
        let mut cfg = nvme_config();
        // The bus sees BAR2 at 0x1_2000_0000; the CPU at 0xf700_0000.
        cfg[0x18..0x1c].copy_from_slice(&0x2000_000cu32.to_le_bytes());
        cfg[0x1c..0x20].copy_from_slice(&1u32.to_le_bytes());
        let bars = parse_resource(NVME, &cfg, false).unwrap();
        assert_eq!(bars.get(2).and_then(Bar::bus_start), Some(0x1_2000_0000));
    }

    #[test]
    fn the_bus_start_is_unknown_rather_than_guessed() {
        let bus = |cfg: &[u8], vf| {
            parse_resource(NVME, cfg, vf)
                .unwrap()
                .get(2)
                .unwrap()
                .bus_start()
        };
        let cfg = nvme_config();
        assert!(bus(&cfg, false).is_some());
        // Too short to hold BAR2's registers.
        assert_eq!(bus(&cfg[..0x1c], false), None);
        assert_eq!(bus(&[], false), None);
        // A VF's registers are not its BARs.
        assert_eq!(bus(&cfg, true), None);
        // A 32-bit register for a 64-bit resource.
        let mut c = cfg;
        c[0x18] = 0x08;
        assert_eq!(bus(&c, false), None);
        // An I/O register.
        c[0x18] = 0x01;
        assert_eq!(bus(&c, false), None);
        // Not aligned to the 16 MiB size.
        let mut c = cfg;
        c[0x1a] = 0x10;
        assert_eq!(bus(&c, false), None);
        // A bridge header has only BAR0 and BAR1.
        let mut c = cfg;
        c[0x0e] = 0x01;
        assert_eq!(bus(&c, false), None);
        // Enhanced Allocation: the registers are not the BARs.
        let mut c = [0u8; 256];
        c[..64].copy_from_slice(&cfg);
        c[0x06] = 0x10;
        c[0x34] = 0x40;
        c[0x40] = CAP_ID_EA;
        assert_eq!(bus(&c, false), None);
        c[0x40] = 0x05; // MSI instead: the register counts again
        assert!(bus(&c, false).is_some());
    }

    #[test]
    fn unassigned_and_io_bars() {
        let text = "\
0x0000000000000000 0x0000000000003fff 0x0000000020040200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000700 0x000000000000073f 0x0000000000040101
0x0000000000000000 0x0000000000000000 0x0000000000000000
";
        let mut cfg = [0u8; 64];
        cfg[0x20] = 0x01;
        cfg[0x21] = 0x07;
        let bars = parse_resource(text, &cfg, false).unwrap();
        assert!(bars.get(0).is_none(), "IORESOURCE_UNSET has no address");
        let io = bars.get(4).unwrap();
        assert_eq!(
            (io.flags(), io.size(), io.bus_start()),
            (BarFlags::IO, 0x40, None)
        );
    }

    #[test]
    fn bad_lines_name_their_line() {
        let line_of = |text: &str| parse_resource(text, &[], false).unwrap_err();
        let six = |bad: &str, at: usize| {
            let mut lines = [
                "0x0 0x0 0x0",
                "0x0 0x0 0x0",
                "0x0 0x0 0x0",
                "0x0 0x0 0x0",
                "0x0 0x0 0x0",
                "0x0 0x0 0x0",
                "0x0 0x0 0x0",
            ];
            lines[at] = bad;
            lines.join("\n")
        };
        assert_eq!(six("0x0 0x0 0x0", 0).lines().count(), 7);
        assert!(parse_resource(&six("0x0 0x0 0x0", 0), &[], false).is_ok());
        let e = line_of(&six("0x1000 0x1fff", 2));
        assert_eq!((e.line, e.problem), (3, ResourceProblem::Syntax));
        assert!(e.to_string().starts_with("line 3: expected"));
        let e = line_of(&six("0x1000 0x1fff 0x200 0x0", 1));
        assert_eq!((e.line, e.problem), (2, ResourceProblem::Syntax));
        let e = line_of(&six("1000 0x1fff 0x200", 0));
        assert_eq!(e.problem, ResourceProblem::Syntax);
        let e = line_of(&six("0x1000 0x1fff 0x10000000000000200", 0));
        assert_eq!(e.problem, ResourceProblem::Syntax);
        let e = line_of(&six("0x2000 0x1fff 0x200", 4));
        assert_eq!(
            (e.line, e.problem),
            (
                5,
                ResourceProblem::EndBelowStart {
                    start: 0x2000,
                    end: 0x1fff
                }
            )
        );
        let e = line_of(&six("0x1000 0x1fff 0x300", 5));
        assert_eq!(e.line, 6);
        assert!(matches!(e.problem, ResourceProblem::Bar(BarError::Kind(_))));
        let e = line_of(&six("0x0 0xffffffffffffffff 0x200", 0));
        assert!(matches!(
            e.problem,
            ResourceProblem::Bar(BarError::Range { .. })
        ));
        // Past the BARs only the syntax is checked (the ROM, bridge windows).
        assert!(parse_resource(&six("0x2000 0x1fff 0x0", 6), &[], false).is_ok());
        let e = line_of(&six("zz", 6));
        assert_eq!((e.line, e.problem), (7, ResourceProblem::Syntax));
        // Too few lines.
        let e = line_of("0x0 0x0 0x0\n0x0 0x0 0x0\n");
        assert_eq!(e.problem, ResourceProblem::TooShort { lines: 2 });
        assert!(e.to_string().contains("at least 6"));
    }
}

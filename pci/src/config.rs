//! Reading the two facts the classification needs out of a config-space image:
//! the PCIe port type and the ACS control register.
//!
//! The walks follow the kernel's `pci_find_capability()` (standard list from `0x34`,
//! at most 48 entries) and `pci_find_ext_capability()` (extended list from `0x100`, at
//! most 480 entries). A list that is still going after that many entries is reported as
//! a loop, never walked forever.

use core::fmt;

use super::registers::{AcsCtrl, AcsState, PcieKind, PciePortType};

/// Capability ID of the PCI Express capability.
const CAP_ID_EXP: u8 = 0x10;
/// Extended capability ID of Access Control Services.
const EXT_CAP_ID_ACS: u16 = 0x000d;
/// Offset of the ACS control register inside the ACS capability.
const ACS_CTRL: usize = 6;
/// Size of the conventional config space.
const CFG_SPACE_SIZE: usize = 256;
/// Size of the extended config space.
const CFG_SPACE_EXP_SIZE: usize = 4096;
/// The kernel's `PCI_FIND_CAP_TTL`.
const FIND_CAP_TTL: usize = 48;
/// The kernel's bound on the extended list: `(4096 - 256) / 8`.
const FIND_EXT_CAP_TTL: usize = (CFG_SPACE_EXP_SIZE - CFG_SPACE_SIZE) / 8;

/// What a config-space image says about a function.
///
/// ```
/// use dmaspace_pci::{parse_config, AcsState, PcieKind};
/// // A 64-byte image, as a non-root reader of sysfs `config` gets: nothing is known.
/// let mut header = [0u8; 64];
/// header[0x06] = 0x10; // status: capability list present
/// header[0x34] = 0x40; // first capability beyond the 64 bytes
/// let info = parse_config(&header)?;
/// assert_eq!(info.pcie, PcieKind::Unknown);
/// assert_eq!(info.acs, AcsState::Unknown);
/// # Ok::<(), dmaspace_pci::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigInfo {
    /// Vendor ID at offset 0.
    pub vendor: u16,
    /// Device ID at offset 2.
    pub device: u16,
    /// The PCIe capability's port type, if it could be read.
    pub pcie: PcieKind,
    /// The ACS capability's control register, if it could be read.
    pub acs: AcsState,
}

/// A config-space image that cannot be right.
///
/// ```
/// use dmaspace_pci::{parse_config, ConfigError};
/// assert_eq!(parse_config(&[0u8; 10]), Err(ConfigError::TooShort(10)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Shorter than the 64-byte standard header.
    TooShort(usize),
    /// The standard capability list did not end within 48 entries.
    CapabilityLoop,
    /// The extended capability list did not end within 480 entries.
    ExtCapabilityLoop,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "config space is {n} bytes, shorter than the 64-byte header"
            ),
            Self::CapabilityLoop => f.write_str("capability list loops (more than 48 entries)"),
            Self::ExtCapabilityLoop => {
                f.write_str("extended capability list loops (more than 480 entries)")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

fn byte(cfg: &[u8], at: usize) -> Option<u8> {
    cfg.get(at).copied()
}

fn word(cfg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*cfg.get(at)?, *cfg.get(at + 1)?]))
}

fn dword(cfg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *cfg.get(at)?,
        *cfg.get(at + 1)?,
        *cfg.get(at + 2)?,
        *cfg.get(at + 3)?,
    ]))
}

/// `Ok(Some(pos))` found, `Ok(None)` absent, `Err(None)` ran off the image, `Err(Some)` loop.
fn find_cap(cfg: &[u8], id: u8) -> Result<Option<usize>, Option<ConfigError>> {
    let status = word(cfg, 0x06).ok_or(None)?;
    if status & 0x10 == 0 {
        return Ok(None);
    }
    let start = match byte(cfg, 0x0e).ok_or(None)? & 0x7f {
        2 => 0x14, // CardBus bridge
        _ => 0x34,
    };
    let mut pos = usize::from(byte(cfg, start).ok_or(None)?);
    for _ in 0..FIND_CAP_TTL {
        if pos < 0x40 {
            return Ok(None);
        }
        pos &= !3;
        let ent = word(cfg, pos).ok_or(None)?;
        let cap_id = (ent & 0xff) as u8;
        if cap_id == 0xff {
            return Ok(None);
        }
        if cap_id == id {
            return Ok(Some(pos));
        }
        pos = usize::from(ent >> 8);
    }
    Err(Some(ConfigError::CapabilityLoop))
}

/// Whether the standard capability list holds capability `id`; `None` when
/// the image ends before the list does, or the list loops.
#[cfg(feature = "std")]
pub(super) fn has_cap(cfg: &[u8], id: u8) -> Option<bool> {
    find_cap(cfg, id).ok().map(|pos| pos.is_some())
}

fn find_ext_cap(cfg: &[u8], id: u16) -> Result<Option<usize>, Option<ConfigError>> {
    let mut pos = CFG_SPACE_SIZE;
    let mut header = dword(cfg, pos).ok_or(None)?;
    if header == 0 || header == u32::MAX {
        return Ok(None);
    }
    for _ in 0..FIND_EXT_CAP_TTL {
        if (header & 0xffff) as u16 == id {
            return Ok(Some(pos));
        }
        pos = ((header >> 20) & 0xffc) as usize;
        if pos < CFG_SPACE_SIZE {
            return Ok(None);
        }
        header = dword(cfg, pos).ok_or(None)?;
        if header == 0 || header == u32::MAX {
            return Ok(None);
        }
    }
    Err(Some(ConfigError::ExtCapabilityLoop))
}

/// Reads vendor, device, PCIe port type and ACS control out of a config-space image
/// (the bytes of sysfs `config`, as long as they are).
///
/// What the length means, as the kernel sees it:
/// - under 64 bytes: an error (not even the header);
/// - exactly 256 bytes: the function has no extended config space (the kernel's
///   `cfg_size` is 256), so it has no ACS capability: [`AcsState::Absent`];
/// - 4096 bytes: the extended list is walked from `0x100`;
/// - any other length (64 bytes is what a non-root reader of sysfs gets): whatever lies
///   beyond the image is [`PcieKind::Unknown`] / [`AcsState::Unknown`], never assumed absent.
///
/// A function without the PCIe capability has no extended space and so no ACS.
///
/// ```
/// use dmaspace_pci::{parse_config, AcsCtrl, AcsState, PcieKind, PciePortType};
/// let mut cfg = vec![0u8; 4096];
/// cfg[0..4].copy_from_slice(&[0x36, 0x1b, 0x0c, 0x00]); // 1b36:000c
/// cfg[0x06] = 0x10;
/// cfg[0x34] = 0x40;
/// cfg[0x40..0x44].copy_from_slice(&[0x10, 0x00, 0x42, 0x00]); // PCIe cap, Root Port
/// cfg[0x100..0x104].copy_from_slice(&0x0001_000du32.to_le_bytes()); // ACS, last
/// cfg[0x106] = 0x04; // ACS control: Request Redirect
/// let info = parse_config(&cfg)?;
/// assert_eq!(info.pcie, PcieKind::Pcie(PciePortType::RootPort));
/// assert_eq!(info.acs, AcsState::Control(AcsCtrl::RR));
/// # Ok::<(), dmaspace_pci::ConfigError>(())
/// ```
pub fn parse_config(cfg: &[u8]) -> Result<ConfigInfo, ConfigError> {
    if cfg.len() < 64 {
        return Err(ConfigError::TooShort(cfg.len()));
    }
    let cfg = &cfg[..cfg.len().min(CFG_SPACE_EXP_SIZE)];
    let vendor = word(cfg, 0).unwrap_or(0xffff);
    let device = word(cfg, 2).unwrap_or(0xffff);
    let pcie = match find_cap(cfg, CAP_ID_EXP) {
        Ok(Some(pos)) => match word(cfg, pos + 2) {
            Some(flags) => PcieKind::Pcie(PciePortType::from_raw(((flags >> 4) & 0xf) as u8)),
            None => PcieKind::Unknown,
        },
        Ok(None) => PcieKind::NotPcie,
        Err(None) => PcieKind::Unknown,
        Err(Some(e)) => return Err(e),
    };
    let acs = match pcie {
        PcieKind::NotPcie => AcsState::Absent,
        _ if cfg.len() == CFG_SPACE_SIZE => AcsState::Absent,
        PcieKind::Unknown => AcsState::Unknown,
        PcieKind::Pcie(_) => match find_ext_cap(cfg, EXT_CAP_ID_ACS) {
            Ok(Some(pos)) => match word(cfg, pos + ACS_CTRL) {
                Some(ctrl) => AcsState::Control(AcsCtrl::from_bits_retain(ctrl)),
                None => AcsState::Unknown,
            },
            Ok(None) => AcsState::Absent,
            Err(None) => AcsState::Unknown,
            Err(Some(e)) => return Err(e),
        },
    };
    Ok(ConfigInfo {
        vendor,
        device,
        pcie,
        acs,
    })
}

//! The config-space parser on any bytes: no panic, no endless capability walk, and
//! what it reports agrees with the bytes.
#![no_main]

use dmaspace::pci::{AcsState, ConfigError, PcieKind, parse_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = parse_config(data);
    if data.len() < 64 {
        assert_eq!(r, Err(ConfigError::TooShort(data.len())));
        return;
    }
    // Only the first 4096 bytes are config space.
    if data.len() > 4096 {
        assert_eq!(r, parse_config(&data[..4096]));
    }
    let Ok(info) = r else { return };
    assert_eq!(info.vendor, u16::from_le_bytes([data[0], data[1]]));
    assert_eq!(info.device, u16::from_le_bytes([data[2], data[3]]));
    if data[6] & 0x10 == 0 {
        // No capability list: conventional PCI, no ACS.
        assert_eq!(info.pcie, PcieKind::NotPcie);
    }
    if info.pcie == PcieKind::NotPcie {
        assert_eq!(info.acs, AcsState::Absent);
    }
    if data.len() < 256 + 4 && matches!(info.pcie, PcieKind::Pcie(_)) {
        // No room for an extended capability: never a control register read.
        assert!(!matches!(info.acs, AcsState::Control(_)), "{info:?}");
    }
});

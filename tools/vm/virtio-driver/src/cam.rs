//! virtio-drivers' PCI configuration access over one VFIO device's config
//! region: `PciRoot` and `PciTransport` read the virtio capabilities and
//! the BARs through it, exactly as they would through an ECAM window.

use dmaspace::pci::Bdf;
use dmaspace_vfio::VfioDevice;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// The config space of one function, opened through VFIO. Any other
/// function reads as absent (all ones) and ignores writes.
#[derive(Clone, Copy)]
pub struct VfioCam<'a> {
    dev: &'a VfioDevice,
    at: DeviceFunction,
}

impl<'a> VfioCam<'a> {
    /// The config space of `dev`.
    pub fn new(dev: &'a VfioDevice) -> Self {
        Self {
            dev,
            at: function_of(dev.address()),
        }
    }

    /// The function virtio-drivers names it by.
    pub fn function(&self) -> DeviceFunction {
        self.at
    }
}

/// virtio-drivers' name for a function (it has no PCI domain: one root).
fn function_of(a: Bdf) -> DeviceFunction {
    DeviceFunction {
        bus: a.bus,
        device: a.device,
        function: a.function,
    }
}

impl ConfigurationAccess for VfioCam<'_> {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        if df != self.at {
            return u32::MAX;
        }
        self.dev
            .config_read_u32(u64::from(register_offset))
            .unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        if df != self.at {
            return;
        }
        // SAFETY: the writes virtio-drivers' `PciRoot` makes while the
        // transport is built: BAR sizing (all ones, then the original value
        // back; VFIO virtualizes the BAR registers, so no BAR of the device
        // moves) with Memory Space decoding switched off around it and then
        // restored (single-threaded: no access to the BARs meanwhile), and
        // nothing else: it never changes Bus Master Enable, which the
        // driver set before, with every device address it hands out an IOVA
        // of this device's domain.
        let r = unsafe {
            self.dev
                .config_write(u64::from(register_offset), &data.to_le_bytes())
        };
        if let Err(e) = r {
            eprintln!("virtio-e2e: config write at {register_offset:#x}: {e}");
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

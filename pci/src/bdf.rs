//! PCI function addresses (`domain:bus:device.function`) and host bridge ids.

use core::fmt;
use core::str::FromStr;

/// The address of one PCI function: `domain:bus:device.function`.
///
/// `Display` prints the kernel's `pci_name()` form, `0000:03:00.0`: the domain as at
/// least four hex digits (Intel VMD domains start at `10000`), bus and device as two,
/// the function as one. `FromStr` accepts that form and the short `03:00.0` (domain 0).
///
/// Ordering is by domain, bus, device, function: the order `lspci` lists functions in.
///
/// ```
/// use dmaspace_pci::Bdf;
/// let bdf: Bdf = "0000:03:00.1".parse()?;
/// assert_eq!(bdf, Bdf::new(0, 3, 0, 1));
/// assert_eq!(bdf.to_string(), "0000:03:00.1");
/// assert_eq!(bdf.devfn(), 1);
/// let vmd: Bdf = "10000:01:00.0".parse()?;
/// assert_eq!(vmd.to_string(), "10000:01:00.0");
/// # Ok::<(), dmaspace_pci::ParseBdfError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI domain (segment). Linux allows more than 16 bits (VMD uses `0x10000` and up).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl Bdf {
    /// A function address. `device` must be below 32 and `function` below 8; larger values
    /// are masked (as `PCI_DEVFN` does).
    ///
    /// ```
    /// use dmaspace_pci::Bdf;
    /// assert_eq!(Bdf::new(0, 0, 0x1c, 4).to_string(), "0000:00:1c.4");
    /// ```
    #[must_use]
    pub const fn new(domain: u32, bus: u8, device: u8, function: u8) -> Self {
        Self {
            domain,
            bus,
            device: device & 0x1f,
            function: function & 0x07,
        }
    }

    /// The kernel's `devfn`: `device << 3 | function`.
    ///
    /// ```
    /// use dmaspace_pci::Bdf;
    /// assert_eq!(Bdf::new(0, 0, 2, 1).devfn(), 0x11);
    /// ```
    #[must_use]
    pub const fn devfn(self) -> u8 {
        ((self.device & 0x1f) << 3) | (self.function & 0x07)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Why a string is not a PCI address.
///
/// ```
/// use dmaspace_pci::Bdf;
/// assert!("0000:03:00".parse::<Bdf>().is_err());
/// assert!("0000:03:20.0".parse::<Bdf>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseBdfError(());

impl fmt::Display for ParseBdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a PCI address of the form DDDD:BB:DD.F")
    }
}

impl core::error::Error for ParseBdfError {}

fn hex_field(s: &str, max_len: usize) -> Result<u32, ParseBdfError> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseBdfError(()));
    }
    u32::from_str_radix(s, 16).map_err(|_| ParseBdfError(()))
}

impl FromStr for Bdf {
    type Err = ParseBdfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (head, function) = s.rsplit_once('.').ok_or(ParseBdfError(()))?;
        let mut parts = head.rsplitn(3, ':');
        let device = parts.next().ok_or(ParseBdfError(()))?;
        let bus = parts.next().ok_or(ParseBdfError(()))?;
        let domain = match parts.next() {
            Some(d) => hex_field(d, 8)?,
            None => 0,
        };
        let bus = hex_field(bus, 2)?;
        let device = hex_field(device, 2)?;
        let function = hex_field(function, 1)?;
        if device > 0x1f || function > 7 {
            return Err(ParseBdfError(()));
        }
        let byte = |v: u32| u8::try_from(v).map_err(|_| ParseBdfError(()));
        Ok(Self::new(
            domain,
            byte(bus)?,
            byte(device)?,
            byte(function)?,
        ))
    }
}

/// A PCI host bridge, named as sysfs names its directory: `pciDDDD:BB`
/// (domain and root bus number).
///
/// ```
/// use dmaspace_pci::HostBridgeId;
/// let hb: HostBridgeId = "pci0000:80".parse()?;
/// assert_eq!(hb, HostBridgeId::new(0, 0x80));
/// assert_eq!(hb.to_string(), "pci0000:80");
/// # Ok::<(), dmaspace_pci::ParseBdfError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostBridgeId {
    /// PCI domain of the root bus.
    pub domain: u32,
    /// Number of the root bus.
    pub bus: u8,
}

impl HostBridgeId {
    /// The host bridge of root bus `bus` in `domain`.
    ///
    /// ```
    /// use dmaspace_pci::HostBridgeId;
    /// assert_eq!(HostBridgeId::new(0x10000, 0).to_string(), "pci10000:00");
    /// ```
    #[must_use]
    pub const fn new(domain: u32, bus: u8) -> Self {
        Self { domain, bus }
    }
}

impl fmt::Display for HostBridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pci{:04x}:{:02x}", self.domain, self.bus)
    }
}

impl FromStr for HostBridgeId {
    type Err = ParseBdfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("pci").ok_or(ParseBdfError(()))?;
        let (domain, bus) = rest.split_once(':').ok_or(ParseBdfError(()))?;
        let domain = hex_field(domain, 8)?;
        let bus = hex_field(bus, 2)?;
        let bus = u8::try_from(bus).map_err(|_| ParseBdfError(()))?;
        Ok(Self::new(domain, bus))
    }
}

/// A host bridge and, when it sits below a PCI function (Intel VMD), that function.
///
/// ```
/// use dmaspace_pci::{Bdf, HostBridge, HostBridgeId};
/// let hb = HostBridge { id: HostBridgeId::new(0x10000, 0), below: Some(Bdf::new(0, 0, 0x0e, 0)) };
/// assert_eq!(hb.id.to_string(), "pci10000:00");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostBridge {
    /// Its id.
    pub id: HostBridgeId,
    /// The PCI function whose sysfs directory holds it (VMD), if any.
    pub below: Option<Bdf>,
}

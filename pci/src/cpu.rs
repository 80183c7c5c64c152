//! The CPU, as far as P2PDMA cares (`cpu_supports_p2pdma()`).

/// CPU vendor as `/proc/cpuinfo`'s `vendor_id` names it.
///
/// ```
/// use dmaspace_pci::CpuVendor;
/// assert_eq!(CpuVendor::from_vendor_id("AuthenticAMD"), CpuVendor::Amd);
/// assert_eq!(CpuVendor::from_vendor_id("HygonGenuine"), CpuVendor::Hygon);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuVendor {
    /// `AuthenticAMD`.
    Amd,
    /// `GenuineIntel`.
    Intel,
    /// `HygonGenuine` (a separate vendor to the kernel: not AMD for P2PDMA).
    Hygon,
    /// Anything else, or not known.
    Other,
}

impl CpuVendor {
    /// Maps a `vendor_id` string.
    ///
    /// ```
    /// use dmaspace_pci::CpuVendor;
    /// assert_eq!(CpuVendor::from_vendor_id("GenuineIntel"), CpuVendor::Intel);
    /// ```
    #[must_use]
    pub fn from_vendor_id(s: &str) -> Self {
        match s.trim() {
            "AuthenticAMD" => Self::Amd,
            "GenuineIntel" => Self::Intel,
            "HygonGenuine" => Self::Hygon,
            _ => Self::Other,
        }
    }
}

/// The CPU, as far as P2PDMA cares: the kernel's `cpu_supports_p2pdma()` is true only
/// on x86 for an AMD CPU of family 0x17 (Zen) or later.
///
/// ```
/// use dmaspace_pci::{CpuInfo, CpuVendor};
/// assert!(CpuInfo::x86(CpuVendor::Amd, 0x17).supports_p2pdma());
/// assert!(!CpuInfo::x86(CpuVendor::Amd, 0x15).supports_p2pdma());
/// assert!(!CpuInfo::x86(CpuVendor::Hygon, 0x18).supports_p2pdma());
/// assert!(!CpuInfo::x86(CpuVendor::Intel, 6).supports_p2pdma());
/// assert!(!CpuInfo::other().supports_p2pdma());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuInfo {
    /// Whether the machine is x86 (the AMD rule is `#ifdef CONFIG_X86`).
    pub x86: bool,
    /// The vendor.
    pub vendor: CpuVendor,
    /// `cpu family` (the kernel's `c->x86`, extended family included).
    pub family: u32,
}

impl CpuInfo {
    /// An x86 CPU.
    ///
    /// ```
    /// use dmaspace_pci::{CpuInfo, CpuVendor};
    /// assert_eq!(CpuInfo::x86(CpuVendor::Amd, 0x19).family, 0x19);
    /// ```
    #[must_use]
    pub const fn x86(vendor: CpuVendor, family: u32) -> Self {
        Self {
            x86: true,
            vendor,
            family,
        }
    }

    /// A non-x86 or unknown CPU: never takes the AMD path.
    ///
    /// ```
    /// use dmaspace_pci::CpuInfo;
    /// assert!(!CpuInfo::other().x86);
    /// ```
    #[must_use]
    pub const fn other() -> Self {
        Self {
            x86: false,
            vendor: CpuVendor::Other,
            family: 0,
        }
    }

    /// An AMD Zen (family 0x17) CPU, as QEMU's `-cpu EPYC`.
    ///
    /// ```
    /// use dmaspace_pci::CpuInfo;
    /// assert!(CpuInfo::amd_zen().supports_p2pdma());
    /// ```
    #[must_use]
    pub const fn amd_zen() -> Self {
        Self::x86(CpuVendor::Amd, 0x17)
    }

    /// The kernel's `cpu_supports_p2pdma()`.
    ///
    /// ```
    /// use dmaspace_pci::{CpuInfo, CpuVendor};
    /// assert!(CpuInfo::x86(CpuVendor::Amd, 0x1a).supports_p2pdma());
    /// ```
    #[must_use]
    pub const fn supports_p2pdma(&self) -> bool {
        self.x86 && matches!(self.vendor, CpuVendor::Amd) && self.family >= 0x17
    }
}

impl Default for CpuInfo {
    fn default() -> Self {
        Self::other()
    }
}

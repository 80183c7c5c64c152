//! A BAR of a function this process drives through VFIO, published as P2P
//! memory (feature `vfio`, Linux): the provider and the process mapping it
//! records, made and checked together.
//!
//! By hand this takes two `unsafe` calls ([`Machine::bar_provider`] and
//! [`Provider::set_cpu_mapping`]) whose contracts the caller checks against
//! sysfs, the BAR register and VFIO's region. Here the crate checks what can
//! be checked and keeps the mapping alive as long as the provider; the one
//! promise left to the caller is what only the driver knows: that the BAR is
//! memory (a CMB, a GPU aperture), not registers.

use core::fmt;

use crate::{MappedBar, VfioDevice, VfioError};
use dmaspace::Brand;
use dmaspace::PhysAddr;
use dmaspace::machine::Machine;
use dmaspace::pci::Bdf;
use dmaspace::provider::{Provider, ProviderError};

/// BAR `bar` of a VFIO-opened function as P2P memory, with the process
/// mapping of the whole BAR (VFIO's `mmap` of the region) that IOMMU
/// backends mapping virtual addresses need, and the CPU uses.
///
/// # Invariants
/// - `provider` describes BAR `bar` of the function as the machine recorded
///   it, and VFIO's region and the BAR register agree with it (size, bus
///   address);
/// - `provider`'s recorded CPU mapping is `bar`'s mapping, of the whole BAR.
///
/// Fields drop in order: the provider before the mapping it records (and
/// nothing can borrow the provider longer than this value).
///
/// See `tools/vm/nvme-driver` (`p2p-host-bridge`, `own-cmb`).
pub struct VfioBarProvider<PB: Brand> {
    provider: Provider<PB>,
    bar: MappedBar,
}

/// Why a BAR could not be published.
#[derive(Debug)]
#[non_exhaustive]
pub enum VfioBarError {
    /// The machine is not the one this process runs on (a fixture): its BAR
    /// records say nothing of the device VFIO opened.
    NotHost,
    /// VFIO refused (region query, `mmap`, config read).
    Vfio(VfioError),
    /// The machine has no such memory BAR (as [`Machine::bar_provider`]).
    Provider(ProviderError),
    /// The machine's record of the BAR and the device disagree (a BAR
    /// moved or resized since the topology was read).
    Mismatch {
        /// The function.
        bdf: Bdf,
        /// The BAR.
        bar: u8,
        /// What differs: `"size"` or `"bus address"`.
        what: &'static str,
        /// The machine's value.
        machine: u64,
        /// The device's value (VFIO's region size, the BAR register).
        device: u64,
    },
}

impl fmt::Display for VfioBarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHost => f.write_str(
                "the machine is not this host (a fixture): it cannot vouch for a BAR VFIO opened",
            ),
            Self::Vfio(e) => write!(f, "{e}"),
            Self::Provider(e) => write!(f, "{e}"),
            Self::Mismatch {
                bdf,
                bar,
                what,
                machine,
                device,
            } => write!(
                f,
                "{bdf} BAR{bar}: {what} {machine:#x} in the machine's topology, {device:#x} on the device (re-read the topology)"
            ),
        }
    }
}

impl core::error::Error for VfioBarError {}

impl From<VfioError> for VfioBarError {
    fn from(e: VfioError) -> Self {
        Self::Vfio(e)
    }
}

impl From<ProviderError> for VfioBarError {
    fn from(e: ProviderError) -> Self {
        Self::Provider(e)
    }
}

impl<PB: Brand> VfioBarProvider<PB> {
    /// Publishes BAR `bar` of `device` (opened through VFIO by this
    /// process) as P2P memory of `machine`, the host's topology.
    ///
    /// Checked here: `machine` is this host's (read from sysfs); it records
    /// BAR `bar` of the function as memory; VFIO's region is as large as
    /// that record and the BAR register holds its bus start; the mapping is
    /// VFIO's shared `mmap` of the whole region and lives as long as the
    /// provider. A function opened through VFIO has no kernel driver using
    /// its BARs.
    ///
    /// # Safety
    /// BAR `bar` must be memory the device serves as plain memory (a CMB, a
    /// GPU aperture: reads return what was written, no side effects), and
    /// nothing else (another provider, another process) may use it while
    /// the provider lives, nor afterwards while a mapping of it may still be
    /// live.
    ///
    /// # Errors
    /// [`VfioBarError::NotHost`] for a fixture machine;
    /// [`VfioBarError::Provider`] as [`Machine::bar_provider`] (no such
    /// function or BAR, an I/O BAR); [`VfioBarError::Vfio`] when the
    /// region cannot be queried or mapped or the BAR register read;
    /// [`VfioBarError::Mismatch`] when size or bus address differ.
    pub unsafe fn new(
        machine: &Machine,
        device: &VfioDevice,
        bar: u8,
    ) -> Result<Self, VfioBarError> {
        // SAFETY: forwarded from this function's contract; the mapping moves
        // into the same value as the provider, which drops first.
        let (provider, bar) = unsafe { publish(machine, device, bar) }?;
        // INVARIANT: `publish` made the provider from the machine's record of
        // BAR `bar`, checked VFIO's region size and the BAR register against
        // it, and recorded `bar`, the whole region, as its CPU mapping.
        Ok(Self { provider, bar })
    }

    /// The provider: allocate P2P memory from it, classify routes to it.
    #[must_use]
    pub fn provider(&self) -> &Provider<PB> {
        &self.provider
    }

    /// The process mapping of the BAR, for the CPU's reads (and, `unsafe`,
    /// writes).
    #[must_use]
    pub fn bar(&self) -> &MappedBar {
        &self.bar
    }

    /// Where the byte of this BAR at CPU physical address `phys` lies in
    /// [`bar`](Self::bar); `None` outside the BAR.
    #[must_use]
    pub fn bar_offset(&self, phys: PhysAddr) -> Option<usize> {
        offset_in(&self.provider, phys)
    }
}

/// The provider of BAR `bar` of `device` and VFIO's `mmap` of the whole
/// BAR, recorded as its CPU mapping: the checks of [`VfioBarProvider::new`].
///
/// # Safety
/// As [`VfioBarProvider::new`]; and the caller keeps the returned mapping
/// alive as long as the provider.
#[expect(
    clippy::cast_possible_truncation,
    reason = "a process virtual address is a usize"
)]
pub(super) unsafe fn publish<PB: Brand>(
    machine: &Machine,
    device: &VfioDevice,
    bar: u8,
) -> Result<(Provider<PB>, MappedBar), VfioBarError> {
    if !machine.is_host() {
        return Err(VfioBarError::NotHost);
    }
    let bdf = device.address();
    // SAFETY: the caller promises the BAR is plain memory nobody else
    // uses; the machine is this host's, read from sysfs, and the BAR's
    // place is checked against the device just below, before any
    // address of it is handed out.
    let mut provider = unsafe { machine.bar_provider::<PB>(bdf, bar) }?;
    let mapped = device.map_bar(u32::from(bar))?;
    let bus_start = device.bar_bus_address(u32::from(bar))?;
    agree(&provider, mapped.len() as u64, bus_start)?;
    // SAFETY: `mapped` is VFIO's shared mmap of region `bar` of this
    // function, all of the BAR (its length is the provider's size); the
    // caller keeps it as long as the provider.
    unsafe { provider.set_cpu_mapping(mapped.vaddr() as usize) }?;
    Ok((provider, mapped))
}

/// Where `phys` lies in the provider's BAR.
pub(super) fn offset_in<PB: Brand>(provider: &Provider<PB>, phys: PhysAddr) -> Option<usize> {
    let off = phys.as_u64().checked_sub(provider.cpu_start().as_u64())?;
    if off < provider.size() {
        usize::try_from(off).ok()
    } else {
        None
    }
}

/// Whether the device's view of the BAR (VFIO's region size, the bus
/// address in the BAR register) is the provider's.
fn agree<PB: Brand>(
    provider: &Provider<PB>,
    region_len: u64,
    bus_start: u64,
) -> Result<(), VfioBarError> {
    let mismatch = |what, machine, device| VfioBarError::Mismatch {
        bdf: provider.device(),
        bar: provider.bar(),
        what,
        machine,
        device,
    };
    if region_len != provider.size() {
        return Err(mismatch("size", provider.size(), region_len));
    }
    let want = provider
        .cpu_start()
        .as_u64()
        .wrapping_add_signed(provider.bus_offset().as_i64());
    if bus_start != want {
        return Err(mismatch("bus address", want, bus_start));
    }
    Ok(())
}

impl<PB: Brand> fmt::Debug for VfioBarProvider<PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioBarProvider")
            .field("provider", &self.provider)
            .field("bar", &self.bar)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmaspace::BusAddr;

    dmaspace::brand!(Cmb);

    fn provider(bus: u64) -> Provider<Cmb> {
        // SAFETY: a test provider; nothing reaches hardware.
        unsafe {
            Provider::new(
                Bdf::new(0, 3, 0, 0),
                2,
                PhysAddr::new(0xfe00_0000),
                BusAddr::new_unchecked(bus),
                1 << 20,
            )
        }
        .unwrap()
    }

    #[test]
    fn the_device_must_agree_with_the_machine_on_size_and_bus_address() {
        let p = provider(0xfe00_0000);
        assert!(agree(&p, 1 << 20, 0xfe00_0000).is_ok());
        let e = agree(&p, 2 << 20, 0xfe00_0000).unwrap_err();
        assert!(matches!(
            e,
            VfioBarError::Mismatch {
                what: "size",
                machine: 0x10_0000,
                device: 0x20_0000,
                bar: 2,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "0000:03:00.0 BAR2: size 0x100000 in the machine's topology, 0x200000 on the device (re-read the topology)"
        );
        let e = agree(&p, 1 << 20, 0xd000_0000).unwrap_err();
        assert!(matches!(
            e,
            VfioBarError::Mismatch {
                what: "bus address",
                machine: 0xfe00_0000,
                device: 0xd000_0000,
                ..
            }
        ));
        // A bus start below the CPU start (a negative offset) agrees too.
        let low = provider(0x1000_0000);
        assert!(agree(&low, 1 << 20, 0x1000_0000).is_ok());
        assert!(agree(&low, 1 << 20, 0xfe00_0000).is_err());
    }

    #[test]
    fn bar_offsets_are_inside_the_bar_only() {
        let p = provider(0xfe00_0000);
        let off = |x| offset_in(&p, PhysAddr::new(x));
        assert_eq!(off(0xfe00_0000), Some(0));
        assert_eq!(off(0xfe0f_ffff), Some(0xf_ffff));
        assert_eq!(off(0xfe10_0000), None);
        assert_eq!(off(0xfdff_ffff), None);
        let a = p.alloc(4096).unwrap();
        assert_eq!(off(a.phys().as_u64()), Some(0));
    }
}

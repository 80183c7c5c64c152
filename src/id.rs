//! Run-time identities: what tells two live objects of the same brand apart.
//!
//! Brands are types; a driver for N drives has N devices of one brand. Each
//! device, provider and machine draws an identity from one process-wide
//! counter when it is made. Identities are never reused (a 64-bit counter
//! does not wrap in the life of a process), so an identity seen in a route
//! or a mapping names exactly one incarnation: a device re-created at the
//! same BDF gets a new one.

use core::fmt;
use core::num::NonZeroU64;
use core::sync::atomic::{AtomicU64, Ordering};

/// The next identity. Starts above [`MachineId::HOST`]'s value.
fn next() -> NonZeroU64 {
    static NEXT: AtomicU64 = AtomicU64::new(2);
    let v = NEXT.fetch_add(1, Ordering::Relaxed);
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

/// The identity of one live [`Device`](crate::device::Device): what a
/// driver compares when it writes a mapping into a queue of that device.
///
/// `Copy`, so a queue can keep it; it cannot be made from an integer.
///
/// ```
/// # use dmaspace::prelude::*;
/// brand!(Nic);
/// // SAFETY: a documentation example; nothing reaches hardware.
/// let a = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
/// // SAFETY: as above (a second function).
/// let b = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 5, 0, 0), DmaLimits::BITS_64) };
/// assert_ne!(a.id(), b.id());
/// assert_eq!(a.id(), a.id());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId(NonZeroU64);

impl DeviceId {
    pub(crate) fn fresh() -> Self {
        Self(next())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// The identity of one live P2P provider.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct ProviderId(NonZeroU64);

impl ProviderId {
    pub(crate) fn fresh() -> Self {
        Self(next())
    }
}

/// The machine a function lives on: the host this process runs on, or one
/// described by a topology the caller vouched for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct MachineId(NonZeroU64);

impl MachineId {
    /// The machine this process runs on.
    pub(crate) const HOST: MachineId = MachineId(NonZeroU64::MIN);

    #[cfg_attr(
        not(feature = "alloc"),
        expect(dead_code, reason = "machines need alloc")
    )]
    pub(crate) fn fresh() -> Self {
        Self(next())
    }
}

/// One PCI function of one machine: what "same device" compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct FunctionId {
    pub(crate) machine: MachineId,
    pub(crate) bdf: dmaspace_pci::Bdf,
}

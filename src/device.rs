//! A DMA-capable PCI function (the client that issues DMA) and its limits.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::brand::{Brand, Invariant};
use crate::error::ClaimError;
use crate::id::{DeviceId, FunctionId, MachineId};
use crate::limits::DmaLimits;
use dmaspace_pci::Bdf;

/// One live PCI function of brand `K` that issues DMA.
///
/// # Invariants
/// - No other live `Device` drives the same function of the same machine:
///   a device claimed from a [`Machine`](crate::machine::Machine) holds that
///   machine's claim on its BDF (released on drop); one made with
///   [`Device::new_unchecked`] carries the caller's promise.
/// - [`id`](Device::id) is unique in the process and never reused.
/// - At most one [`Mapper`](crate::map::Mapper) is attached at a time.
///
/// ```
/// # use dmaspace::prelude::*;
/// brand!(Nic);
/// // SAFETY: no other Device drives 0000:04:00.0 in this example.
/// let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
/// assert_eq!(nic.bdf().to_string(), "0000:04:00.0");
/// ```
pub struct Device<'m, K: Brand> {
    id: DeviceId,
    function: FunctionId,
    limits: DmaLimits,
    attached: AtomicBool,
    claim: Option<&'m AtomicBool>,
    _kind: Invariant<K>,
}

impl<K: Brand> Device<'static, K> {
    /// The function at `bdf` of the machine this process runs on, driven as
    /// brand `K`, without a topology (an in-kernel driver's `pci_dev`, a
    /// board with a fixed tree).
    ///
    /// # Safety
    /// `bdf` must be a function of this host, and no other live `Device`
    /// (made here or claimed from a [`Machine`](crate::machine::Machine))
    /// may drive it while this one lives: a same-device route would hand
    /// this device offsets into the other's BAR.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// brand!(Old);
    /// // SAFETY: the only driver of 0000:06:00.0 in this example.
    /// let d = unsafe { Device::<Old>::new_unchecked(Bdf::new(0, 6, 0, 0), DmaLimits::BITS_32) };
    /// assert_eq!(d.limits().dma_mask(), 0xffff_ffff);
    /// ```
    #[must_use]
    pub unsafe fn new_unchecked(bdf: Bdf, limits: DmaLimits) -> Self {
        Self::make(
            FunctionId {
                machine: MachineId::HOST,
                bdf,
            },
            limits,
            None,
        )
    }
}

impl<'m, K: Brand> Device<'m, K> {
    fn make(function: FunctionId, limits: DmaLimits, claim: Option<&'m AtomicBool>) -> Self {
        // INVARIANT: `id` is fresh; no mapper is attached yet; `claim` is the flag the
        // machine just set (`claimed`), or `None` with the caller's promise (`new_unchecked`).
        Self {
            id: DeviceId::fresh(),
            function,
            limits,
            attached: AtomicBool::new(false),
            claim,
            _kind: PhantomData,
        }
    }

    /// A device holding `claim`, set by the machine that checked the BDF.
    #[cfg_attr(
        not(feature = "alloc"),
        expect(dead_code, reason = "machines need alloc")
    )]
    pub(crate) fn claimed(function: FunctionId, limits: DmaLimits, claim: &'m AtomicBool) -> Self {
        Self::make(function, limits, Some(claim))
    }

    /// This device's identity: compare it where a mapping enters a queue.
    ///
    /// See [`DeviceId`].
    #[must_use]
    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// The function's address.
    ///
    /// See [`Device::new_unchecked`].
    #[must_use]
    pub fn bdf(&self) -> Bdf {
        self.function.bdf
    }

    /// What the device can address.
    ///
    /// See [`Device::new_unchecked`].
    #[must_use]
    pub fn limits(&self) -> DmaLimits {
        self.limits
    }

    /// Replaces the device's limits, for a driver that learns them from the
    /// device itself (NVMe's MDTS comes from Identify, which needs a first
    /// mapping made under limits any controller takes).
    ///
    /// Takes `&mut self`: no mapper of the device lives, and so no mapping,
    /// coherent buffer or pool (each borrows its mapper): every mapping made
    /// afterwards is cut and checked by the new limits, and none made before
    /// is left to break them.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// brand!(Ssd);
    /// // SAFETY: the only driver of 0000:07:00.0 in this example.
    /// let mut d = unsafe { Device::<Ssd>::new_unchecked(Bdf::new(0, 7, 0, 0), DmaLimits::BITS_64) };
    /// d.set_limits(DmaLimits::BITS_64.max_segment_size(512 << 10));
    /// assert_eq!(d.limits().max_segment_size_bytes(), 512 << 10);
    /// ```
    pub fn set_limits(&mut self, limits: DmaLimits) {
        self.limits = limits;
    }

    pub(crate) fn function(&self) -> FunctionId {
        self.function
    }

    /// Marks the device attached to a mapper; fails if it is already.
    pub(crate) fn attach(&self) -> Result<(), ClaimError> {
        // INVARIANT: only one exchange from `false` succeeds until `detach`, so at most
        // one mapper is attached.
        self.attached
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|_| ClaimError::AlreadyAttached { bdf: self.bdf() })
    }

    /// Undoes [`attach`](Self::attach); called by the mapper's `Drop`.
    pub(crate) fn detach(&self) {
        self.attached.store(false, Ordering::Release);
    }
}

impl<K: Brand> Drop for Device<'_, K> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim {
            claim.store(false, Ordering::Release);
        }
    }
}

impl<K: Brand> fmt::Debug for Device<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("brand", &K::NAME)
            .field("id", &self.id)
            .field("bdf", &self.function.bdf)
            .field("limits", &self.limits)
            .finish()
    }
}

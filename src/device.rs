//! A DMA-capable PCI function: the client that issues DMA, named by a brand.

use core::fmt;

use crate::brand::{Brand, Claim};
use crate::error::BrandInUse;
use crate::topology::Bdf;

/// The PCI function `B` that issues DMA, with its DMA mask.
///
/// A mapper borrows it mutably, so a device is attached to one mapper (one
/// IOMMU domain, or none) at a time.
///
/// ```
/// use dmaspace::{device::Device, topology::Bdf};
/// dmaspace::brand!(Nic);
/// let nic = Device::<Nic>::new(Bdf::new(0, 4, 0, 0), u64::MAX)?;
/// assert_eq!(nic.bdf().to_string(), "0000:04:00.0");
/// # Ok::<(), dmaspace::error::BrandInUse>(())
/// ```
pub struct Device<B: Brand> {
    bdf: Bdf,
    dma_mask: u64,
    _claim: Claim<B>,
}

impl<B: Brand> Device<B> {
    /// Binds brand `B` to the function at `bdf`, which can address memory
    /// up to `dma_mask` (`dma_set_mask`: `u64::MAX` for 64-bit DMA,
    /// `0xffff_ffff` for 32-bit).
    ///
    /// # Errors
    /// [`BrandInUse`] if `B` is bound to another live object.
    ///
    /// ```
    /// # use dmaspace::{device::Device, topology::Bdf};
    /// dmaspace::brand!(Old);
    /// let d = Device::<Old>::new(Bdf::new(0, 6, 0, 0), 0xffff_ffff)?;
    /// assert_eq!(d.dma_mask(), 0xffff_ffff);
    /// # Ok::<(), dmaspace::error::BrandInUse>(())
    /// ```
    pub fn new(bdf: Bdf, dma_mask: u64) -> Result<Self, BrandInUse> {
        Ok(Self {
            bdf,
            dma_mask,
            _claim: Claim::acquire()?,
        })
    }

    /// The function's address.
    ///
    /// See [`Device::new`].
    #[must_use]
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The highest address the device can emit.
    ///
    /// See [`Device::new`].
    #[must_use]
    pub fn dma_mask(&self) -> u64 {
        self.dma_mask
    }
}

impl<B: Brand> fmt::Debug for Device<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("brand", &B::NAME)
            .field("bdf", &self.bdf)
            .field("dma_mask", &format_args!("{:#x}", self.dma_mask))
            .finish()
    }
}

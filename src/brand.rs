//! Brands: compile-time names for one device, IOMMU domain or P2P provider.
//!
//! A DMA address is only meaningful to the device (or IOMMU domain) it was
//! mapped for. The crate carries that in the type: `DmaAddr<Nvme>` and
//! `DmaAddr<Nic>` are different types. A brand is an empty type declared
//! with [`brand!`](macro@crate::brand); at run time it is bound to at most one live object at a
//! time ([`Claim`]), so two devices can never share a name.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::error::BrandInUse;

/// The compile-time name of one device, IOMMU domain or P2P provider.
///
/// Declare brands with [`brand!`](macro@crate::brand); do not implement this trait by hand.
///
/// # Implementation safety
/// `claim_flag` must return a `'static` flag used by this type and no
/// other. Uniqueness of the run-time binding rests on it, and with it the
/// guarantee that an address branded for one device never reaches another
/// (which would let a device write to memory it was never given).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dmaspace brand",
    label = "not declared with `dmaspace::brand!`",
    note = "declare device, domain and provider names with `dmaspace::brand!(pub MyDevice);`"
)]
pub unsafe trait Brand: 'static {
    /// The brand's name, for `Debug` output.
    const NAME: &'static str;

    /// The flag that records whether the brand is bound to a live object.
    #[doc(hidden)]
    fn claim_flag() -> &'static AtomicBool;
}

/// Declares a brand: an empty type naming one device, IOMMU domain or P2P
/// provider.
///
/// ```
/// dmaspace::brand!(
///     /// The NVMe drive this driver owns.
///     pub Nvme0
/// );
/// let claim = dmaspace::Claim::<Nvme0>::acquire()?;
/// assert!(dmaspace::Claim::<Nvme0>::acquire().is_err());
/// drop(claim);
/// assert!(dmaspace::Claim::<Nvme0>::acquire().is_ok());
/// # Ok::<(), dmaspace::error::BrandInUse>(())
/// ```
#[macro_export]
macro_rules! brand {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {}

        // SAFETY: the flag is a static declared inside this impl, so no other
        // type can return it.
        unsafe impl $crate::Brand for $name {
            const NAME: &'static str = ::core::stringify!($name);
            fn claim_flag() -> &'static ::core::sync::atomic::AtomicBool {
                static FLAG: ::core::sync::atomic::AtomicBool =
                    ::core::sync::atomic::AtomicBool::new(false);
                &FLAG
            }
        }
    };
}

/// Proof that brand `B` is bound to exactly one live object: the one that
/// holds this claim. Dropping it frees the brand.
///
/// ```
/// dmaspace::brand!(Gpu);
/// let c = dmaspace::Claim::<Gpu>::acquire()?;
/// assert_eq!(format!("{c:?}"), "Claim<Gpu>");
/// # Ok::<(), dmaspace::error::BrandInUse>(())
/// ```
pub struct Claim<B: Brand> {
    // Not Send/Sync-restricting: a claim may move between threads.
    _brand: PhantomData<fn() -> B>,
}

impl<B: Brand> Claim<B> {
    /// Binds brand `B`, or fails if something already holds it.
    ///
    /// # Errors
    /// [`BrandInUse`] while another claim of `B` is alive.
    ///
    /// ```
    /// dmaspace::brand!(Nic);
    /// let _c = dmaspace::Claim::<Nic>::acquire()?;
    /// # Ok::<(), dmaspace::error::BrandInUse>(())
    /// ```
    pub fn acquire() -> Result<Self, BrandInUse> {
        B::claim_flag()
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| Self {
                _brand: PhantomData,
            })
            .map_err(|_| BrandInUse { brand: B::NAME })
    }
}

impl<B: Brand> Drop for Claim<B> {
    fn drop(&mut self) {
        B::claim_flag().store(false, Ordering::Release);
    }
}

impl<B: Brand> fmt::Debug for Claim<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Claim<{}>", B::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::brand!(TestBrand);

    #[test]
    fn claim_is_exclusive_and_released_on_drop() {
        let c = Claim::<TestBrand>::acquire().expect("first claim");
        let err = Claim::<TestBrand>::acquire().expect_err("second claim must fail");
        assert_eq!(err.brand, "TestBrand");
        drop(c);
        assert!(Claim::<TestBrand>::acquire().is_ok());
    }
}

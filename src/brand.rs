//! Brands: compile-time names for a *kind* of device, IOMMU domain or P2P
//! provider.
//!
//! A DMA address is only meaningful to the device (or IOMMU domain) it was
//! mapped for. The crate carries that in two ways:
//!
//! - at compile time, the brand: `DmaAddr<'_, Nvme, _>` and
//!   `DmaAddr<'_, Nic, _>` are different types, so an NVMe address cannot be
//!   written into a NIC descriptor;
//! - at run time, the instance: every [`Device`](crate::device::Device),
//!   [`Provider`](crate::provider::Provider) and machine has an identity
//!   ([`crate::id`]) that never repeats in the process, and the mapper
//!   checks it where a route or a mapping meets a device. A fleet of drives
//!   discovered at run time shares one brand (`Vec<Device<'_, Nvme>>`), and
//!   the identities keep the drives apart.
//!
//! A brand is an empty type declared with [`brand!`](macro@crate::brand).
//! No memory safety rests on a brand alone (the instance checks carry
//! that), so [`Brand`] is a safe trait; the macro is the convenient way.
//!
//! # Brands are invariant
//!
//! Because the trait is safe, anyone may implement it for types related by
//! subtyping (`Kind<for<'a> fn(&'a ())>` is a subtype of
//! `Kind<fn(&'static ())>`). Every type of the crate that carries a brand is
//! therefore *invariant* in it (it holds `PhantomData<fn(B) -> B>`): a
//! value branded by one of two such types never coerces to the other, so
//! the kind check holds for every pair of distinct brand types
//! (`tests/ui/brand_by_subtyping_*`).

use core::marker::PhantomData;

/// The marker every brand-carrying type holds for its brand (and, with it,
/// its direction or state markers): it makes the type invariant in `T`, so
/// no subtyping relation between two brand types carries over to the
/// values they brand. `fn(T) -> T` is `Send + Sync + Copy + 'static` for
/// every `T: 'static`, so the auto traits are those of the covariant
/// `fn() -> T` it replaces.
pub(crate) type Invariant<T> = PhantomData<fn(T) -> T>;

/// The compile-time name of a kind of device, IOMMU domain or P2P provider.
///
/// Declare brands with [`brand!`](macro@crate::brand).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dmaspace brand",
    label = "not declared with `dmaspace::brand!`",
    note = "declare device, domain and provider names with `dmaspace::brand!(pub MyDevice);`"
)]
pub trait Brand: 'static {
    /// The brand's name, for `Debug` output.
    const NAME: &'static str;
}

/// Declares a brand: an empty type naming a kind of device, IOMMU domain or
/// P2P provider.
///
/// ```
/// use dmaspace::Brand;
/// dmaspace::brand!(
///     /// The NVMe drives this driver owns.
///     pub Nvme
/// );
/// assert_eq!(Nvme::NAME, "Nvme");
/// ```
#[macro_export]
macro_rules! brand {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {}

        impl $crate::Brand for $name {
            const NAME: &'static str = ::core::stringify!($name);
        }
    };
}

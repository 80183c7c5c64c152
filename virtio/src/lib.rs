//! A [`virtio_drivers::Hal`] on dmaspace's mappers.
//!
//! | virtio-drivers asks | the adapter answers with |
//! |---|---|
//! | `dma_alloc(pages)` | zeroed pages from a [`DmaMemory`], mapped coherent and bidirectional ([`Coherent`](dmaspace::map::Coherent)); the device address (an IOVA), never 0 |
//! | `dma_dealloc` | unmapped, then freed; non-zero for an address it does not know |
//! | `share(buf, dir)` | an owned mapping ([`MappedBuf`](dmaspace::map::MappedBuf)) of the buffer in place, or of a bounce copy |
//! | `unshare` | unmapped; a bounce is copied back for `DeviceToDriver`/`Both` |
//! | `mmio_phys_to_virt` | a registered [`MmioWindow`] |
//!
//! plus [`PlatformTransport`], which negotiates `VIRTIO_F_ACCESS_PLATFORM`
//! and checks that `FEATURES_OK` stuck.
//!
//! # The static bridge
//! [`hal!`] declares a type with a static [`HalSlot`]; the Hal is
//! [`DmaHal<ThatType>`](DmaHal). [`DmaHal::install`] moves a
//! [`HalContext`] into the slot (no `Box::leak`: the slot owns it) and
//! returns a [`HalGuard`]; every Hal call, from any thread, takes the slot's
//! read lock and the context's table lock. See [`HalGuard`] for what
//! uninstall does, and [`DmaHal`] for each call's answer when nothing is
//! installed.
//!
//! # Device address 0
//! virtio-drivers reads a `dma_alloc` address of 0 as failure. A mapping of
//! the adapter's own memory that lands at IOVA 0 (an aperture that starts
//! at 0, almost full: the allocator is top-down) is kept mapped for the
//! context's life, never handed out, and the allocation is made again;
//! a buffer that would be mapped in place at 0 is bounced instead.
//!
//! # Example
#![doc = include_str!("../README.md")]
// Feature labels on items in docs.rs's build.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    warn(
        unreachable_pub,
        missing_debug_implementations,
        clippy::std_instead_of_core,
        clippy::std_instead_of_alloc,
        clippy::alloc_instead_of_core,
        clippy::cast_possible_truncation
    )
)]
#![no_std]

extern crate alloc;

mod bridge;
mod context;
mod memory;
mod mmio;
mod slot;
mod transport;

pub use bridge::{ShareError, UnshareError};
pub use context::{HalContext, Monitor};
pub use memory::{DmaMemory, HeapBuf, HeapMemory, PagePool, PhysLookup, Pooled};
pub use mmio::MmioWindow;
pub use slot::{AlreadyInstalled, DmaHal, HalGuard, HalSlot, Slot, Uninstalled};
pub use transport::{ACCESS_PLATFORM, Negotiation, NegotiationError, PlatformTransport};

/// Declares a type with its own static [`HalSlot`]; [`DmaHal`] of it is a
/// [`virtio_drivers::Hal`]. The expansion holds no `unsafe` (the `Hal` impl
/// is this crate's), so a crate with `#![forbid(unsafe_code)]` may use it.
///
/// ```
/// use dmaspace_virtio::{DmaHal, Slot};
/// dmaspace_virtio::hal!(
///     /// The Hal of the block device.
///     pub Blk
/// );
/// type BlkHal = DmaHal<Blk>;
/// assert!(!BlkHal::is_installed());
/// assert_eq!(Blk::NAME, "Blk");
/// ```
#[macro_export]
macro_rules! hal {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {}

        impl $crate::Slot for $name {
            const NAME: &'static str = ::core::stringify!($name);
            fn slot() -> &'static $crate::HalSlot {
                static SLOT: $crate::HalSlot = $crate::HalSlot::new();
                &SLOT
            }
        }
    };
}

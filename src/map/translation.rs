//! How a mapper's device reaches memory: [`Direct`]ly (no IOMMU: the
//! physical address is the bus address) or [`Iommu`] (through a domain's
//! backend). A type parameter of [`Mapper`](super::Mapper), so each mapper
//! is compiled for its own path and the hot loop makes no indirect calls.

use crate::backend::AddrKind;
use crate::dir::IommuPerm;
use crate::error::MapError;
use crate::iommu::{Lease, LeaseLink, LinkLease, Placed};
use crate::sealed::Sealed;

/// How a mapper's device reaches memory. Sealed: [`Direct`] or [`Iommu`].
/// Nameable so that a driver can be generic over its mapper (one code path
/// for a VFIO backend and for no-IOMMU mode); its items are the crate's.
///
/// ```
/// use dmaspace::map::{Mapper, Translation};
/// use dmaspace::Brand;
/// fn device_of<K: Brand, T: Translation>(m: &Mapper<'_, K, T>) -> dmaspace::DeviceId {
///     m.device().id()
/// }
/// ```
pub trait Translation: Sealed {
    /// The reserved run of an IOMMU mapping.
    #[doc(hidden)]
    type Lease<'a>: LinkLease
    where
        Self: 'a;
    /// Whether host memory goes through an IOMMU.
    #[doc(hidden)]
    const IOMMU: bool;
    /// Which address of memory the IOMMU maps.
    #[doc(hidden)]
    const MAPS: AddrKind;
    /// A queue's cache of IOVA space.
    #[doc(hidden)]
    type Cache<'a>
    where
        Self: 'a;
    /// A new queue cache.
    #[doc(hidden)]
    fn cache(&self) -> Self::Cache<'_>;
    /// Reserves `bytes` below `mask`, from `cache` if given (never called
    /// for [`Direct`]).
    #[doc(hidden)]
    fn reserve<'a, 'c>(
        &'a self,
        cache: Option<&'c Self::Cache<'a>>,
        bytes: u64,
        mask: u64,
    ) -> Option<Self::Lease<'c>>
    where
        'a: 'c;
}

/// No IOMMU: the device reaches memory at its physical address.
#[derive(Debug, Clone, Copy)]
pub struct Direct;

/// A run that never exists: [`Direct`] reserves nothing.
#[derive(Debug)]
pub enum NoLease {}

impl Lease for NoLease {
    fn start(&self) -> u64 {
        match *self {}
    }
    fn sync(&self) {
        match *self {}
    }
    fn unlink(&self) {
        match *self {}
    }
}

impl LinkLease for NoLease {
    type Linker<'a> = NoLease;
    fn linker(&self, _: IommuPerm) -> NoLease {
        match *self {}
    }
}

impl LeaseLink for NoLease {
    unsafe fn link(&mut self, _: Placed, _: u64, _: bool) -> Result<(), MapError> {
        match *self {}
    }
}

impl Sealed for Direct {}
impl Translation for Direct {
    type Lease<'a> = NoLease;
    type Cache<'a> = ();
    const IOMMU: bool = false;
    const MAPS: AddrKind = AddrKind::Phys;
    fn cache(&self) {}
    fn reserve<'a, 'c>(&'a self, _: Option<&'c ()>, _: u64, _: u64) -> Option<NoLease>
    where
        'a: 'c,
    {
        None
    }
}

#[cfg(feature = "alloc")]
pub use iommu::Iommu;

#[cfg(feature = "alloc")]
mod iommu {
    use core::fmt;

    use super::{Lease, LeaseLink, LinkLease, Translation};
    use crate::backend::{AddrKind, IommuBackend};
    use crate::brand::Brand;
    use crate::dir::IommuPerm;
    use crate::error::MapError;
    use crate::iommu::iova_alloc::{IovaAllocator, IovaCache};
    use crate::iommu::{IommuDomain, IovaLease, LeaseLinker, Placed, Pool};
    use crate::sealed::Sealed;

    /// Through an IOMMU domain with backend `B` (its brand erased: the
    /// mapper's segments are branded by the device).
    pub struct Iommu<'d, B: IommuBackend> {
        backend: &'d B,
        iova: &'d IovaAllocator,
    }

    impl<'d, B: IommuBackend> Iommu<'d, B> {
        pub(crate) fn of<Dm: Brand>(domain: &'d IommuDomain<Dm, B>) -> Self {
            let (backend, iova) = domain.parts();
            Self { backend, iova }
        }
    }

    impl<B: IommuBackend> fmt::Debug for Iommu<'_, B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Iommu")
        }
    }

    impl<B: IommuBackend> Lease for IovaLease<'_, B> {
        #[inline(always)]
        fn start(&self) -> u64 {
            IovaLease::start(self)
        }
        fn sync(&self) {
            IovaLease::sync(self);
        }
        fn unlink(&self) {
            IovaLease::unlink(self);
        }
    }

    impl<B: IommuBackend> LinkLease for IovaLease<'_, B> {
        type Linker<'a>
            = LeaseLinker<'a, B>
        where
            Self: 'a;
        #[inline(always)]
        fn linker(&self, perm: IommuPerm) -> LeaseLinker<'_, B> {
            IovaLease::linker(self, perm)
        }
        #[inline(always)]
        unsafe fn link_synced(
            &self,
            perm: IommuPerm,
            placed: Placed,
            addr: u64,
            mmio: bool,
        ) -> Result<(), MapError> {
            // SAFETY: forwarded; the caller upholds the contract.
            unsafe { IovaLease::link_synced(self, perm, placed, addr, mmio) }
        }
    }

    impl<B: IommuBackend> LeaseLink for LeaseLinker<'_, B> {
        #[inline(always)]
        unsafe fn link(&mut self, placed: Placed, addr: u64, mmio: bool) -> Result<(), MapError> {
            // SAFETY: forwarded; the caller upholds the contract.
            unsafe { LeaseLinker::link(self, placed, addr, mmio) }
        }
    }

    impl<B: IommuBackend> Sealed for Iommu<'_, B> {}
    impl<'d, B: IommuBackend> Translation for Iommu<'d, B> {
        type Lease<'a>
            = IovaLease<'a, B>
        where
            Self: 'a;
        type Cache<'a>
            = IovaCache<'a>
        where
            Self: 'a;
        const IOMMU: bool = true;
        const MAPS: AddrKind = B::MAPS;
        fn cache(&self) -> IovaCache<'_> {
            self.iova.cache()
        }
        #[inline(always)]
        fn reserve<'a, 'c>(
            &'a self,
            cache: Option<&'c IovaCache<'a>>,
            bytes: u64,
            mask: u64,
        ) -> Option<IovaLease<'c, B>>
        where
            'a: 'c,
        {
            let pool = match cache {
                Some(c) => Pool::Cache(c),
                None => Pool::Shared(self.iova),
            };
            IovaLease::reserve(self.backend, pool, bytes, mask)
        }
    }
}

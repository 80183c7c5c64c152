//! The one IOMMU backend over a VFIO IOMMU context, generic over the handle
//! that reaches the kernel: a type1 container or an iommufd IOAS, this
//! crate's own or (feature `vfio-ioctls`) rust-vmm's. [`VfioType1`] and
//! [`IommufdIoas`] are names of it.
//!
//! [`VfioType1`]: super::vfio::VfioType1
//! [`IommufdIoas`]: super::iommufd::IommufdIoas

use core::fmt;
use std::vec::Vec;

use super::attach::{self, AttachError};
use super::kernel::{self, Kernel, Mappings};
use crate::{VfioCall, VfioDevice, VfioError, VfioErrorKind, page_size};
use dmaspace::Brand;
use dmaspace::backend::{AddrKind, BackendError, IommuBackend, MapEach};
use dmaspace::device::Device;
use dmaspace::dir::IommuPerm;
use dmaspace::iommu::IommuDomain;
use dmaspace::map::{Iommu, Mapper};

/// A handle on a VFIO IOMMU context that [`VfioIommu`] can program: this
/// crate's [`VfioContainer`](crate::VfioContainer) (type1) and
/// [`Ioas`](crate::Ioas) (iommufd) and, with the feature `vfio-ioctls`,
/// rust-vmm's containers and IOASes.
///
/// Sealed: the backend's memory safety rests on what each handle's kernel
/// calls do, so only this crate implements it.
pub trait IommuHandle: Kernel + Send + Sync {}

/// An [`IommuBackend`] over a VFIO IOMMU context `H` (a type1 container or
/// an iommufd IOAS): the crate owns the IOVA space and the rules, the kernel
/// programs translations. Named [`VfioType1`](super::vfio::VfioType1) and
/// [`IommufdIoas`](super::iommufd::IommufdIoas) for this crate's handles;
/// those names' constructors say how the aperture is chosen.
///
/// Both kernels map a *process virtual address*:
/// [`MAPS`](IommuBackend::MAPS) is [`AddrKind::Virt`]. Every mapping is
/// recorded in a table, so that `map`/`unmap` keep the trait's contract
/// whatever the kernel's own rules (type1 and iommufd refuse an unmap that
/// splits a mapping; iommufd answers `ENOENT` for an empty range).
///
/// [`sync`](IommuBackend::sync) does nothing: both kernels' maps are visible
/// to the devices when the ioctl returns.
///
/// See [`VfioType1`](super::vfio::VfioType1) for an example.
pub struct VfioIommu<H: IommuHandle> {
    handle: H,
    granule: u64,
    aperture: (u64, u64),
    valid: Vec<(u64, u64)>,
    avoided: Vec<(u64, u64)>,
    live: Mappings,
}

impl<H: IommuHandle> VfioIommu<H> {
    /// The backend of `handle`, whose valid IOVA ranges (`(first, last)`
    /// inclusive) are `valid` and smallest page `granule` (a power of two),
    /// its aperture the largest window of them clear of `avoid`
    /// (`(start, len)`).
    pub(super) fn build(
        handle: H,
        valid: Vec<(u64, u64)>,
        granule: u64,
        avoid: &[(u64, u64)],
    ) -> Result<Self, VfioError> {
        let bad =
            |what| VfioError::new(VfioCall::Argument, VfioErrorKind::InvalidArgument { what });
        let granule = granule.max(page_size() as u64);
        if !granule.is_power_of_two() {
            return Err(bad("the IOVA alignment is not a power of two"));
        }
        let aperture = kernel::pick_aperture(&valid, granule, avoid).ok_or(bad(H::NO_WINDOW))?;
        Ok(Self {
            handle,
            granule,
            aperture,
            valid,
            avoided: avoid.iter().copied().filter(|w| w.1 > 0).collect(),
            live: Mappings::default(),
        })
    }

    /// The handle the backend programs.
    pub(super) fn handle(&self) -> &H {
        &self.handle
    }

    /// The context's valid IOVA ranges, `(first, last)` inclusive, as the
    /// kernel reported them when the backend was made.
    ///
    /// See [`VfioType1::avoiding`](super::vfio::VfioType1::avoiding).
    #[must_use]
    pub fn valid_ranges(&self) -> &[(u64, u64)] {
        &self.valid
    }

    /// The windows (`(start, len)`) the aperture was asked to avoid, as
    /// given (empty ones left out). The aperture meets none of them: either
    /// one was cut out of it, or it lay outside the valid range the aperture
    /// was taken from and needed no cut.
    ///
    /// See [`VfioType1::avoiding`](super::vfio::VfioType1::avoiding).
    #[must_use]
    pub fn avoided(&self) -> &[(u64, u64)] {
        &self.avoided
    }

    /// Bytes mapped through this backend now (for leak checks).
    ///
    /// See [`VfioType1::avoiding`](super::vfio::VfioType1::avoiding).
    #[must_use]
    pub fn mapped_bytes(&self) -> u64 {
        self.live.mapped_bytes()
    }
}

impl<H: IommuHandle> fmt::Debug for VfioIommu<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(H::NAME);
        self.handle.debug_fields(&mut d);
        d.field("granule", &self.granule)
            .field(
                "aperture",
                &format_args!("{:#x} + {:#x}", self.aperture.0, self.aperture.1),
            )
            .field("avoided", &Hex(&self.avoided))
            .field("mapped_bytes", &self.mapped_bytes())
            .finish()
    }
}

/// `(start, len)` windows in hex.
struct Hex<'a>(&'a [(u64, u64)]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(s, l)| format_args!("{s:#x} + {l:#x}").to_string()),
            )
            .finish()
    }
}

// SAFETY: the trait's contract, point by point:
// - `map` checks alignment, the aperture and overlap with its own table, then
//   makes one map call (`Kernel::map`: VFIO_IOMMU_MAP_DMA, or IOMMU_IOAS_MAP
//   with FIXED_IOVA) of exactly `[iova, iova + len)` to the process range at
//   `addr` with exactly `perm`; the kernel translates that range and no
//   other (the `Kernel` contract). On error the kernel has unwound, and the
//   table unmaps the range again to make sure (`Mappings::map`): nothing of
//   the call stays mapped.
// - `unmap` removes every mapping inside the range (`Mappings::unmap`: whole
//   mappings, the outside parts of a straddling one mapped back); both
//   kernels flush the IOTLB before the ioctl returns. An empty range makes no
//   call. If the kernel refuses, the process aborts: returning would let the
//   caller reuse memory a device can still reach.
// - `granule` is the context's smallest page or alignment (a power of two,
//   at least the CPU page: every `IommuHandle` constructor takes the max),
//   `aperture` a window of the valid ranges read once: both constant.
// - The handle is `Sync` (the `Kernel` supertraits) and the table a mutex.
// - The linker is `MapEach`, which calls `map`.
unsafe impl<H: IommuHandle> IommuBackend for VfioIommu<H> {
    const MAPS: AddrKind = AddrKind::Virt;
    type Linker<'a>
        = MapEach<'a, Self>
    where
        H: 'a;

    fn linker(&self, perm: IommuPerm) -> MapEach<'_, Self> {
        MapEach::new(self, perm)
    }

    fn granule(&self) -> u64 {
        self.granule
    }

    fn aperture(&self) -> (u64, u64) {
        self.aperture
    }

    /// The handle's map call of the process virtual range at `addr`; `mmio`
    /// classifies an `EFAULT` (iommufd in 6.12 cannot pin a BAR's PFNMAP
    /// range: [`Unmappable`](dmaspace::backend::BackendErrorKind::Unmappable);
    /// type1 follows the frames by itself).
    unsafe fn map(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        self.live.map(
            &self.handle,
            self.granule,
            self.aperture,
            (iova, addr, len),
            perm,
            mmio,
        )
    }

    /// Nothing to do: a mapping is visible when the ioctl returns.
    unsafe fn sync(&self, _iova: u64, _len: u64) {}

    unsafe fn unmap(&self, iova: u64, len: u64) {
        if let Err(e) = self.live.unmap(&self.handle, iova, len) {
            unmap_refused(H::UNMAP_OP, &e);
        }
    }
}

/// The kernel refused an unmap the table allows: a device may still reach
/// memory the caller is about to reuse. No safe way on: abort.
fn unmap_refused(op: &str, e: &kernel::UnmapFailed) -> ! {
    std::eprintln!(
        "dmaspace: {op} of {:#x}+{:#x} failed (errno {}): a device may still reach this memory; aborting",
        e.iova,
        e.len,
        e.errno
    );
    std::process::abort()
}

/// The mapper of `device`, driven by VFIO as `vfio`, in `domain`: checked
/// that the handle's kernel context translates `vfio`'s DMA
/// ([`Kernel::attached`]) and that `vfio` is `device`'s function.
pub(super) fn checked_mapper<'d, K: Brand, Dm: Brand, H: IommuHandle>(
    vfio: &'d VfioDevice,
    device: &'d Device<'_, K>,
    domain: &'d IommuDomain<Dm, VfioIommu<H>>,
) -> Result<Mapper<'d, K, Iommu<'d, VfioIommu<H>>>, AttachError> {
    let handle = domain.backend().handle();
    attach::vouch(
        handle.attached(vfio),
        H::not_attached(vfio.address()),
        vfio.address(),
        device.bdf(),
    )?;
    // SAFETY: `Kernel::attached` (an `unsafe trait` method) answered that
    // `vfio`, the VFIO device of `device`'s function (checked above), has
    // its DMA translated by the context the backend programs, and that this
    // holds while `vfio` is borrowed: the mapper borrows `vfio`.
    unsafe { Mapper::iommu_unchecked(device, domain) }.map_err(AttachError::Claim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ioas;
    use dmaspace::backend::BackendErrorKind;
    use dmaspace::pci::Bdf;
    use std::string::String;
    use std::sync::Mutex;

    const G: u64 = 4096;
    const RW: IommuPerm = IommuPerm::READ.union(IommuPerm::WRITE);

    /// A kernel that records its calls, with iommufd's rule for an empty
    /// unmap (`ENOENT`), so that the backend's table is what keeps the
    /// trait's contract.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    // SAFETY: a test double: it maps nothing, no device is behind it, and
    // it says no VFIO device is attached to it.
    unsafe impl Kernel for Recorder {
        const NAME: &'static str = "Recorder";
        const MAP_OP: &'static str = "REC_MAP";
        const UNMAP_OP: &'static str = "REC_UNMAP";
        const NO_WINDOW: &'static str = "no window";
        fn map(&self, iova: u64, _: u64, len: u64, perm: IommuPerm) -> Result<(), i32> {
            let w = if perm.contains(IommuPerm::WRITE) {
                "w"
            } else {
                "r"
            };
            let mut c = self.calls.lock().unwrap();
            c.push(format!("map {iova:#x}+{len:#x} {w}"));
            Ok(())
        }
        fn unmap(&self, iova: u64, len: u64) -> Result<(), i32> {
            let mut c = self.calls.lock().unwrap();
            c.push(format!("unmap {iova:#x}+{len:#x}"));
            Ok(())
        }
        fn attached(&self, _: &VfioDevice) -> bool {
            false
        }
        fn not_attached(vfio: Bdf) -> AttachError {
            AttachError::NotAttached { vfio }
        }
    }
    impl IommuHandle for Recorder {}

    fn backend(avoid: &[(u64, u64)]) -> VfioIommu<Recorder> {
        // intel-iommu, aw-bits=48: the MSI window is reserved.
        let valid = std::vec![(0, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)];
        VfioIommu::build(Recorder::default(), valid, G, avoid).unwrap()
    }

    #[test]
    fn the_generic_backend_keeps_the_contract_over_any_handle() {
        let b = backend(&[]);
        let (base, _) = b.aperture();
        assert_eq!(base, 0xfef0_0000);
        // SAFETY: the recorder maps nothing; these ranges are the test's.
        unsafe {
            b.map(base, 0x7000_0000, 4 * G, IommuPerm::READ, false)
                .unwrap();
            // Below the aperture: refused before any call.
            let e = b.map(0x1000, 0x7000_0000, G, RW, false).unwrap_err();
            assert_eq!(e.kind(), BackendErrorKind::BadRange);
            // Overlapping the first: refused by the table, not the kernel.
            let e = b.map(base + G, 0x7100_0000, G, RW, false).unwrap_err();
            assert_eq!((e.op(), e.code()), ("REC_MAP", libc::EEXIST));
            assert_eq!(b.mapped_bytes(), 4 * G);
            // A range that holds nothing makes no call; a split one unmaps
            // the whole mapping and maps back the outside part, same perm.
            b.unmap(base + 8 * G, G);
            b.unmap(base + 2 * G, 2 * G);
        }
        assert_eq!(
            *b.handle().calls.lock().unwrap(),
            [
                "map 0xfef00000+0x4000 r",
                "unmap 0xfef00000+0x4000",
                "map 0xfef00000+0x2000 r"
            ]
        );
        assert_eq!(b.mapped_bytes(), 2 * G);
        let d = format!("{b:?}");
        assert!(
            d.starts_with("Recorder { granule: 4096, aperture: 0xfef00000 + "),
            "{d}"
        );
    }

    #[test]
    fn an_avoided_window_below_the_aperture_needs_no_cut_and_is_still_avoided() {
        // Issue 20: a 32-bit CMB BAR at 0xfe00_0000 lies in the small range
        // below the MSI window, the aperture is the large range above it:
        // the aperture is the same as without `avoid`, and never reaches
        // the window. Only a window inside the large range moves it.
        let cmb32 = (0xfe00_0000, 0x40_0000);
        let (plain, low) = (backend(&[]), backend(&[cmb32]));
        assert_eq!(low.aperture(), plain.aperture());
        let (base, len) = low.aperture();
        assert!(base >= cmb32.0 + cmb32.1);
        assert_eq!(low.avoided(), [cmb32]);
        assert!(format!("{low:?}").contains("avoided: [\"0xfe000000 + 0x400000\"]"));
        let cmb64 = (0x8_0000_0000, 0x40_0000);
        let high = backend(&[cmb32, cmb64, (0x1234_0000, 0)]);
        assert_eq!(high.aperture().0, cmb64.0 + cmb64.1);
        assert_eq!(high.aperture().0 + high.aperture().1, base + len);
        assert_eq!(high.avoided(), [cmb32, cmb64], "empty windows left out");
    }

    #[test]
    fn a_bad_granule_or_no_window_is_a_typed_error() {
        let e =
            VfioIommu::build(Recorder::default(), std::vec![(0, 0xffff)], 3 * G, &[]).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::InvalidArgument { .. }));
        let e = VfioIommu::build(
            Recorder::default(),
            std::vec![(0, 0xffff)],
            G,
            &[(0, 0x1_0000)],
        )
        .unwrap_err();
        assert_eq!(
            e.kind(),
            &VfioErrorKind::InvalidArgument { what: "no window" }
        );
        // The crate's handles name their own context in the error.
        assert_ne!(
            <Ioas as Kernel>::NO_WINDOW,
            <crate::VfioContainer as Kernel>::NO_WINDOW
        );
    }
}

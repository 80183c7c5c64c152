//! What sysfs says about a function before any
//! VFIO node is opened: does it exist, which driver has it, which IOMMU group,
//! which VFIO device cdev.

use std::format;
use std::path::PathBuf;
use std::string::{String, ToString};

use dmaspace::pci::Bdf;

use super::error::{Result, VfioCall, VfioError, VfioErrorKind};

/// The IOMMU group of a function, and the node VFIO gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioGroupNode {
    /// The group number (`/sys/kernel/iommu_groups/N`).
    pub id: u32,
    /// Whether it is a no-IOMMU group (`/dev/vfio/noiommu-N`).
    pub noiommu: bool,
    /// The node to open.
    pub path: PathBuf,
}

impl VfioGroupNode {
    /// The node's name as `/dev/vfio` shows it: `7` or `noiommu-0`.
    #[must_use]
    pub fn name(&self) -> String {
        if self.noiommu {
            format!("noiommu-{}", self.id)
        } else {
            self.id.to_string()
        }
    }
}

/// A view of `/sys` and `/dev` below a root (`/` for the live machine; a
/// directory tree in tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::live()
    }
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Sysfs {
    /// The live machine.
    #[must_use]
    pub fn live() -> Self {
        Self { root: "/".into() }
    }

    /// A tree below `root` (its `sys/` and `dev/`).
    #[must_use]
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `ROOT/sys/bus/pci/devices/<addr>`.
    #[must_use]
    pub fn device_dir(&self, addr: Bdf) -> PathBuf {
        self.root.join("sys/bus/pci/devices").join(addr.to_string())
    }

    /// A path below the root (`dev/vfio/vfio`, say).
    #[must_use]
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn existing(&self, addr: Bdf) -> Result<PathBuf> {
        let d = self.device_dir(addr);
        if d.exists() {
            Ok(d)
        } else {
            Err(VfioError::new(
                VfioCall::Sysfs(d),
                VfioErrorKind::NoSuchDevice {
                    device: addr.to_string(),
                },
            ))
        }
    }

    /// The driver bound to `addr` (`nvme`, `vfio-pci`), or `None`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::NoSuchDevice`]; the `errno` of reading the `driver` link.
    pub fn driver(&self, addr: Bdf) -> Result<Option<String>> {
        let link = self.existing(addr)?.join("driver");
        match std::fs::read_link(&link) {
            Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VfioError::os(VfioCall::Sysfs(link), errno_of(&e))),
        }
    }

    /// Ok when `addr` exists and is bound to `vfio-pci`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::NoSuchDevice`], or [`VfioErrorKind::NotBoundToVfio`] naming the
    /// driver that holds it.
    pub fn require_vfio_pci(&self, addr: Bdf) -> Result<()> {
        match self.driver(addr)? {
            Some(d) if d == "vfio-pci" => Ok(()),
            driver => Err(VfioError::new(
                VfioCall::Sysfs(self.device_dir(addr).join("driver")),
                VfioErrorKind::NotBoundToVfio {
                    device: addr.to_string(),
                    driver,
                },
            )),
        }
    }

    /// The IOMMU group of `addr` and the VFIO node for it (`/dev/vfio/N`, or
    /// `/dev/vfio/noiommu-N` when that one exists).
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::NoSuchDevice`]; [`VfioErrorKind::NoIommuGroup`] when the function
    /// has no `iommu_group` link.
    pub fn group(&self, addr: Bdf) -> Result<VfioGroupNode> {
        let link = self.existing(addr)?.join("iommu_group");
        let target = std::fs::read_link(&link).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                VfioError::new(
                    VfioCall::Sysfs(link.clone()),
                    VfioErrorKind::NoIommuGroup {
                        device: addr.to_string(),
                    },
                )
            } else {
                VfioError::os(VfioCall::Sysfs(link.clone()), errno_of(&e))
            }
        })?;
        let id = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| {
                VfioError::new(
                    VfioCall::Sysfs(link.clone()),
                    VfioErrorKind::InvalidArgument {
                        what: "iommu_group link does not end in a group number",
                    },
                )
            })?;
        let noiommu = self.path("dev/vfio").join(format!("noiommu-{id}"));
        if noiommu.exists() {
            Ok(VfioGroupNode {
                id,
                noiommu: true,
                path: noiommu,
            })
        } else {
            Ok(VfioGroupNode {
                id,
                noiommu: false,
                path: self.path("dev/vfio").join(id.to_string()),
            })
        }
    }

    /// The VFIO device cdev of `addr`: `/dev/vfio/devices/vfioN`, from
    /// `.../<addr>/vfio-dev/vfioN`.
    ///
    /// # Errors
    ///
    /// [`VfioErrorKind::NoSuchDevice`]; [`VfioErrorKind::NoDeviceCdev`] when there is none.
    pub fn device_cdev(&self, addr: Bdf) -> Result<PathBuf> {
        let dir = self.existing(addr)?.join("vfio-dev");
        let none = || {
            VfioError::new(
                VfioCall::Sysfs(dir.clone()),
                VfioErrorKind::NoDeviceCdev {
                    device: addr.to_string(),
                },
            )
        };
        let rd = std::fs::read_dir(&dir).map_err(|_| none())?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("vfio") {
                return Ok(self.path("dev/vfio/devices").join(name));
            }
        }
        Err(none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake tree: 00:03.0 on vfio-pci in group 3, 00:05.0 on nvme in group 5,
    /// 00:06.0 unbound and without a group, 00:07.0 on vfio-pci in no-IOMMU group 0.
    fn fake() -> tempfile::TempDir {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let devs = r.join("sys/bus/pci/devices");
        std::fs::create_dir_all(&devs).unwrap();
        std::fs::create_dir_all(r.join("sys/bus/pci/drivers/nvme")).unwrap();
        std::fs::create_dir_all(r.join("sys/bus/pci/drivers/vfio-pci")).unwrap();
        std::fs::create_dir_all(r.join("dev/vfio/devices")).unwrap();
        for (bdf, drv, grp) in [
            ("0000:00:03.0", Some("vfio-pci"), Some(3)),
            ("0000:00:05.0", Some("nvme"), Some(5)),
            ("0000:00:06.0", None, None),
            ("0000:00:07.0", Some("vfio-pci"), Some(0)),
        ] {
            let d = devs.join(bdf);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(drv) = drv {
                symlink(format!("../../../bus/pci/drivers/{drv}"), d.join("driver")).unwrap();
            }
            if let Some(g) = grp {
                symlink(
                    format!("../../../kernel/iommu_groups/{g}"),
                    d.join("iommu_group"),
                )
                .unwrap();
            }
            std::fs::write(
                d.join("resource"),
                "0x00000000febf0000 0x00000000febf3fff 0x0000000000140204\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
            )
            .unwrap();
        }
        std::fs::create_dir_all(devs.join("0000:00:03.0/vfio-dev/vfio2")).unwrap();
        std::fs::write(r.join("dev/vfio/noiommu-0"), "").unwrap();
        t
    }

    #[test]
    #[cfg_attr(miri, ignore = "file-system access")]
    fn sysfs_facts_become_typed_errors() {
        let t = fake();
        let s = Sysfs::at(t.path());
        let a = |x: &str| x.parse::<Bdf>().unwrap();
        s.require_vfio_pci(a("0000:00:03.0")).unwrap();
        let e = s.require_vfio_pci(a("0000:00:05.0")).unwrap_err();
        assert_eq!(
            e.kind(),
            &VfioErrorKind::NotBoundToVfio {
                device: "0000:00:05.0".into(),
                driver: Some("nvme".into())
            }
        );
        let e = s.require_vfio_pci(a("0000:00:06.0")).unwrap_err();
        assert!(matches!(
            e.kind(),
            VfioErrorKind::NotBoundToVfio { driver: None, .. }
        ));
        let e = s.require_vfio_pci(a("0000:42:00.0")).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::NoSuchDevice { .. }));
        assert!(e.to_string().contains("no PCI function 0000:42:00.0"));

        let g = s.group(a("0000:00:03.0")).unwrap();
        assert_eq!((g.id, g.noiommu, g.name()), (3, false, "3".into()));
        assert!(g.path.ends_with("dev/vfio/3"));
        let g = s.group(a("0000:00:07.0")).unwrap();
        assert_eq!((g.noiommu, g.name()), (true, "noiommu-0".into()));
        let e = s.group(a("0000:00:06.0")).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::NoIommuGroup { .. }));

        assert!(
            s.device_cdev(a("0000:00:03.0"))
                .unwrap()
                .ends_with("dev/vfio/devices/vfio2")
        );
        let e = s.device_cdev(a("0000:00:05.0")).unwrap_err();
        assert!(matches!(e.kind(), VfioErrorKind::NoDeviceCdev { .. }));
    }
}

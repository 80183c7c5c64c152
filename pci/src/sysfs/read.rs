//! The one way the loader reads a file: bounded, and only a regular file, judged on
//! the file it opened.
//!
//! Checking `metadata()` and then opening races with a swap of the file (a FIFO put in
//! its place blocks `open` forever), so the file is opened first, with `O_NONBLOCK`
//! (opening a FIFO without a writer then returns at once instead of waiting for one),
//! and its type is read from the open file (`fstat`). A regular file ignores
//! `O_NONBLOCK`. At most `limit + 1` bytes are read: one more than the limit tells a
//! file that is too large from one that fits exactly.

use alloc::vec::Vec;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;

use super::SysfsError;

/// Opens `path` for reading without blocking, and refuses anything but a regular file.
fn open_regular(path: &Path) -> Result<File, SysfsError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(super::io_err(path))?;
    let meta = file.metadata().map_err(super::io_err(path))?;
    if meta.is_file() {
        Ok(file)
    } else {
        Err(SysfsError::NotRegular {
            path: path.to_path_buf(),
        })
    }
}

/// Reads all of the regular file at `path`, which must hold at most `limit` bytes:
/// what the loader reads every sysfs file with, and what a caller can read a related
/// file with (the `dmaspace` command reads `pci.ids` so).
///
/// The file is opened with `O_NONBLOCK` and judged on the open file, so a FIFO is
/// refused at once, even one swapped in after a check of the path; a device node
/// (`/dev/zero`) is refused before a byte is read.
///
/// ```
/// use dmaspace_pci::sysfs::{read_bounded, SysfsError};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("vendor");
/// std::fs::write(&path, "0x8086\n").unwrap();
/// assert_eq!(read_bounded(&path, 4096)?, b"0x8086\n");
/// assert!(matches!(read_bounded(&path, 4), Err(SysfsError::TooLarge { limit: 4, .. })));
/// let zero = std::path::Path::new("/dev/zero");
/// assert!(matches!(read_bounded(zero, 4096), Err(SysfsError::NotRegular { .. })));
/// assert!(matches!(read_bounded(dir.path(), 4096), Err(SysfsError::NotRegular { .. })));
/// # Ok::<(), SysfsError>(())
/// ```
///
/// # Errors
///
/// [`SysfsError::Io`] when it cannot be opened or read, [`SysfsError::NotRegular`] when
/// the opened file is a FIFO, a device node, a directory or a socket,
/// [`SysfsError::TooLarge`] when it holds more than `limit` bytes. Each names `path`.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, SysfsError> {
    let file = open_regular(path)?;
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(super::io_err(path))?;
    if u64::try_from(buf.len()).map_or(true, |n| n > limit) {
        return Err(SysfsError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

/// Reads at most the first `limit` bytes of the regular file at `path` (for files whose
/// beginning is all that is needed, as `/proc/cpuinfo`).
///
/// # Errors
///
/// [`SysfsError::Io`] and [`SysfsError::NotRegular`], as [`read_bounded`].
pub(super) fn read_prefix(path: &Path, limit: u64) -> Result<Vec<u8>, SysfsError> {
    let file = open_regular(path)?;
    let mut buf = Vec::new();
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(super::io_err(path))?;
    Ok(buf)
}

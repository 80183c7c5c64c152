//! The guest kernel's log, for the drivers' negative controls: a stale
//! address must show up as a DMAR fault. Shared by `nvme-e2e` and
//! `virtio-e2e` (included with `#[path]`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

/// The kernel log from now on (`/dev/kmsg`, non-blocking).
pub struct Kmsg(File);

impl Kmsg {
    /// Opens `/dev/kmsg` at its end: only records logged after this call.
    pub fn from_now() -> Result<Self, String> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|e| format!("open /dev/kmsg: {e}"))?;
        f.seek(SeekFrom::End(0))
            .map_err(|e| format!("seek /dev/kmsg: {e}"))?;
        Ok(Self(f))
    }

    /// Records logged since, one per read.
    pub fn records(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let msg = rec.split_once(';').map_or(rec.as_str(), |(_, m)| m);
                    out.push(msg.lines().next().unwrap_or("").to_string());
                }
                // EPIPE: records were overwritten; keep reading.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(_) => break,
            }
        }
        out
    }
}

/// A DMAR fault line for an address in `[lo, hi)`.
pub fn dmar_fault_in(lines: &[String], lo: u64, hi: u64) -> Option<String> {
    lines.iter().find_map(|l| {
        let i = l.find("fault addr 0x")?;
        let hex: String = l[i + 13..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        let a = u64::from_str_radix(&hex, 16).ok()?;
        (l.contains("DMAR") && (lo..hi).contains(&a)).then(|| l.clone())
    })
}

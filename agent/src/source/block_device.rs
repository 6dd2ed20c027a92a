//! Opening a disk (block device or image file) read-only and describing it.
//!
//! The size of a block device comes from the BLKGETSIZE64 ioctl and its logical sector size from
//! BLKSSZGET (a block device's `st_size` is 0). Model, serial and the EBS volume id come from
//! sysfs when present. The only `unsafe` in the crate is here, in the two ioctls.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

nix::ioctl_read!(blk_get_size64, 0x12, 114, u64);
nix::ioctl_read_bad!(blk_sector_size, 0x1268, nix::libc::c_int);

pub use airf_evidence::disk::{DiskFacts, DiskKind};

/// Why a disk could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such file or device.
    #[error("{path}: no such device or file; check the name with `lsblk` (e.g. /dev/nvme1n1)")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// Permission denied.
    #[error("{path}: permission denied; run as root (sudo) to read block devices")]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
    },
    /// A directory or other non-disk was given.
    #[error(
        "{path}: is a {what}, not a block device or image file; give a device such as /dev/nvme1n1"
    )]
    NotADisk {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// Any other error while opening or sizing.
    #[error("{path}: {action} failed: {error}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        error: std::io::Error,
    },
}

/// An opened disk source.
#[derive(Debug)]
pub struct Disk {
    /// The open, read-only file.
    pub file: File,
    /// What we know about it.
    pub facts: DiskFacts,
}

/// Opens `path` read-only and gathers its facts.
pub fn open(path: &Path) -> Result<Disk, OpenError> {
    let io_err = |action, error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => OpenError::NotFound {
            path: path.to_owned(),
        },
        std::io::ErrorKind::PermissionDenied => OpenError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => OpenError::Io {
            path: path.to_owned(),
            action,
            error,
        },
    };
    let meta = std::fs::metadata(path).map_err(|e| io_err("stat", e))?;
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        Some("directory")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_fifo() {
        Some("pipe")
    } else if ft.is_socket() {
        Some("socket")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(OpenError::NotADisk {
            path: path.to_owned(),
            what,
        });
    }
    let file = File::open(path).map_err(|e| io_err("open", e))?;
    let canonical_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut facts = DiskFacts {
        path: path.to_owned(),
        canonical_path,
        kind: DiskKind::File,
        size: meta.len(),
        sector_size: 512,
        device_number: None,
        model: None,
        serial: None,
        ebs_volume_id: None,
        loop_backing_file: None,
    };
    if ft.is_block_device() {
        facts.kind = DiskKind::BlockDevice;
        let mut size = 0u64;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
        unsafe { blk_get_size64(file.as_raw_fd(), &mut size) }
            .map_err(|e| io_err("BLKGETSIZE64 ioctl", e.into()))?;
        let mut sector: nix::libc::c_int = 512;
        // SAFETY: BLKSSZGET writes one c_int through the pointer, which points at a live local.
        unsafe { blk_sector_size(file.as_raw_fd(), &mut sector) }
            .map_err(|e| io_err("BLKSSZGET ioctl", e.into()))?;
        facts.size = size;
        facts.sector_size = u32::try_from(sector).unwrap_or(512).max(512);
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        facts.device_number = Some(format!("{major}:{minor}"));
        sysfs_facts(&mut facts, major, minor);
    }
    advise_sequential(&file);
    Ok(Disk { file, facts })
}

fn sysfs_facts(facts: &mut DiskFacts, major: u64, minor: u64) {
    let dev = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let read = |rel: &str| {
        std::fs::read_to_string(dev.join(rel))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    facts.model = read("device/model");
    facts.serial = read("device/serial").or_else(|| read("serial"));
    facts.loop_backing_file = read("loop/backing_file");
    facts.ebs_volume_id = facts.serial.as_deref().and_then(ebs_volume_id);
}

/// EBS NVMe devices report the volume id without its dash as the serial.
fn ebs_volume_id(serial: &str) -> Option<String> {
    let rest = serial.strip_prefix("vol")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit())).then(|| format!("vol-{rest}"))
}

/// Tells the kernel we read front to back, so readahead is generous. Advisory only.
fn advise_sequential(file: &File) {
    let _ = nix::fcntl::posix_fadvise(
        file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
}

/// Asks the kernel to drop cached pages of a span already read, so acquiring a large disk does
/// not evict the suspect's page cache (which is itself evidence). Advisory only.
pub fn drop_cached(file: &File, offset: u64, len: u64) {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        file,
        off,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebs_serial_becomes_volume_id() {
        assert_eq!(ebs_volume_id("vol0abc123").as_deref(), Some("vol-0abc123"));
        assert_eq!(ebs_volume_id("vol-0abc123").as_deref(), Some("vol-0abc123"));
        assert_eq!(ebs_volume_id("S4EWNX0N123"), None);
        assert_eq!(ebs_volume_id("vol"), None);
    }

    #[test]
    fn directory_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn missing_path_names_the_fix() {
        let err = open(Path::new("/dev/does-not-exist-airf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such device") && err.contains("lsblk"),
            "{err}"
        );
    }

    #[test]
    fn image_file_is_sized_from_metadata() -> Result<(), Box<dyn std::error::Error>> {
        let mut f = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut f, &[7u8; 3000])?;
        let disk = open(f.path())?;
        assert_eq!(disk.facts.size, 3000);
        assert_eq!(disk.facts.kind, DiskKind::File);
        Ok(())
    }
}

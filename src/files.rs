//! Reading small files whole, safely: a config file, a PEM, a credential. One reader, so that
//! every such read refuses a FIFO, a device or a directory before opening it (a FIFO would
//! block, `/dev/zero` never ends) and bounds the size.
//!
//! It imports nothing of the crate, so the config and the actions (which reads its
//! credential files again at each poll) both use it without an import circle.

use std::path::Path;

/// Reads a small regular file whole. A FIFO, a device or a directory is refused before it is
/// opened (opening a FIFO blocks until a writer comes; `/dev/zero` never ends), and so is a
/// file larger than `limit`. The file is opened non-blocking and checked again, so a path
/// swapped for a FIFO in between cannot hang the caller either.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let check = |m: &std::fs::Metadata| -> std::io::Result<()> {
        let t = m.file_type();
        let what = if t.is_file() {
            if m.len() > limit {
                return Err(std::io::Error::other(format!(
                    "is larger than {} KiB",
                    limit >> 10
                )));
            }
            return Ok(());
        } else if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        Err(std::io::Error::other(format!(
            "is not a regular file ({what})"
        )))
    };
    check(&std::fs::metadata(path)?)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    check(&f.metadata()?)?;
    let mut out = Vec::new();
    f.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "is larger than {} KiB",
            limit >> 10
        )));
    }
    Ok(out)
}

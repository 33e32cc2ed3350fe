use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::{io_err, StorageError};

/// Makes a created, renamed or removed directory entry durable: without it a power loss can lose
/// the file even though its data was fsynced.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))?;
    // Elsewhere a directory cannot be opened as a file; there the rename itself is all we get.
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Like `read_exact`, but a short read at end of file is reported as a count instead of an error,
/// because a short read is how a torn tail shows itself.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

//! Reading a rules file: bounded in size, and, for a file read again and again, only a regular one.

use std::path::Path;

use super::parse::{parse, problem};
use super::{Error, Rules};

/// Rules files larger than this are refused before parsing (a rules file is hand-written; 4 MiB is thousands
/// of rules).
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and validates a rules file. The file name in messages is `path` as given. At most [`MAX_BYTES`] + 1
/// bytes are read, whatever the file is (a FIFO, a device), so the limit holds without trusting its size.
pub fn load(path: &Path) -> Result<Rules, Error> {
    let file = std::fs::File::open(path).map_err(|error| Error::Read { file: path.display().to_string(), error })?;
    from_bytes(path, &read_bounded(path, file)?)
}

/// A rules file as read, and what it says: a file read again and again compares its bytes with `text`.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub rules: Rules,
    pub text: Vec<u8>,
}

/// [`load`] for a file read again and again (watch mode): it must be a regular file. It is opened without
/// blocking, so a FIFO put at the path is refused at once instead of waiting for a writer.
pub(crate) fn load_regular(path: &Path) -> Result<Loaded, Error> {
    let text = read_regular(path)?;
    Ok(Loaded { rules: from_bytes(path, &text)?, text })
}

/// The bytes of the regular file at `path` (at most [`MAX_BYTES`] + 1 of them), opened without blocking.
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_error = |error| Error::Read { file: path.display().to_string(), error };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(read_error)?;
    let kind = file.metadata().map_err(read_error)?.file_type();
    if !kind.is_file() {
        let what = match () {
            () if kind.is_fifo() => "it is a FIFO",
            () if kind.is_dir() => "it is a directory",
            () => "it is not a regular file",
        };
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{what}; watch mode reads the rules file again every few seconds and needs a regular file (a ConfigMap key mounted as a file is one)"
            ),
        )));
    }
    read_bounded(path, file)
}

fn read_bounded(path: &Path, source: std::fs::File) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut bytes = Vec::new();
    source
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::Read { file: path.display().to_string(), error })?;
    Ok(bytes)
}

/// Validates the bytes of the rules file at `path`.
pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Rules, Error> {
    let file = path.display().to_string();
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Error::Invalid {
            file,
            problems: vec![problem(
                (1, 1),
                "",
                format!("file is larger than {MAX_BYTES} bytes (4 MiB), the limit for a rules file"),
            )],
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Read {
        file: file.clone(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    parse(&file, text)
}

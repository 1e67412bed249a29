//! What the steps that edit a file share: read a text file of the work
//! directory (refusing a missing, oversized or non-UTF-8 one, naming the
//! config field), and write it back.

use std::path::Path;

use super::document::MAX_FILE_BYTES;
use super::{retryable, terminal};
use crate::promotion::engine::StepError;

/// Reads the file at `path`, which the config's `field` names as
/// `relative`.
pub fn read(path: &Path, field: &str, relative: &str) -> Result<String, StepError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(terminal(format!(
                "config.{field}: {relative:?} does not exist in the work directory"
            )));
        }
        Err(e) => return Err(retryable(format!("config.{field}: {relative:?}: {e}"))),
    };
    if !meta.is_file() {
        return Err(terminal(format!(
            "config.{field}: {relative:?} is not a file"
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(terminal(format!(
            "config.{field}: {relative:?} is {} bytes, over the {MAX_FILE_BYTES}-byte limit",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| retryable(format!("config.{field}: reading {relative:?}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| terminal(format!("config.{field}: {relative:?} is not UTF-8 text")))
}

/// Writes `text` over the file at `path` when it differs from `old`, so an
/// edit that changes nothing leaves the file untouched.
pub fn write(
    path: &Path,
    field: &str,
    relative: &str,
    old: &str,
    text: &str,
) -> Result<(), StepError> {
    if old == text {
        return Ok(());
    }
    std::fs::write(path, text)
        .map_err(|e| retryable(format!("config.{field}: writing {relative:?}: {e}")))
}

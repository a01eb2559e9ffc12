//! Fragment files: a journal's bytes, split at roll points, each file named by the journal offset
//! of its first byte.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::storage::{OpenMode, Storage, StorageFile};

/// Suffix of fragment file names.
pub const FRAGMENT_SUFFIX: &str = ".frag";
/// Digits in a fragment name: the begin offset, zero-padded decimal, so names sort by offset.
pub const FRAGMENT_NAME_DIGITS: usize = 20;

/// `00000000000000004096.frag` for begin offset 4096.
pub fn fragment_file_name(begin: u64) -> String {
    format!("{begin:0width$}{FRAGMENT_SUFFIX}", width = FRAGMENT_NAME_DIGITS)
}

/// The begin offset named by a fragment file name, or `None` if it is not one (see
/// [`has_fragment_name_shape`] for a name whose number does not fit).
pub fn parse_fragment_name(name: &str) -> Option<u64> {
    if !has_fragment_name_shape(name) {
        return None;
    }
    name.strip_suffix(FRAGMENT_SUFFIX)?.parse().ok()
}

/// Whether `name` is shaped like a fragment file name (20 digits, `.frag`), whether or not its
/// number fits an offset: `99999999999999999999.frag` is a damaged fragment name, not a stray file.
pub fn has_fragment_name_shape(name: &str) -> bool {
    name.strip_suffix(FRAGMENT_SUFFIX).is_some_and(|digits| {
        digits.len() == FRAGMENT_NAME_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// One fragment file. Sealed fragments are opened lazily, on first read, so that opening a
/// journal costs the same whatever its history.
pub(crate) struct Fragment {
    pub begin: u64,
    pub path: PathBuf,
    file: OnceLock<Arc<dyn StorageFile>>,
    /// The file's length when it was opened (bounds reads of sealed fragments).
    len_at_open: OnceLock<u64>,
}

impl Fragment {
    pub fn new(begin: u64, dir: &Path) -> Fragment {
        Fragment {
            begin,
            path: dir.join(fragment_file_name(begin)),
            file: OnceLock::new(),
            len_at_open: OnceLock::new(),
        }
    }

    pub fn with_file(begin: u64, dir: &Path, file: Arc<dyn StorageFile>) -> Fragment {
        let f = Fragment::new(begin, dir);
        let _ = f.file.set(file);
        f
    }

    /// The open file, opening it read-only first if needed.
    pub fn file(&self, storage: &dyn Storage, map_len_hint: u64) -> std::io::Result<&Arc<dyn StorageFile>> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        let file = storage.open(&self.path, OpenMode::ReadOnly, map_len_hint)?;
        let len = file.len()?;
        let _ = self.len_at_open.set(len);
        Ok(self.file.get_or_init(|| file))
    }

    /// The file length seen when a sealed fragment was opened lazily, if it was.
    pub fn len_at_open(&self) -> Option<u64> {
        self.len_at_open.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_offset_and_parse_back() {
        let a = fragment_file_name(9);
        let b = fragment_file_name(10_000);
        assert!(a < b);
        assert_eq!(parse_fragment_name(&b), Some(10_000));
        assert_eq!(parse_fragment_name("123.frag"), None);
        assert_eq!(parse_fragment_name("LOCK"), None);
        assert_eq!(parse_fragment_name("99999999999999999999.frag"), None);
        assert!(has_fragment_name_shape("99999999999999999999.frag"));
        assert!(!has_fragment_name_shape("123.frag"));
    }
}

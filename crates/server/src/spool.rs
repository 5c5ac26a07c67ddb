//! Inbound message content on disk while an SMTP session receives it.
//!
//! A session keeps only the first bytes of a message in memory; the rest comes to the
//! host in [`portico_smtp::Action::Spool`] chunks and is written here, one file per
//! session, so ten clients stalled mid-DATA at 50 MB hold 500 MB of disk, not of RAM.
//! Spool files together may use `[smtp] spool_limit_mb`; past it (or when the disk is
//! full) a message is read to its end and refused with `452 4.3.1`, and the client can
//! retry later. The files live in `data/spool/`, are private like the rest of the data
//! directory, are removed when their session ends, and any left by a crash are removed
//! at start: content never acknowledged is the client's to send again.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Content of a message a session keeps in memory before it spools the rest.
pub const SPOOL_THRESHOLD: usize = 256 * 1024;

/// Why spooled content cannot be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The spool limit or the disk is full.
    #[error("no room to spool the message")]
    NoSpace,
    #[error("the message could not be spooled")]
    Io,
}

/// The node's spool directory and what all its files hold.
pub struct SpoolArea {
    dir: PathBuf,
    limit: u64,
    used: AtomicU64,
    next: AtomicU64,
}

impl SpoolArea {
    /// Makes (or empties) `dir`; its files may hold `limit` bytes together.
    pub fn open(dir: &Path, limit: u64) -> io::Result<Arc<SpoolArea>> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "msg") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Arc::new(SpoolArea {
            dir: dir.to_path_buf(),
            limit,
            used: AtomicU64::new(0),
            next: AtomicU64::new(1),
        }))
    }

    /// Bytes the spool files hold now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One session's spooled content: created at its first chunk, removed when dropped.
pub struct SpoolFile {
    area: Arc<SpoolArea>,
    path: PathBuf,
    file: Option<File>,
    len: u64,
    failed: Option<SpoolError>,
}

impl SpoolFile {
    pub fn new(area: Arc<SpoolArea>) -> SpoolFile {
        let n = area.next.fetch_add(1, Ordering::Relaxed);
        let path = area.dir.join(format!("{}-{n}.msg", std::process::id()));
        SpoolFile {
            area,
            path,
            file: None,
            len: 0,
            failed: None,
        }
    }

    /// A spool whose message is already lost (its writer failed).
    pub fn failed(area: Arc<SpoolArea>) -> SpoolFile {
        let mut spool = SpoolFile::new(area);
        spool.failed = Some(SpoolError::Io);
        spool
    }

    /// Nothing is spooled (no file, nothing counted).
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.file.is_none() && self.failed.is_none()
    }

    /// Starts a new message: what was spooled before is dropped, its file removed
    /// (scratch is never synced, so it must not outlive the message it held).
    pub fn reset(&mut self) {
        self.failed = None;
        self.remove();
    }

    fn remove(&mut self) {
        self.area.release(self.len);
        self.len = 0;
        if self.file.take().is_some()
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::error!(error = %e, path = %self.path.display(), "removing a spool file failed");
        }
    }

    /// Adds content; after a failure the rest of the message is dropped and the
    /// failure is what [`SpoolFile::take`] reports.
    pub fn append(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.try_append(bytes) {
            self.failed = Some(e);
        }
    }

    fn try_append(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        let size = bytes.len() as u64;
        if !self.area.reserve(size) {
            tracing::warn!(
                limit = self.area.limit,
                "the spool is full; refusing a message"
            );
            return Err(SpoolError::NoSpace);
        }
        let written = self.write(bytes);
        if written.is_err() {
            self.area.release(size);
        }
        written.map_err(|e| {
            tracing::error!(error = %e, "writing to the spool failed");
            if e.kind() == io::ErrorKind::StorageFull {
                SpoolError::NoSpace
            } else {
                SpoolError::Io
            }
        })?;
        self.len += size;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&self.path)?,
            ),
        };
        file.seek(SeekFrom::Start(self.len))?;
        file.write_all(bytes)
    }

    /// The content spooled for the message, which must be `expected` bytes long, with
    /// room for `more` to follow; the file is emptied for the next message.
    pub fn take(&mut self, expected: usize, more: usize) -> Result<Vec<u8>, SpoolError> {
        let read = match self.failed {
            Some(e) => Err(e),
            None if self.len != expected as u64 => {
                tracing::error!(spooled = self.len, expected, "spool and session disagree");
                Err(SpoolError::Io)
            }
            None => self.read_all(more).map_err(|e| {
                tracing::error!(error = %e, "reading the spool failed");
                SpoolError::Io
            }),
        };
        self.reset();
        read
    }

    fn read_all(&mut self, more: usize) -> io::Result<Vec<u8>> {
        let mut content = Vec::with_capacity((self.len as usize).saturating_add(more));
        if let Some(file) = &mut self.file {
            file.seek(SeekFrom::Start(0))?;
            file.take(self.len).read_to_end(&mut content)?;
        }
        Ok(content)
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_content_comes_back_and_the_file_goes_with_its_session() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1-1.msg"), b"left by a crash").unwrap();
        let area = SpoolArea::open(dir.path(), 1000).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut spool = SpoolFile::new(area.clone());
        spool.append(b"hello ");
        spool.append(b"world");
        assert_eq!(area.used(), 11);
        assert_eq!(spool.take(11, 0).unwrap(), b"hello world");
        assert_eq!(area.used(), 0);
        assert!(spool.is_empty());
        spool.append(b"next");
        assert!(!spool.is_empty());
        assert_eq!(spool.take(3, 0), Err(SpoolError::Io));
        spool.append(b"again");
        spool.reset();
        spool.append(b"third");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(spool.take(5, 0).unwrap(), b"third");
        // Taken is gone: scratch never outlives its message.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        spool.append(b"fourth");
        drop(spool);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(area.used(), 0);
    }

    #[test]
    fn past_the_limit_a_message_is_refused_and_the_next_may_fit() {
        let dir = tempfile::tempdir().unwrap();
        let area = SpoolArea::open(dir.path(), 10).unwrap();
        let mut other = SpoolFile::new(area.clone());
        other.append(b"123456");
        let mut spool = SpoolFile::new(area.clone());
        spool.append(b"1234");
        spool.append(b"5");
        spool.append(b"6");
        assert_eq!(spool.take(6, 0), Err(SpoolError::NoSpace));
        assert_eq!(area.used(), 6);
        drop(other);
        spool.append(b"1234567890");
        assert_eq!(spool.take(10, 0).unwrap(), b"1234567890");
    }
}

//! A song's compressed bytes as they arrive: written to a cache file on disk (never held whole
//! in memory) by the download, and read by the decoder, which waits for bytes not there yet.
//!
//! [`cache_file`] makes the pair: a [`CacheWriter`] for the download and a [`CacheReader`] that
//! symphonia reads as a seekable [`MediaSource`]. A read past what has arrived blocks until more
//! arrives, the download ends (then it is the end of the file) or fails (then it is an error),
//! or the reader is closed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use symphonia::core::io::MediaSource;

/// What the writer has said so far.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes written.
    len: u64,
    /// The download's end: `Ok` once every byte is there, `Err` with the reason if it failed.
    end: Option<Result<(), String>>,
    /// The reader is no longer wanted (the song was dropped): a waiting read gives up.
    closed: bool,
}

#[derive(Debug, Default)]
struct Growth {
    progress: Mutex<Progress>,
    grew: Condvar,
}

impl Growth {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        // A panic elsewhere while holding the lock leaves plain numbers behind: still usable.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.lock());
        self.grew.notify_all();
    }
}

/// A new empty cache file in the system's temporary folder, already unlinked: it is gone once
/// the song holding it is dropped, even after a crash.
pub fn unnamed_file() -> io::Result<File> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = dir.join(format!(
        "music262-song-{}-{}-{nanos}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Makes a writer and a reader over `file` (an empty file, usually an unnamed temporary one in
/// a cache directory) for a download of `total` bytes (if known).
pub fn cache_file(file: File, total: Option<u64>) -> io::Result<(CacheWriter, CacheReader)> {
    let reader_file = file.try_clone()?;
    let growth = Arc::new(Growth::default());
    Ok((
        CacheWriter {
            file,
            growth: growth.clone(),
        },
        CacheReader {
            file: reader_file,
            pos: 0,
            total,
            show_len: Arc::new(AtomicBool::new(false)),
            growth,
        },
    ))
}

/// The download's side of a cache file.
#[derive(Debug)]
pub struct CacheWriter {
    file: File,
    growth: Arc<Growth>,
}

impl CacheWriter {
    /// Appends the next bytes of the download.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let at = self.growth.lock().len;
        self.file.write_all_at(bytes, at)?;
        self.growth.update(|p| p.len += bytes.len() as u64);
        Ok(())
    }

    /// Every byte has arrived: reads past them are the end of the file.
    pub fn finish(self) {
        self.growth.update(|p| p.end = Some(Ok(())));
    }

    /// The download failed: reads past what arrived fail with `reason`.
    pub fn fail(self, reason: &str) {
        self.growth
            .update(|p| p.end = Some(Err(reason.to_string())));
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.growth.lock().len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        // A writer dropped without a word (its task aborted) is a failed download.
        self.growth.update(|p| {
            if p.end.is_none() {
                p.end = Some(Err("the download was abandoned".to_string()));
            }
        });
    }
}

/// The decoder's side of a cache file: a seekable source whose reads wait for the download.
#[derive(Debug)]
pub struct CacheReader {
    file: File,
    pos: u64,
    total: Option<u64>,
    /// Whether symphonia is told the length: not while it opens the file, or it would look
    /// for tags at the end first and wait for the whole download.
    show_len: Arc<AtomicBool>,
    growth: Arc<Growth>,
}

impl CacheReader {
    /// The switch that tells symphonia the file's length (off until the file is open).
    pub(crate) fn length_switch(&self) -> Arc<AtomicBool> {
        self.show_len.clone()
    }

    /// A handle that makes a waiting read of this cache give up (for the song's owner).
    pub(crate) fn closer(&self) -> Closer {
        Closer(self.growth.clone())
    }

    /// Waits until byte `pos` has arrived or the download ended; returns the bytes there are.
    fn wait_for(&self, pos: u64) -> io::Result<u64> {
        let mut p = self.growth.lock();
        loop {
            if p.closed {
                // Not `Interrupted`: readers retry that kind.
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "song closed",
                ));
            }
            if pos < p.len {
                return Ok(p.len);
            }
            match &p.end {
                Some(Ok(())) => return Ok(p.len),
                Some(Err(reason)) => return Err(io::Error::other(reason.clone())),
                None => p = self.growth.grew.wait(p).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Makes a cache's waiting reads give up: the song is no longer wanted.
#[derive(Debug, Clone)]
pub(crate) struct Closer(Arc<Growth>);

impl Closer {
    pub(crate) fn close(&self) {
        self.0.update(|p| p.closed = true);
    }
}

impl Read for CacheReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = self.wait_for(self.pos)?;
        let n = (len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for CacheReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = || -> io::Result<u64> {
            match self.total {
                Some(total) => Ok(total),
                // Unknown length: the end is known once the download ends.
                None => self.wait_for(u64::MAX),
            }
        };
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => end()?.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

impl MediaSource for CacheReader {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        self.total.filter(|_| self.show_len.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_waits_for_bytes_that_arrive_later_then_sees_the_end() {
        let (mut w, mut r) = cache_file(tempfile::tempfile().unwrap(), Some(6)).unwrap();
        w.append(b"abc").unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            r.read_to_end(&mut all).map(|_| all)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        w.append(b"def").unwrap();
        w.finish();
        assert_eq!(reader.join().unwrap().unwrap(), b"abcdef");
    }

    #[test]
    fn a_failed_download_is_an_error_for_reads_past_what_arrived() {
        let (mut w, mut r) = cache_file(tempfile::tempfile().unwrap(), None).unwrap();
        w.append(b"ab").unwrap();
        w.fail("hash mismatch");
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        let err = r.read(&mut buf).unwrap_err();
        assert_eq!(err.to_string(), "hash mismatch");
    }

    #[test]
    fn an_unnamed_file_is_readable_and_writable() {
        let (mut w, mut r) = cache_file(unnamed_file().unwrap(), Some(3)).unwrap();
        w.append(b"xyz").unwrap();
        w.finish();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"xyz");
    }

    #[test]
    fn a_closed_reader_stops_waiting() {
        let (_w, mut r) = cache_file(tempfile::tempfile().unwrap(), None).unwrap();
        let closer = r.closer();
        let reader = std::thread::spawn(move || r.read(&mut [0u8; 4]));
        std::thread::sleep(std::time::Duration::from_millis(20));
        closer.close();
        let err = reader.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}

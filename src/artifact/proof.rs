//! The proof that a written dump is good, made while it is written: a thread follows the
//! file through a second descriptor, hashes the bytes it reads back (the SHA-256 of the
//! sidecar is of those bytes, not of the bytes in memory) and decompresses them; at the end
//! the decompressed stream must have the length and CRC-32 of the stream that went into the
//! compressor, and the bytes read back must be as many as were written.
//!
//! It proves what the former second pass after the write proved (the file on disk
//! decompresses cleanly to everything the tool wrote), and more (the decompressed content,
//! not only its length, is compared), without the second pass: the read-back runs beside the
//! compression, on the page cache the write just filled.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::codec::Codec;
use super::manifest::Tables;
use super::sha;

/// Something that reads the decompressed dump as the read-back sees it: a row counter.
pub trait Tap: Send {
    fn feed(&mut self, buf: &[u8]);
    /// Rows per table of what it was fed.
    fn tables(self: Box<Self>) -> Tables;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The writer may write more.
    Open,
    /// The writer is done and flushed: what is in the file is all there is.
    Finished,
    /// The writer failed or was dropped: stop reading.
    Abandoned,
}

struct Progress {
    written: u64,
    end: End,
    /// When the file is encrypted, the reader cannot read it back: it is handed the
    /// compressed stream itself, a copy of each write (at most `QUEUED` bytes waiting).
    queue: Option<VecDeque<Vec<u8>>>,
    queued: usize,
    /// The reader has stopped (done or failed): the writer queues no more.
    reader_gone: bool,
}

/// How many bytes of the compressed stream may wait for the reader of an encrypted dump.
const QUEUED: usize = 16 << 20;

struct Shared {
    progress: Mutex<Progress>,
    moved: Condvar,
}

impl Shared {
    fn set_end(&self, end: End) {
        if let Ok(mut p) = self.progress.lock()
            && p.end == End::Open
        {
            p.end = end;
        }
        self.moved.notify_all();
    }
}

/// What the read-back found.
#[derive(Debug)]
pub struct ReadBack {
    /// SHA-256 of the file's bytes as read back.
    pub sha256: String,
    /// Bytes read back from the file.
    pub compressed: u64,
    /// Bytes its decompression gave, and their CRC-32.
    pub uncompressed: u64,
    pub crc: u32,
    /// What the tap counted, when there was one.
    pub tables: Option<Tables>,
}

impl ReadBack {
    /// Whether the read-back is the stream that was written: `written` compressed bytes, which
    /// decompress to the `uncompressed` bytes with CRC-32 `crc` that went into the compressor.
    pub fn confirms(&self, written: u64, uncompressed: u64, crc: u32) -> Result<(), String> {
        if self.compressed != written {
            return Err(format!(
                "{} bytes were read back from the written dump, {written} were written",
                self.compressed
            ));
        }
        if self.uncompressed != uncompressed {
            return Err(format!(
                "the written dump decompresses to {} bytes, {uncompressed} were written",
                self.uncompressed
            ));
        }
        if self.crc != crc {
            return Err(format!(
                "the written dump decompresses to other content than was written (CRC-32 {:08x}, not {crc:08x})",
                self.crc
            ));
        }
        Ok(())
    }
}

/// The writing side: what is written through it is what the reader may read.
pub struct Published<W: Write> {
    inner: W,
    shared: Arc<Shared>,
}

impl<W: Write> Write for Published<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let Ok(mut p) = self.shared.progress.lock() else {
            return Ok(n);
        };
        p.written += n as u64;
        let reader_gone = p.reader_gone;
        if let Some(q) = p.queue.as_mut()
            && !reader_gone
        {
            q.push_back(buf[..n].to_vec());
            p.queued += n;
        }
        self.shared.moved.notify_all();
        // The reader keeps up, or the writer waits for it.
        drop(
            self.shared
                .moved
                .wait_while(p, |p| p.queued > QUEUED && !p.reader_gone),
        );
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Published<W> {
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.shared.progress.lock().map_or(0, |p| p.written)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// The reading side: a file (or the queue of an encrypted one's stream) that ends only when
/// the writer says so.
struct Follow {
    source: Source,
    pos: u64,
    shared: Arc<Shared>,
    hasher: Sha256,
}

enum Source {
    File(File),
    /// The piece taken from the queue and how much of it was read.
    Queue(Vec<u8>, usize),
}

impl Follow {
    /// The next bytes of the queue, waiting for the writer when it is empty.
    fn dequeue(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Source::Queue(piece, at) = &mut self.source
                && *at < piece.len()
            {
                let n = buf.len().min(piece.len() - *at);
                buf[..n].copy_from_slice(&piece[*at..*at + n]);
                *at += n;
                self.pos += n as u64;
                self.hasher.update(&buf[..n]);
                return Ok(n);
            }
            let p = self.shared.progress.lock().map_err(|_| poisoned())?;
            let mut p = self
                .shared
                .moved
                .wait_while(p, |p| {
                    p.queue.as_ref().is_some_and(VecDeque::is_empty) && p.end == End::Open
                })
                .map_err(|_| poisoned())?;
            match p.queue.as_mut().and_then(VecDeque::pop_front) {
                Some(next) => {
                    p.queued -= next.len();
                    self.source = Source::Queue(next, 0);
                    self.shared.moved.notify_all();
                }
                None if p.end == End::Finished => return Ok(0),
                None => return Err(io::Error::other("the write was abandoned")),
            }
        }
    }
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let file = match &mut self.source {
                Source::File(f) => f,
                Source::Queue(..) => return self.dequeue(buf),
            };
            let n = file.read(buf)?;
            if n > 0 {
                self.pos += n as u64;
                self.hasher.update(&buf[..n]);
                return Ok(n);
            }
            let p = self.shared.progress.lock().map_err(|_| poisoned())?;
            let p = self
                .shared
                .moved
                .wait_while(p, |p| p.written <= self.pos && p.end == End::Open)
                .map_err(|_| poisoned())?;
            if p.written > self.pos {
                continue;
            }
            return match p.end {
                End::Finished => Ok(0),
                _ => Err(io::Error::other("the write was abandoned")),
            };
        }
    }
}

/// Tells the writer the reader has stopped, when dropped.
struct Gone(Arc<Shared>);

impl Drop for Gone {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.progress.lock() {
            p.reader_gone = true;
            if let Some(q) = p.queue.as_mut() {
                q.clear();
            }
            p.queued = 0;
        }
        self.0.moved.notify_all();
    }
}

fn poisoned() -> io::Error {
    io::Error::other("the read-back lost its writer")
}

/// Counts and checksums what it is given, and hands it to the tap.
#[derive(Default)]
struct CrcSink {
    crc: crc32fast::Hasher,
    n: u64,
    tap: Option<Box<dyn Tap>>,
}

impl Write for CrcSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.n += buf.len() as u64;
        if let Some(t) = &mut self.tap {
            t.feed(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reader thread of one file being written.
pub struct Proof {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<ReadBack>>>,
}

impl Proof {
    /// Starts following `path` (already created, empty) and wraps `inner`, the writer of that
    /// file: write the compressed stream through the returned `Published`. `tap` reads the
    /// decompressed bytes read back (what is on disk, not what was meant to be).
    pub fn start<W: Write>(
        path: &Path,
        codec: Codec,
        inner: W,
        tap: Option<Box<dyn Tap>>,
    ) -> io::Result<(Proof, Published<W>)> {
        Proof::spawn(Source::File(File::open(path)?), codec, inner, tap)
    }

    /// For an encrypted file, which this host cannot read back: the reader is handed the
    /// compressed stream written through the returned `Published` (before `inner`, the
    /// encryption), and proves it (decompression, length, CRC-32, rows); its `sha256` is of
    /// that plaintext stream. The encrypted bytes are the caller's to hash.
    pub fn start_queued<W: Write>(
        codec: Codec,
        inner: W,
        tap: Option<Box<dyn Tap>>,
    ) -> io::Result<(Proof, Published<W>)> {
        Proof::spawn(Source::Queue(Vec::new(), 0), codec, inner, tap)
    }

    fn spawn<W: Write>(
        source: Source,
        codec: Codec,
        inner: W,
        tap: Option<Box<dyn Tap>>,
    ) -> io::Result<(Proof, Published<W>)> {
        let queued = matches!(source, Source::Queue(..));
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                written: 0,
                end: End::Open,
                queue: queued.then(VecDeque::new),
                queued: 0,
                reader_gone: false,
            }),
            moved: Condvar::new(),
        });
        let mut follow = Follow {
            source,
            pos: 0,
            shared: Arc::clone(&shared),
            hasher: Sha256::new(),
        };
        let thread = std::thread::Builder::new()
            .name("read-back".into())
            .spawn(move || {
                // However the reader ends, the writer stops waiting for it.
                let _gone = Gone(Arc::clone(&follow.shared));
                let mut sink = CrcSink {
                    tap,
                    ..CrcSink::default()
                };
                {
                    // Large reads: the decoder, the CRC and the tap each run once per read.
                    let mut decoder = codec.decoder(&mut follow)?;
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match decoder.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => sink.write_all(&buf[..n])?,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                // Whatever follows the compressed stream is read and hashed too: the hash is
                // of the whole file, and the length comparison catches stray bytes.
                io::copy(&mut follow, &mut io::sink())?;
                Ok(ReadBack {
                    sha256: sha::hex(&follow.hasher.finalize()),
                    compressed: follow.pos,
                    uncompressed: sink.n,
                    crc: sink.crc.finalize(),
                    tables: sink.tap.map(Tap::tables),
                })
            })?;
        let published = Published {
            inner,
            shared: Arc::clone(&shared),
        };
        Ok((
            Proof {
                shared,
                thread: Some(thread),
            },
            published,
        ))
    }

    /// The writer is done and the file flushed: waits for the reader to reach the end.
    pub fn finish(mut self) -> io::Result<ReadBack> {
        self.shared.set_end(End::Finished);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the read-back thread died")),
        }
    }
}

impl Drop for Proof {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.set_end(End::Abandoned);
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn sample() -> Vec<u8> {
        (0..200_000)
            .flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'row {i}');\n").into_bytes())
            .collect()
    }

    fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
        match codec {
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(data, 1).unwrap(),
        }
    }

    /// Writes `bytes` through a proof in small pieces, as the compressor does.
    fn write_through(codec: Codec, bytes: &[u8]) -> io::Result<ReadBack> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let (proof, mut published) = Proof::start(&path, codec, file, None)?;
        for chunk in bytes.chunks(4096) {
            published.write_all(chunk)?;
        }
        published.flush()?;
        let r = proof.finish()?;
        assert_eq!(
            r.sha256,
            sha::file_sha256(&path)?,
            "the hash is of the file"
        );
        Ok(r)
    }

    #[test]
    fn reads_back_what_was_written() {
        let data = sample();
        for codec in Codec::ALL {
            let bytes = compress(codec, &data);
            let r = write_through(codec, &bytes).unwrap();
            r.confirms(
                bytes.len() as u64,
                data.len() as u64,
                crc32fast::hash(&data),
            )
            .unwrap();
            // Another stream of the same length is told apart by its content.
            let mut other = data.clone();
            other[1000] ^= 1;
            assert!(
                r.confirms(
                    bytes.len() as u64,
                    data.len() as u64,
                    crc32fast::hash(&other)
                )
                .is_err()
            );
            assert!(
                r.confirms(
                    bytes.len() as u64 + 1,
                    data.len() as u64,
                    crc32fast::hash(&data)
                )
                .is_err()
            );
        }
    }

    #[test]
    fn a_damaged_stream_is_refused() {
        let data = sample();
        let crc = crc32fast::hash(&data);
        for codec in Codec::ALL {
            let mut bytes = compress(codec, &data);
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
            let refused = match write_through(codec, &bytes) {
                Err(_) => true,
                Ok(r) => r
                    .confirms(bytes.len() as u64, data.len() as u64, crc)
                    .is_err(),
            };
            assert!(refused, "{} with a flipped byte passed", codec.name());
            // Stray bytes after the stream.
            let mut bytes = compress(codec, &data);
            bytes.extend_from_slice(b"garbage");
            let refused = match write_through(codec, &bytes) {
                Err(_) => true,
                Ok(r) => r
                    .confirms(bytes.len() as u64 - 7, data.len() as u64, crc)
                    .is_err(),
            };
            assert!(refused, "{} with trailing garbage passed", codec.name());
        }
    }

    #[test]
    fn the_queued_proof_reads_the_stream_not_the_file() {
        let data = sample();
        let crc = crc32fast::hash(&data);
        for codec in Codec::ALL {
            let bytes = compress(codec, &data);
            // What goes below may be anything (an encryption): the proof sees the stream.
            let (proof, mut published) = Proof::start_queued(codec, Vec::new(), None).unwrap();
            for chunk in bytes.chunks(4096) {
                published.write_all(chunk).unwrap();
            }
            assert_eq!(published.into_inner(), bytes);
            let r = proof.finish().unwrap();
            r.confirms(bytes.len() as u64, data.len() as u64, crc)
                .unwrap();
            assert_eq!(r.sha256, sha::hex(&Sha256::digest(&bytes)));
            // A damaged stream is refused as when read back from a file.
            let mut damaged = bytes.clone();
            let mid = damaged.len() / 2;
            damaged[mid] ^= 0x55;
            let (proof, mut published) = Proof::start_queued(codec, io::sink(), None).unwrap();
            for chunk in damaged.chunks(4096) {
                published.write_all(chunk).unwrap();
            }
            let refused = match proof.finish() {
                Err(_) => true,
                Ok(r) => r
                    .confirms(damaged.len() as u64, data.len() as u64, crc)
                    .is_err(),
            };
            assert!(refused, "{} with a flipped byte passed", codec.name());
        }
    }

    #[test]
    fn an_abandoned_write_stops_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let (proof, mut published) = Proof::start(&path, Codec::Gzip, file, None).unwrap();
        published.write_all(&[0x1f, 0x8b, 8, 0]).unwrap();
        // Dropped before the end of the stream: the reader waits no longer.
        drop(proof);
    }
}

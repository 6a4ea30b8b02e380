//! The two compressions of a dump: gzip (`full-….sql.gz`, the default) and zstd
//! (`full-….sql.zst`). Everything that reads dumps asks the file's name which one it is.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::seal::Keyring;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Gzip, Codec::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The extension after the stem: `sql.gz`, `sql.zst`.
    pub fn ext(self) -> &'static str {
        match self {
            Codec::Gzip => "sql.gz",
            Codec::Zstd => "sql.zst",
        }
    }

    /// `.sql.gz`, `.sql.zst`: what a dump's name ends with.
    pub fn suffix(self) -> &'static str {
        match self {
            Codec::Gzip => ".sql.gz",
            Codec::Zstd => ".sql.zst",
        }
    }

    /// The codec a dump's file name says.
    pub fn of_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| name.ends_with(c.suffix()))
    }

    pub fn of_path(path: &Path) -> Codec {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(Codec::of_name)
            .unwrap_or(Codec::Gzip)
    }

    /// The shell command that decompresses to stdout (for the runbook and `--dry-run`).
    pub fn cat(self) -> &'static str {
        match self {
            Codec::Gzip => "gunzip -c",
            Codec::Zstd => "zstd -dc",
        }
    }

    /// A decompressing reader over `r`.
    pub fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        let r = io::BufReader::with_capacity(1 << 20, r);
        Ok(match self {
            Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Codec::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
                // Dumps written with `zstd-long` use a 128 MiB window.
                d.window_log_max(31)?;
                Box::new(d)
            }
        })
    }

    /// The decompressed content of the dump at `path`, decompressed ahead on a thread of its
    /// own: the import that reads it (filtering, feeding a client) has the other core. An
    /// encrypted dump (`….age`) is decrypted with `key` on the same thread.
    pub fn open(path: &Path, key: Option<&Keyring>) -> io::Result<Ahead> {
        let form = Form::of_path(path);
        let file = std::fs::File::open(path)?;
        let key = match (form.sealed, key) {
            (false, _) => None,
            (true, Some(k)) => Some(std::sync::Arc::clone(k)),
            (true, None) => {
                return Err(io::Error::other(format!(
                    "{} is encrypted: an identity is needed to read it",
                    path.display()
                )));
            }
        };
        Ok(Ahead::spawn(move || match key {
            Some(k) => form.codec.decoder(super::seal::open(file, &k)?),
            None => form.codec.decoder(file),
        }))
    }
}

/// A dump's file form: its compression, and whether it is encrypted to age recipients
/// (`full-….sql.zst.age`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Form {
    pub codec: Codec,
    pub sealed: bool,
}

impl Form {
    pub const ALL: [Form; 4] = [
        Form::plain(Codec::Gzip),
        Form::plain(Codec::Zstd),
        Form {
            codec: Codec::Gzip,
            sealed: true,
        },
        Form {
            codec: Codec::Zstd,
            sealed: true,
        },
    ];

    pub const fn plain(codec: Codec) -> Form {
        Form {
            codec,
            sealed: false,
        }
    }

    /// What a dump's name ends with: `.sql.gz`, `.sql.zst.age`, …
    pub fn suffix(self) -> &'static str {
        match (self.codec, self.sealed) {
            (Codec::Gzip, false) => ".sql.gz",
            (Codec::Zstd, false) => ".sql.zst",
            (Codec::Gzip, true) => ".sql.gz.age",
            (Codec::Zstd, true) => ".sql.zst.age",
        }
    }

    /// The extension after the stem (the suffix without its first dot).
    pub fn ext(self) -> &'static str {
        &self.suffix()[1..]
    }

    /// The form a dump's file name says.
    pub fn of_name(name: &str) -> Option<Form> {
        Form::ALL.into_iter().find(|f| name.ends_with(f.suffix()))
    }

    pub fn of_path(path: &Path) -> Form {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(Form::of_name)
            .unwrap_or(Form::plain(Codec::Gzip))
    }

    /// The shell pipeline that decrypts `file` (with the identity file `key`) and
    /// decompresses it to stdout, for the runbook and `--dry-run` (both already quoted).
    pub fn cat(self, key: &str, file: &str) -> String {
        match self.sealed {
            true => format!("age -d -i {key} {file} | {}", self.codec.cat()),
            false => format!("{} {file}", self.codec.cat()),
        }
    }
}

/// How much one piece of decompressed stream holds, and how many may wait to be read.
const PIECE: usize = 1 << 20;
const WAITING: usize = 4;

/// A reader whose source is read on another thread, a few pieces ahead (at most
/// `WAITING + 2` MiB in memory). Dropping it stops the thread.
pub struct Ahead {
    pieces: Receiver<io::Result<Vec<u8>>>,
    spent: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    thread: Option<JoinHandle<()>>,
}

impl Ahead {
    pub fn spawn<F>(open: F) -> Ahead
    where
        F: FnOnce() -> io::Result<Box<dyn Read>> + Send + 'static,
    {
        let (tx, pieces) = sync_channel::<io::Result<Vec<u8>>>(WAITING);
        let (spent, recycled) = sync_channel::<Vec<u8>>(WAITING + 2);
        let thread = std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || {
                let mut source = match open() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut buf = recycled.try_recv().unwrap_or_default();
                    buf.resize(PIECE, 0);
                    let mut filled = 0;
                    let result = loop {
                        match source.read(&mut buf[filled..]) {
                            Ok(0) => break Ok(()),
                            Ok(n) => {
                                filled += n;
                                if filled == PIECE {
                                    break Ok(());
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    buf.truncate(filled);
                    let last = filled < PIECE || result.is_err();
                    if filled > 0 && tx.send(Ok(buf)).is_err() {
                        return;
                    }
                    if let Err(e) = result {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    if last {
                        return;
                    }
                }
            });
        Ahead {
            pieces,
            spent,
            current: Vec::new(),
            at: 0,
            // Without a thread the channel is closed at once: the stream reads as an error.
            thread: thread.ok(),
        }
    }
}

impl Read for Ahead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.pieces.recv() {
                Ok(Ok(piece)) => {
                    let spent = std::mem::replace(&mut self.current, piece);
                    let _ = self.spent.try_send(spent);
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) if self.thread.is_none() => {
                    return Err(io::Error::other("cannot start a decompression thread"));
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // Closing the channel stops the thread at its next piece.
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.pieces, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_reads_the_whole_stream_in_order() {
        let data: Vec<u8> = (0..3 * PIECE + 12345).map(|i| (i % 251) as u8).collect();
        let source = data.clone();
        let mut back = Vec::new();
        Ahead::spawn(move || Ok(Box::new(io::Cursor::new(source))))
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn ahead_passes_the_error_after_the_good_part() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        io::Write::write_all(&mut gz, &vec![7u8; 3 * PIECE]).unwrap();
        let mut bytes = gz.finish().unwrap();
        let n = bytes.len();
        bytes.truncate(n - 4); // the length in the trailer is gone
        let mut r = Ahead::spawn(move || Codec::Gzip.decoder(io::Cursor::new(bytes)));
        let mut back = Vec::new();
        assert!(r.read_to_end(&mut back).is_err());
    }

    #[test]
    fn dropping_it_early_stops_the_thread() {
        let mut r = Ahead::spawn(|| Ok(Box::new(io::repeat(1))));
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        drop(r); // joins: must not hang on an endless source
    }
}

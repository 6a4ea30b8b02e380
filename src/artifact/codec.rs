//! The two compressions of a dump: gzip (`full-….sql.gz`, the default) and zstd
//! (`full-….sql.zst`). Everything that reads dumps asks the file's name which one it is.

use std::io::{self, Read};
use std::path::Path;

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

    /// The decompressed content of the dump at `path`.
    pub fn open(path: &Path) -> io::Result<Box<dyn Read>> {
        Codec::of_path(path).decoder(std::fs::File::open(path)?)
    }
}

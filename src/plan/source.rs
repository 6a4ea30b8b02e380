//! Plan files as loaded: each file's display path and text, addressed by `Span`.

use std::path::{Path, PathBuf};

use super::PlanError;

/// A byte range in one loaded file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: usize,
    pub offset: usize,
    pub len: usize,
}

pub struct SourceFile {
    /// The path as the user named it (relative paths stay relative in diagnostics).
    pub path: PathBuf,
    pub text: String,
}

#[derive(Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
}

/// Where a span starts, 1-based, with the text of that line.
pub struct Location<'a> {
    pub path: &'a Path,
    pub line: usize,
    pub col: usize,
    pub line_text: &'a str,
    /// Width of the span on that line, in characters (at least 1).
    pub width: usize,
}

/// The largest plan file ops-run reads (a plan is a few KiB).
pub const MAX_PLAN_BYTES: u64 = 4 << 20;

/// Reads a regular file of at most `limit` bytes: a device, a FIFO or a huge file is refused
/// instead of read for ever.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, PlanError> {
    read_limited(path, limit).map_err(PlanError::Read)
}

/// A regular file of at most `limit` bytes. Opened without blocking, so a FIFO or a device
/// named as a plan or env file is refused instead of waiting for a writer.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > limit {
        return Err(format!(
            "{} is larger than {} KiB, more than ops-run reads",
            path.display(),
            limit / 1024
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{} grew past {} KiB while read",
            path.display(),
            limit / 1024
        ));
    }
    Ok(bytes)
}

impl Sources {
    /// Loads `path`: a single `.kdl` file, or every `*.kdl` file directly in a folder, by name.
    pub fn load(path: &Path) -> Result<Sources, PlanError> {
        Sources::read(path).map_err(PlanError::Read)
    }

    fn read(path: &Path) -> Result<Sources, String> {
        let mut paths = Vec::new();
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read plans at {}: {e}", path.display()))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| format!("cannot read plans folder {}: {e}", path.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let p = entry.path();
                if p.extension().is_some_and(|x| x == "kdl") && p.is_file() {
                    paths.push(p);
                }
            }
            paths.sort();
            if paths.is_empty() {
                return Err(format!("no *.kdl plan files in {}", path.display()));
            }
        } else {
            paths.push(path.to_path_buf());
        }
        let mut sources = Sources::default();
        for p in paths {
            let bytes = read_limited(&p, MAX_PLAN_BYTES)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let before = &bytes[..at];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                let start = before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
                format!(
                    "{}:{line}:{col}: not UTF-8 (byte 0x{:02x}); plan files are UTF-8 text",
                    p.display(),
                    bytes[at]
                )
            })?;
            sources.files.push(SourceFile { path: p, text });
        }
        Ok(sources)
    }

    pub fn add(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> usize {
        self.files.push(SourceFile {
            path: path.into(),
            text: text.into(),
        });
        self.files.len() - 1
    }

    pub fn text(&self, span: Span) -> &str {
        let text = &self.files[span.file].text;
        let end = (span.offset + span.len).min(text.len());
        text.get(span.offset.min(end)..end).unwrap_or("")
    }

    pub fn locate(&self, span: Span) -> Location<'_> {
        let file = &self.files[span.file];
        let text = file.text.as_str();
        let offset = floor_char_boundary(text, span.offset.min(text.len()));
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line = text[..offset].matches('\n').count() + 1;
        let col = text[line_start..offset].chars().count() + 1;
        let span_end = floor_char_boundary(text, (span.offset + span.len).min(line_end));
        let width = text[offset..span_end.max(offset)].chars().count().max(1);
        Location {
            path: &file.path,
            line,
            col,
            line_text: text[line_start..line_end].trim_end_matches('\r'),
            width,
        }
    }
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

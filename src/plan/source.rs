//! Plan files as loaded: each file's display path and text, addressed by `Span`.

use std::path::{Path, PathBuf};

/// A byte range in one loaded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

impl Sources {
    /// Loads `path`: a single `.kdl` file, or every `*.kdl` file directly in a folder, by name.
    pub fn load(path: &Path) -> Result<Sources, String> {
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
            let text = std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
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

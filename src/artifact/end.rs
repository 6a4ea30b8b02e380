//! The last few KiB of a stream, to find an engine's completion line in a dump.

/// How much of the end of a stream is kept.
pub const END_BYTES: usize = 4096;

#[derive(Default)]
pub struct StreamEnd(Vec<u8>);

impl StreamEnd {
    pub fn push(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
        if self.0.len() > 2 * END_BYTES {
            let cut = self.0.len() - END_BYTES;
            self.0.drain(..cut);
        }
    }

    /// Whether the stream ends with the completion line: `marker` on a line, and after its
    /// last occurrence nothing but blank lines, SQL comments (pg_dump closes with `--` lines)
    /// and pg_dump's closing `\unrestrict KEY` (PostgreSQL 13.22/14.19/15.14/16.10/17.6 and
    /// later). A stream that goes on with statements after the marker is not complete.
    pub fn contains(&self, marker: &str) -> bool {
        let text = String::from_utf8_lossy(&self.0);
        let Some(at) = text.rfind(marker) else {
            return false;
        };
        let rest = &text[at + marker.len()..];
        // The rest of the marker's own line may hold anything (a date), the lines after only
        // comments.
        rest.split_once('\n').is_none_or(|(_, after)| {
            after
                .lines()
                .map(str::trim)
                .all(|l| l.is_empty() || l.starts_with("--") || l.starts_with("\\unrestrict "))
        })
    }
}

/// A writer that keeps the end of what passes through it.
pub struct TeeEnd<'a, W: std::io::Write + ?Sized> {
    pub end: &'a mut StreamEnd,
    pub inner: &'a mut W,
}

impl<W: std::io::Write + ?Sized> std::io::Write for TeeEnd<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.end.push(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(text: &str) -> StreamEnd {
        let mut e = StreamEnd::default();
        e.push(text.as_bytes());
        e
    }

    #[test]
    fn the_completion_line_must_close_the_stream() {
        let pg = "-- PostgreSQL database dump complete";
        assert!(end(&format!("COPY …\\.\n\n--\n{pg}\n--\n\n")).contains(pg));
        assert!(end(&format!("--\n{pg}\n--\n\n\\unrestrict wq8vvchw9nSM\n\n")).contains(pg));
        let my = "-- Dump completed";
        assert!(end(&format!("UNLOCK TABLES;\n{my} on 2026-11-28 12:00:00\n")).contains(my));
        assert!(end(&format!("x\n{my} on 2026-11-28")).contains(my));
        // Marker, then a statement cut in half: not complete.
        assert!(!end(&format!("{pg}\nINSERT INTO t VALUES (1, 'half")).contains(pg));
        assert!(!end(&format!("{my} on x\nINSERT INTO t VALUES (2);\n")).contains(my));
        assert!(!end("INSERT INTO t VALUES (1);\n").contains(pg));
    }
}

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

    pub fn contains(&self, marker: &str) -> bool {
        String::from_utf8_lossy(&self.0).contains(marker)
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

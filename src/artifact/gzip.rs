//! Block-parallel gzip, as pigz does: the input is cut into blocks, each deflated on its own
//! thread and ended with a sync flush, and the pieces are written in order behind one gzip
//! header; a final empty block and the CRC-32/ISIZE trailer close the member. The result is an
//! ordinary gzip file. Memory is bounded: at most `2 × threads` blocks are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

pub const BLOCK: usize = 1 << 20;

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

pub struct ParallelGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    total_in: u64,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    ready: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    next_write: u64,
    max_in_flight: u64,
    workers: Vec<JoinHandle<()>>,
}

/// Deflates one block as raw deflate, ending on a byte boundary (sync flush, not final).
fn deflate_block(level: u32, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        let done = c.total_in() as usize == data.len() && out.len() < out.capacity();
        if done || status == Status::StreamEnd {
            return Ok(out);
        }
    }
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<ParallelGzip<W>> {
        // Header: magic, deflate, no flags, no mtime, no extra flags, OS = Unix.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
        let threads = threads.max(1);
        let max_in_flight = (threads * 2) as u64;
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(threads * 2);
        let (done_tx, results) = std::sync::mpsc::channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let workers = (0..threads)
            .map(|_| {
                let jobs_rx = Arc::clone(&jobs_rx);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = match jobs_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((seq, data)) = job else { return };
                        if done_tx.send((seq, deflate_block(level, &data))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Ok(ParallelGzip {
            inner,
            block: Vec::with_capacity(BLOCK),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            jobs: Some(jobs_tx),
            results,
            ready: BTreeMap::new(),
            next_seq: 0,
            next_write: 0,
            max_in_flight,
            workers,
        })
    }

    /// Writes finished blocks in order; waits for one when `wait` is set.
    fn drain(&mut self, wait: bool) -> io::Result<()> {
        if wait {
            let (seq, data) = self
                .results
                .recv()
                .map_err(|_| io::Error::other("a compression thread died"))?;
            self.ready.insert(seq, data?);
        }
        while let Ok((seq, data)) = self.results.try_recv() {
            self.ready.insert(seq, data?);
        }
        while let Some(data) = self.ready.remove(&self.next_write) {
            self.inner.write_all(&data)?;
            self.next_write += 1;
        }
        Ok(())
    }

    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        while self.next_seq - self.next_write >= self.max_in_flight {
            self.drain(true)?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?
            .send((seq, data))
            .map_err(|_| io::Error::other("the compression threads stopped"))?;
        self.drain(false)
    }

    /// Bytes taken in so far (uncompressed).
    pub fn total_in(&self) -> u64 {
        self.total_in
    }

    /// CRC-32 of what was taken in so far.
    pub fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// Ends the member (final empty block, CRC-32, size) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block()?;
        while self.next_write < self.next_seq {
            self.drain(true)?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // An empty final block with fixed codes: BFINAL=1, BTYPE=01, end-of-block.
        self.inner.write_all(&[0x03, 0x00])?;
        let crc = std::mem::take(&mut self.crc).finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner
            .write_all(&(self.total_in as u32).to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.total_in += n as u64;
        if self.block.len() == BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), 6, threads).unwrap();
        // Uneven writes across block boundaries.
        for chunk in data.chunks(77_777) {
            gz.write_all(chunk).unwrap();
        }
        let out = gz.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        out
    }

    #[test]
    fn output_is_one_valid_gzip_member() {
        let text: Vec<u8> = (0..400_000)
            .flat_map(|i| {
                format!("INSERT INTO t VALUES ({i}, 'row {i}', {});\n", i * 7).into_bytes()
            })
            .collect();
        assert!(text.len() > 5 * BLOCK);
        let out = roundtrip(&text, 3);
        // Within 2% of a single-stream gzip at the same level.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        single.write_all(&text).unwrap();
        let single = single.finish().unwrap();
        let ratio = out.len() as f64 / single.len() as f64;
        assert!(
            ratio < 1.02,
            "parallel {} vs single {} bytes",
            out.len(),
            single.len()
        );
    }

    #[test]
    fn empty_and_tiny_inputs() {
        roundtrip(b"", 2);
        roundtrip(b"x", 1);
        roundtrip(&vec![0u8; BLOCK], 2);
    }
}

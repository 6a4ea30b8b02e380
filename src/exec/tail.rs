//! A bounded tail of a process's output: the last bytes only, never the whole stream.

use super::redact::Redactor;

pub struct Tail {
    cap: usize,
    buf: Vec<u8>,
    dropped: bool,
}

impl Tail {
    /// Keeps `cap` bytes plus room for one split secret, cut off when rendered.
    pub fn new(cap: usize) -> Tail {
        Tail {
            cap,
            buf: Vec::with_capacity(cap.min(64 * 1024)),
            dropped: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8], slack: usize) {
        let limit = self.cap + slack;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > limit {
            let cut = self.buf.len() - limit;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }

    /// The redacted tail: when output was dropped, the first partial line (which may hold the
    /// end of a secret cut in half) is removed too.
    pub fn render(&self, redactor: &Redactor) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        let mut text: &str = &text;
        if self.dropped {
            let skip = redactor.longest().max(1).min(text.len());
            let mut at = skip;
            while at < text.len() && !text.is_char_boundary(at) {
                at += 1;
            }
            text = &text[at..];
            if let Some(nl) = text.find('\n') {
                text = &text[nl + 1..];
            }
        }
        let redacted = redactor.redact(text);
        let keep_from = redacted.len().saturating_sub(self.cap);
        let mut start = keep_from;
        while start < redacted.len() && !redacted.is_char_boundary(start) {
            start += 1;
        }
        let body = &redacted[start..];
        if self.dropped || start > 0 {
            format!("[… earlier output dropped]\n{body}")
        } else {
            body.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_end() {
        let mut t = Tail::new(10);
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes(), 0);
        }
        let out = t.render(&Redactor::default());
        assert!(out.ends_with("line 99\n"), "{out}");
        assert!(!out.contains("line 1\n"));
        assert!(out.starts_with("[… earlier output dropped]"));
    }

    #[test]
    fn a_secret_split_by_the_cut_does_not_leak() {
        let r = Redactor::new(["SUPERSECRETVALUE".to_string()]);
        let mut t = Tail::new(20);
        t.push(
            b"xxxxxxxxxxxxxxxxxxxxxxxxxSUPERSECRETVALUE tail\nnext line\n",
            r.longest(),
        );
        let out = t.render(&r);
        assert!(!out.contains("VALUE"), "{out}");
        assert!(out.contains("next line"));
    }
}

//! Encryption of dumps to public keys, in the age format (`….sql.zst.age`): the backup host
//! holds only recipients (`age1…`) and cannot read what it wrote; verify, drill and restore
//! decrypt with an identity (an `age-keygen` file) given to them alone. The files are
//! ordinary age files: `age -d -i KEY` decrypts them, and ops-run reads files `age -r` made.

use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use age::x25519;

/// What an encrypted file's name ends with, after its compression's extension.
pub const SUFFIX: &str = ".age";

/// Whether a file (a dump, a base, an archived WAL file) is encrypted, by its name.
pub fn sealed(path: &Path) -> bool {
    path.as_os_str()
        .as_encoded_bytes()
        .ends_with(SUFFIX.as_bytes())
}

/// One recipient: an age X25519 public key, `age1…`.
pub fn recipient(text: &str) -> Result<x25519::Recipient, String> {
    let text = text.trim();
    x25519::Recipient::from_str(text).map_err(|why| {
        let shown: String = text.chars().take(12).collect();
        format!("`{shown}…` is not an age recipient ({why}); expected a public key `age1…` as age-keygen prints it")
    })
}

/// The recipients of a recipients file as `age -R` reads it: one `age1…` per line, `#`
/// comments and blank lines ignored.
pub fn recipients_file(text: &str) -> Result<Vec<x25519::Recipient>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(recipient(line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    if out.is_empty() {
        return Err("it names no recipient".into());
    }
    Ok(out)
}

/// The recipients written in a plan and those of its recipients files (read now: a file that
/// is gone is an error, never skipped).
pub fn resolve(written: &[&str], files: &[&str]) -> Result<Vec<x25519::Recipient>, String> {
    let mut out = Vec::new();
    for r in written {
        out.push(recipient(r)?);
    }
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the recipients file {f}: {e}"))?;
        out.extend(recipients_file(&text).map_err(|e| format!("the recipients file {f}: {e}"))?);
    }
    Ok(out)
}

/// The public keys (`age1…`) of the X25519 identities of an identity file.
pub fn public_keys(text: &str) -> Vec<String> {
    secret_lines(text)
        .filter_map(|l| x25519::Identity::from_str(l).ok())
        .map(|i| i.to_public().to_string())
        .collect()
}

/// The identities that decrypt: an identity file as `age-keygen` writes it (comments
/// allowed, one `AGE-SECRET-KEY-1…` per line).
pub struct Key(Vec<Box<dyn age::Identity + Send + Sync>>);

/// A key shared by the threads of one import (each reader of the dump decrypts on its own).
pub type Keyring = Arc<Key>;

impl Key {
    pub fn parse(text: &str) -> Result<Key, String> {
        let file = age::IdentityFile::from_buffer(io::BufReader::new(text.as_bytes()))
            .map_err(|e| format!("not an age identity file: {e}"))?;
        let ids = file
            .into_identities()
            .map_err(|e| format!("not an age identity file: {e}"))?;
        if ids.is_empty() {
            return Err("not an age identity file: it holds no AGE-SECRET-KEY-1… line".into());
        }
        Ok(Key(ids))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} identities)", self.0.len())
    }
}

/// The lines of an identity file that must never be printed (the secret keys), for the
/// redactor.
pub fn secret_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
}

/// A writer that encrypts to `recipients` into `out`; `finish` it, or the file is truncated
/// (and fails to decrypt, which is what a half-written file should do).
pub fn seal<W: Write>(
    out: W,
    recipients: &[x25519::Recipient],
) -> io::Result<age::stream::StreamWriter<W>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
    encryptor.wrap_output(out)
}

/// The plaintext of the age stream `input`, with `key`.
pub fn open<R: Read + 'static>(input: R, key: &Key) -> io::Result<Box<dyn Read>> {
    let decryptor = age::Decryptor::new_buffered(io::BufReader::with_capacity(1 << 20, input))
        .map_err(|e| io::Error::other(format!("not an age file: {e}")))?;
    let reader = decryptor
        .decrypt(key.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => io::Error::other(
                "the identity does not decrypt this dump (it was encrypted to other recipients)",
            ),
            other => io::Error::other(format!("cannot decrypt: {other}")),
        })?;
    Ok(Box::new(reader))
}

/// Whether the first bytes of `input` are an age header (without any key).
pub fn looks_sealed(mut input: impl BufRead) -> bool {
    let mut start = [0u8; 21];
    input.read_exact(&mut start).is_ok() && &start == b"age-encryption.org/v1"
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn what_is_sealed_opens_with_the_identity_only() {
        let id = x25519::Identity::generate();
        let other = x25519::Identity::generate();
        let mut w = seal(Vec::new(), &[id.to_public()]).unwrap();
        w.write_all(b"INSERT INTO t VALUES (1);\n").unwrap();
        let sealed = w.finish().unwrap();
        assert!(looks_sealed(&sealed[..]));
        assert!(!sealed.windows(6).any(|w| w == b"INSERT"));
        let key = Key::parse(&format!(
            "# a comment\n{}\n",
            id.to_string().expose_secret()
        ))
        .unwrap();
        let mut back = String::new();
        open(io::Cursor::new(sealed.clone()), &key)
            .unwrap()
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "INSERT INTO t VALUES (1);\n");
        let wrong = Key::parse(other.to_string().expose_secret()).unwrap();
        let e = open(io::Cursor::new(sealed.clone()), &wrong).err().unwrap();
        assert!(e.to_string().contains("other recipients"), "{e}");
        // A flipped byte in the payload fails the read, not silently.
        let mut damaged = sealed;
        let at = damaged.len() - 5;
        damaged[at] ^= 1;
        let mut out = Vec::new();
        assert!(
            open(io::Cursor::new(damaged), &key)
                .and_then(|mut r| r.read_to_end(&mut out))
                .is_err()
        );
    }

    #[test]
    fn recipients_are_checked() {
        let id = x25519::Identity::generate();
        let r = id.to_public().to_string();
        assert!(recipient(&r).is_ok());
        assert!(
            recipient("age1nope")
                .unwrap_err()
                .contains("not an age recipient")
        );
        let file = format!("# team\n\n{r}\n");
        assert_eq!(recipients_file(&file).unwrap().len(), 1);
        assert!(recipients_file("# nothing\n").is_err());
        assert!(
            recipients_file(&format!("{r}\nbad\n"))
                .unwrap_err()
                .starts_with("line 2")
        );
        assert!(Key::parse("# only a comment\n").is_err());
        assert_eq!(secret_lines("# c\nAGE-SECRET-KEY-1ABC\n").count(), 1);
        let secret = id.to_string();
        assert_eq!(public_keys(secret.expose_secret()).first(), Some(&r));
        assert!(
            resolve(&[&r], &["/nonexistent/recipients"])
                .unwrap_err()
                .contains("cannot read")
        );
    }
}

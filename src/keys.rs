//! Key text and key files: the base64 form of Ed25519 host keys that `hipbone genkey`,
//! `pubkey` and `hit` read and print (WireGuard's habit: standard base64 with padding of the
//! 32 raw key bytes, one key per line), and the private key files the node loads.
//!
//! Contract:
//! - Parsing accepts exactly one base64 word of 32 bytes, with any surrounding whitespace,
//!   and never echoes the input back: a [`KeyError`] names what was expected and what was
//!   wrong (empty, not base64, how many bytes), never the text itself.
//! - Buffers that hold private key bytes or their base64 are zeroized when dropped.
//! - [`write_key_file`] creates the file atomically with mode 0600 and never replaces an
//!   existing file; [`read_key_file`] refuses a file that group or others may access, as ssh
//!   does.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hip::{HostIdentity, PublicIdentity};
use zeroize::Zeroizing;

/// Length of an Ed25519 private (seed) or public key in bytes.
pub const KEY_LEN: usize = 32;

/// The longest key text (including whitespace) that is read or parsed. A key is 44
/// characters; anything near this bound is not a key, and reading stops here.
pub const MAX_KEY_TEXT: usize = 1024;

/// Which kind of key was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Private,
    Public,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Private => "private",
            KeyKind::Public => "public",
        })
    }
}

/// Where key text came from, so that an error can say where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A string handed to [`parse_private_key`] or [`parse_public_key`].
    Text,
    /// The process's standard input.
    Stdin,
    /// A key file.
    File(PathBuf),
}

impl fmt::Display for KeyOrigin {
    /// Renders as a phrase that follows "expected a … key": empty, " on stdin", " in PATH".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Text => Ok(()),
            KeyOrigin::Stdin => f.write_str(" on stdin"),
            KeyOrigin::File(path) => write!(f, " in {}", path.display()),
        }
    }
}

/// What was wrong with key text. Never carries the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// Nothing but whitespace.
    Empty,
    /// More than [`MAX_KEY_TEXT`] bytes.
    TooLong,
    /// More than one whitespace-separated word.
    ExtraText,
    /// Not UTF-8, or not standard padded base64.
    NotBase64,
    /// Valid base64 of this many bytes instead of [`KEY_LEN`].
    WrongLength(usize),
    /// 32 bytes that do not encode a point on Ed25519 (public keys only).
    NotAPoint,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Empty => f.write_str("the input is empty"),
            KeyProblem::TooLong => write!(f, "the input is longer than {MAX_KEY_TEXT} bytes"),
            KeyProblem::ExtraText => f.write_str("the input has more than one word"),
            KeyProblem::NotBase64 => f.write_str("the input is not valid base64"),
            KeyProblem::WrongLength(n) => write!(f, "it decodes to {n} bytes"),
            KeyProblem::NotAPoint => f.write_str("it is not a valid Ed25519 point"),
        }
    }
}

/// Errors of key parsing and key files.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// Key text that is not a base64-encoded 32-byte key of the expected kind.
    Malformed {
        kind: KeyKind,
        origin: KeyOrigin,
        problem: KeyProblem,
    },
    /// `write_key_file` found a file (or anything else) already at the path.
    AlreadyExists { path: PathBuf },
    /// No key file at the path.
    NotFound { path: PathBuf },
    /// The path names a directory, device, FIFO, ... rather than a regular file.
    NotARegularFile { path: PathBuf },
    /// The key file may be read or written by group or others.
    Unprotected { path: PathBuf, mode: u32 },
    /// Any other I/O failure; `action` says what was being done ("reading", "writing", ...).
    Io {
        action: &'static str,
        path: Option<PathBuf>,
        source: io::Error,
    },
}

impl KeyError {
    /// Relabels a [`KeyError::Malformed`] with where its text came from; other errors pass
    /// through unchanged.
    pub fn with_origin(self, origin: KeyOrigin) -> KeyError {
        match self {
            KeyError::Malformed { kind, problem, .. } => KeyError::Malformed {
                kind,
                origin,
                problem,
            },
            other => other,
        }
    }

    fn io(action: &'static str, path: &Path, source: io::Error) -> KeyError {
        KeyError::Io {
            action,
            path: Some(path.to_owned()),
            source,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Malformed {
                kind,
                origin,
                problem,
            } => write!(
                f,
                "expected a base64-encoded {KEY_LEN}-byte Ed25519 {kind} key{origin}, but {problem}"
            ),
            KeyError::AlreadyExists { path } => write!(
                f,
                "{} already exists; refusing to overwrite it (a stored key would be lost)",
                path.display()
            ),
            KeyError::NotFound { path } => write!(f, "no key file at {}", path.display()),
            KeyError::NotARegularFile { path } => {
                write!(f, "{} is not a regular file", path.display())
            }
            KeyError::Unprotected { path, mode } => write!(
                f,
                "permissions {mode:04o} for key file {} are too open: a private key must not be \
                 accessible by group or others; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
            // The io::Error itself is the `source()`; callers print the chain.
            KeyError::Io {
                action,
                path: Some(path),
                ..
            } => write!(f, "{action} {}", path.display()),
            KeyError::Io {
                action, path: None, ..
            } => f.write_str(action),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Decodes one base64 word of exactly [`KEY_LEN`] bytes into a zeroizing buffer.
fn decode_key(text: &str, kind: KeyKind) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let malformed = |problem| KeyError::Malformed {
        kind,
        origin: KeyOrigin::Text,
        problem,
    };
    if text.len() > MAX_KEY_TEXT {
        return Err(malformed(KeyProblem::TooLong));
    }
    let mut words = text.split_whitespace();
    let word = words.next().ok_or(malformed(KeyProblem::Empty))?;
    if words.next().is_some() {
        return Err(malformed(KeyProblem::ExtraText));
    }
    // Room for anything `word` can decode to, so the length can be reported; zeroized
    // because a private key passes through it.
    let mut buf = Zeroizing::new(vec![0u8; word.len() / 4 * 3 + 3]);
    let n = STANDARD
        .decode_slice(word, &mut buf[..])
        .map_err(|_| malformed(KeyProblem::NotBase64))?;
    if n != KEY_LEN {
        return Err(malformed(KeyProblem::WrongLength(n)));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&buf[..KEY_LEN]);
    Ok(key)
}

/// Parses a base64 Ed25519 private key (the 32-byte RFC 8032 secret).
pub fn parse_private_key(text: &str) -> Result<HostIdentity, KeyError> {
    let secret = decode_key(text, KeyKind::Private)?;
    Ok(HostIdentity::from_secret(*secret))
}

/// Parses a base64 Ed25519 public key; refuses 32 bytes that are not a curve point.
pub fn parse_public_key(text: &str) -> Result<PublicIdentity, KeyError> {
    let public = decode_key(text, KeyKind::Public)?;
    PublicIdentity::from_public_bytes(*public).map_err(|_| KeyError::Malformed {
        kind: KeyKind::Public,
        origin: KeyOrigin::Text,
        problem: KeyProblem::NotAPoint,
    })
}

/// The base64 text of a private key, zeroized when dropped.
pub fn encode_private(identity: &HostIdentity) -> Zeroizing<String> {
    let secret = identity.secret_bytes();
    // 44 characters: reserve them so encoding never reallocates and leaves a copy behind.
    let mut text = Zeroizing::new(String::with_capacity(base64_len(KEY_LEN)));
    STANDARD.encode_string(&secret[..], &mut text);
    text
}

/// The base64 text of a public key.
pub fn encode_public(identity: &PublicIdentity) -> String {
    STANDARD.encode(identity.public_bytes())
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Reads at most [`MAX_KEY_TEXT`] + 1 bytes into a zeroizing buffer.
fn read_bounded(reader: impl Read) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_TEXT + 1));
    reader.take(MAX_KEY_TEXT as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads key text from `reader` (up to [`MAX_KEY_TEXT`] bytes) and parses it with `parse`;
/// `origin` names the reader in errors.
fn read_key<T>(
    reader: impl Read,
    origin: KeyOrigin,
    kind: KeyKind,
    parse: impl FnOnce(&str) -> Result<T, KeyError>,
) -> Result<T, KeyError> {
    let action = match origin {
        KeyOrigin::File(_) => "reading",
        _ => "reading standard input",
    };
    let buf = read_bounded(reader).map_err(|source| match &origin {
        KeyOrigin::File(path) => KeyError::io(action, path, source),
        _ => KeyError::Io {
            action,
            path: None,
            source,
        },
    })?;
    let text = std::str::from_utf8(&buf).map_err(|_| KeyError::Malformed {
        kind,
        origin: origin.clone(),
        problem: KeyProblem::NotBase64,
    })?;
    parse(text).map_err(|e| e.with_origin(origin))
}

/// Reads a base64 private key from `reader` (standard input, usually).
pub fn read_private_key(reader: impl Read, origin: KeyOrigin) -> Result<HostIdentity, KeyError> {
    read_key(reader, origin, KeyKind::Private, parse_private_key)
}

/// Reads a base64 public key from `reader` (standard input, usually).
pub fn read_public_key(reader: impl Read, origin: KeyOrigin) -> Result<PublicIdentity, KeyError> {
    read_key(reader, origin, KeyKind::Public, parse_public_key)
}

/// Removes a temporary file unless disarmed.
struct TempGuard<'a>(Option<&'a Path>);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes `identity`'s private key to a new file at `path`, mode 0600, atomically: the key
/// goes to a temporary file in the same directory (created 0600, fsynced), which is then
/// linked into place. Refuses if anything already exists at `path`.
///
/// Linking (instead of `rename`) makes the no-overwrite rule race-free: `link(2)` fails if
/// the target exists, where `rename(2)` would silently replace a key created meanwhile. On
/// filesystems without hard links it falls back to check-then-rename.
pub fn write_key_file(path: &Path, identity: &HostIdentity) -> Result<(), KeyError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(KeyError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| KeyError::NotARegularFile {
        path: path.to_owned(),
    })?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| KeyError::io("writing", path, e))?;
    let mut guard = TempGuard(Some(&temp));

    let mut line = Zeroizing::new(String::with_capacity(base64_len(KEY_LEN) + 1));
    line.push_str(&encode_private(identity));
    line.push('\n');
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError::io("writing", path, e))?;
    drop(file);

    match fs::hard_link(&temp, path) {
        Ok(()) => {} // `guard` removes the temporary name.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyError::AlreadyExists {
                path: path.to_owned(),
            })
        }
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(KeyError::AlreadyExists {
                    path: path.to_owned(),
                });
            }
            fs::rename(&temp, path).map_err(|e| KeyError::io("writing", path, e))?;
            guard.0 = None; // Renamed: nothing left to remove.
        }
    }
    drop(guard);
    // Make the new directory entry durable too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyError::io("syncing directory", dir, e))?;
    tracing::debug!(path = %path.display(), "wrote key file");
    Ok(())
}

/// Reads a private key file written by [`write_key_file`] (or by hand: one base64 key,
/// whitespace allowed). Refuses files that are not regular or whose mode gives group or
/// others any access.
pub fn read_key_file(path: &Path) -> Result<HostIdentity, KeyError> {
    let not_found = || KeyError::NotFound {
        path: path.to_owned(),
    };
    // Checked before opening so that a FIFO or device is never opened (which could block).
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => not_found(),
        _ => KeyError::io("reading", path, e),
    })?;
    check_key_file(path, &meta)?;
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => not_found(),
        _ => KeyError::io("reading", path, e),
    })?;
    // And again on what was actually opened, in case the path changed in between.
    let meta = file
        .metadata()
        .map_err(|e| KeyError::io("reading", path, e))?;
    check_key_file(path, &meta)?;
    read_key(
        file,
        KeyOrigin::File(path.to_owned()),
        KeyKind::Private,
        parse_private_key,
    )
}

fn check_key_file(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    if !meta.is_file() {
        return Err(KeyError::NotARegularFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Unprotected {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// RFC 8032 §7.1 TEST 1.
    const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    use crate::testdir::TempDir;

    /// The error of a call expected to fail (without needing `Debug` on the success type).
    fn err<T>(result: Result<T, KeyError>) -> KeyError {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    fn problem(e: KeyError) -> KeyProblem {
        match e {
            KeyError::Malformed { problem, .. } => problem,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn rfc8032_private_key_gives_its_public_key() {
        let text = b64(&hex32(RFC8032_SECRET));
        let id = parse_private_key(&text).unwrap();
        assert_eq!(id.public().public_bytes(), hex32(RFC8032_PUBLIC));
        assert_eq!(encode_public(id.public()), b64(&hex32(RFC8032_PUBLIC)));
        assert_eq!(*encode_private(&id), text);
    }

    #[test]
    fn public_key_round_trips() {
        let text = b64(&hex32(RFC8032_PUBLIC));
        let public = parse_public_key(&text).unwrap();
        assert_eq!(encode_public(&public), text);
        let id = parse_private_key(&b64(&hex32(RFC8032_SECRET))).unwrap();
        assert_eq!(public.hit(), id.hit());
    }

    #[test]
    fn surrounding_whitespace_is_fine() {
        let text = format!(" \t{}\r\n\n", b64(&hex32(RFC8032_SECRET)));
        assert!(parse_private_key(&text).is_ok());
    }

    #[test]
    fn malformed_text_is_refused_with_the_reason() {
        let key = b64(&hex32(RFC8032_SECRET));
        let cases: Vec<(String, KeyProblem)> = vec![
            (String::new(), KeyProblem::Empty),
            (" \n\t".into(), KeyProblem::Empty),
            ("not-base64!".into(), KeyProblem::NotBase64),
            (key.trim_end_matches('=').into(), KeyProblem::NotBase64),
            (b64(&[7; 31]), KeyProblem::WrongLength(31)),
            (b64(&[7; 33]), KeyProblem::WrongLength(33)),
            (b64(&[]), KeyProblem::Empty),
            (format!("{key} {key}"), KeyProblem::ExtraText),
            (format!("{key}\nx"), KeyProblem::ExtraText),
            ("A".repeat(MAX_KEY_TEXT + 1), KeyProblem::TooLong),
        ];
        for (text, expected) in cases {
            assert_eq!(problem(err(parse_private_key(&text))), expected, "{text:?}");
            assert_eq!(problem(err(parse_public_key(&text))), expected, "{text:?}");
        }
    }

    #[test]
    fn public_key_off_the_curve_is_refused() {
        // y = 2 has no x on edwards25519.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let e = err(parse_public_key(&b64(&bytes)));
        assert_eq!(problem(e), KeyProblem::NotAPoint);
    }

    #[test]
    fn messages_name_what_was_expected_and_never_the_input() {
        let secretish = b64(&[0x5a; 31]);
        let e = err(parse_private_key(&secretish)).with_origin(KeyOrigin::Stdin);
        let msg = e.to_string();
        assert_eq!(
            msg,
            "expected a base64-encoded 32-byte Ed25519 private key on stdin, \
             but it decodes to 31 bytes"
        );
        assert!(!msg.contains(&secretish));
        let e = err(parse_public_key(""));
        assert_eq!(
            e.to_string(),
            "expected a base64-encoded 32-byte Ed25519 public key, but the input is empty"
        );
    }

    #[test]
    fn reader_input_is_bounded_and_utf8_checked() {
        let long = vec![b'A'; 10 * MAX_KEY_TEXT];
        let e = err(read_private_key(&long[..], KeyOrigin::Stdin));
        assert_eq!(problem(e), KeyProblem::TooLong);
        let e = err(read_private_key(&[0xff, 0xfe][..], KeyOrigin::Stdin));
        assert_eq!(problem(e), KeyProblem::NotBase64);
        let text = b64(&hex32(RFC8032_PUBLIC)) + "\n";
        let public = read_public_key(text.as_bytes(), KeyOrigin::Stdin).unwrap();
        assert_eq!(public.public_bytes(), hex32(RFC8032_PUBLIC));
    }

    #[test]
    fn key_file_round_trip_is_0600() {
        let dir = TempDir::new("roundtrip");
        let path = dir.0.join("host.key");
        let id = HostIdentity::from_secret(hex32(RFC8032_SECRET));
        write_key_file(&path, &id).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", b64(&hex32(RFC8032_SECRET)))
        );
        assert_eq!(read_key_file(&path).unwrap().hit(), id.hit());
        // Only the key file is left behind, no temporary.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn key_file_is_never_overwritten() {
        let dir = TempDir::new("overwrite");
        let path = dir.0.join("host.key");
        fs::write(&path, "precious").unwrap();
        let id = HostIdentity::from_secret([1; 32]);
        let e = err(write_key_file(&path, &id));
        assert!(matches!(e, KeyError::AlreadyExists { .. }), "{e:?}");
        assert!(e.to_string().contains(&path.display().to_string()));
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = TempDir::new("mode");
        let path = dir.0.join("host.key");
        write_key_file(&path, &HostIdentity::from_secret([1; 32])).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = err(read_key_file(&path));
            match &e {
                KeyError::Unprotected { mode: m, .. } => assert_eq!(*m, mode),
                other => panic!("expected Unprotected, got {other:?}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&path).is_ok());
    }

    #[test]
    fn key_file_missing_or_not_a_file() {
        let dir = TempDir::new("missing");
        let path = dir.0.join("nope.key");
        let e = err(read_key_file(&path));
        assert!(matches!(e, KeyError::NotFound { .. }), "{e:?}");
        assert!(e.to_string().contains(&path.display().to_string()));
        let e = err(read_key_file(&dir.0));
        assert!(matches!(e, KeyError::NotARegularFile { .. }), "{e:?}");
    }

    #[test]
    fn malformed_key_file_names_the_file() {
        let dir = TempDir::new("malformed");
        let path = dir.0.join("host.key");
        fs::write(&path, "garbage\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let msg = err(read_key_file(&path)).to_string();
        assert!(
            msg.contains(&format!("private key in {}", path.display())),
            "{msg}"
        );
    }
}

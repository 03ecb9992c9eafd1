//! The `hipbone` key commands, run as a user would: the built binary with stdin, stdout,
//! stderr and exit status, composed in pipes the way `wg genkey | wg pubkey` is.

use std::fs;
use std::io::Write;
use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// RFC 8032 §7.1 TEST 1, and the HIT that key has.
const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_HIT: &str = "2001:25:94f8:6e7a:36ad:d203:ed89:625f";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `hipbone ARGS` with `stdin` as standard input; RUST_LOG is cleared so that logs
/// cannot leak into the stderr being checked.
fn hipbone(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hipbone"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before reading everything (e.g. on a usage error).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Runs a command expected to succeed and returns its stdout, trimmed.
fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = hipbone(args, stdin);
    assert!(
        out.status.success(),
        "hipbone {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs a command expected to fail; checks exit status 1 and a single `hipbone: error:`
/// line on stderr, and returns that line.
fn fails(args: &[&str], stdin: &[u8]) -> String {
    let out = hipbone(args, stdin);
    assert_eq!(out.status.code(), Some(1), "hipbone {args:?} should fail");
    assert!(out.stdout.is_empty(), "hipbone {args:?} printed to stdout");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("hipbone: error: "), "{stderr:?}");
    stderr.trim_end().to_owned()
}

fn assert_hit(text: &str) -> Ipv6Addr {
    let addr: Ipv6Addr = text
        .parse()
        .unwrap_or_else(|_| panic!("not IPv6: {text:?}"));
    let first = u32::from_be_bytes(addr.octets()[..4].try_into().unwrap());
    assert_eq!(first >> 4, 0x200_1002, "{addr} is not in 2001:20::/28");
    addr
}

/// A directory under the system temp dir with a unique name, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "hipbone-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn genkey_gives_a_32_byte_key_with_an_orchid_hit() {
    let key = ok(&["genkey"], b"");
    assert_eq!(STANDARD.decode(&key).unwrap().len(), 32);
    let hit = ok(&["hit"], format!("{key}\n").as_bytes());
    assert_hit(&hit);
    // Fresh randomness each time.
    assert_ne!(ok(&["genkey"], b""), key);
}

#[test]
fn hit_of_public_key_equals_hit_of_private_key() {
    let key = ok(&["genkey"], b"");
    let public = ok(&["pubkey"], key.as_bytes());
    assert_eq!(STANDARD.decode(&public).unwrap().len(), 32);
    assert_ne!(public, key);
    let from_private = ok(&["hit"], key.as_bytes());
    let from_public = ok(&["hit", "--public"], public.as_bytes());
    assert_eq!(from_private, from_public);
}

#[test]
fn rfc8032_test_1_vector() {
    let key = STANDARD.encode(hex(RFC8032_SECRET)) + "\n";
    let public = ok(&["pubkey"], key.as_bytes());
    assert_eq!(STANDARD.decode(&public).unwrap(), hex(RFC8032_PUBLIC));
    let hit = ok(&["hit"], key.as_bytes());
    assert_eq!(hit, RFC8032_HIT);
    assert_eq!(assert_hit(&hit), RFC8032_HIT.parse::<Ipv6Addr>().unwrap());
    assert_eq!(ok(&["hit", "--public"], public.as_bytes()), RFC8032_HIT);
}

#[test]
fn surrounding_whitespace_is_accepted() {
    let key = format!("  {}\r\n\n", STANDARD.encode(hex(RFC8032_SECRET)));
    assert_eq!(ok(&["hit"], key.as_bytes()), RFC8032_HIT);
}

#[test]
fn bad_stdin_fails_naming_what_was_expected() {
    let key = STANDARD.encode(hex(RFC8032_SECRET));
    let short = STANDARD.encode([7u8; 31]);
    let extra = format!("{key} extra");
    let cases: [&[u8]; 7] = [
        b"",
        b"\n",
        b"this is not a key",
        b"@@@@",
        short.as_bytes(),
        extra.as_bytes(),
        &[0xff, 0xfe, 0x00],
    ];
    for stdin in cases {
        for (args, kind) in [
            (&["hit"][..], "private"),
            (&["pubkey"][..], "private"),
            (&["hit", "--public"][..], "public"),
        ] {
            let line = fails(args, stdin);
            let expected = format!("expected a base64-encoded 32-byte Ed25519 {kind} key on stdin");
            assert!(line.contains(&expected), "{args:?} {stdin:?}: {line}");
        }
    }
    assert!(fails(&["hit"], short.as_bytes()).contains("31 bytes"));
    assert!(fails(&["hit"], b"").contains("empty"));
}

#[test]
fn genkey_out_creates_a_0600_file_and_never_overwrites_it() {
    let dir = TempDir::new("genkey");
    let path = dir.path().join("host.key");
    let path_str = path.to_str().unwrap();

    let out = hipbone(&["genkey", "--out", path_str], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the key must not go to stdout");
    let printed_hit = String::from_utf8(out.stderr).unwrap().trim().to_owned();
    assert_hit(&printed_hit);
    assert_eq!(mode(&path), 0o600);

    let stored = fs::read(&path).unwrap();
    assert_eq!(STANDARD.decode(stored.trim_ascii()).unwrap().len(), 32);
    assert_eq!(ok(&["hit"], &stored), printed_hit);
    assert_eq!(ok(&["hit", "-k", path_str], b""), printed_hit);

    for flag in ["--out", "-o"] {
        let line = fails(&["genkey", flag, path_str], b"");
        assert!(line.contains(path_str), "{line}");
        assert!(line.contains("overwrite"), "{line}");
        assert_eq!(fs::read(&path).unwrap(), stored, "key file changed");
    }
    // No temporary file left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn hit_key_file_must_be_private() {
    let dir = TempDir::new("keyfile");
    let path = dir.path().join("host.key");
    let path_str = path.to_str().unwrap();
    fs::write(&path, STANDARD.encode(hex(RFC8032_SECRET)) + "\n").unwrap();

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let line = fails(&["hit", "-k", path_str], b"");
    assert!(line.contains(path_str), "{line}");
    assert!(line.contains("chmod"), "{line}");
    assert!(line.contains("0644"), "{line}");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(ok(&["hit", "-k", path_str], b""), RFC8032_HIT);
    assert_eq!(ok(&["hit", "--key", path_str], b""), RFC8032_HIT);
}

#[test]
fn hit_key_file_missing_or_a_directory() {
    let dir = TempDir::new("nofile");
    let missing = dir.path().join("missing.key");
    let line = fails(&["hit", "-k", missing.to_str().unwrap()], b"");
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
    let line = fails(&["hit", "-k", dir.path().to_str().unwrap()], b"");
    assert!(line.contains("not a regular file"), "{line}");
}

#[test]
fn key_file_with_garbage_names_the_file() {
    let dir = TempDir::new("garbage");
    let path = dir.path().join("host.key");
    fs::write(&path, "garbage\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let line = fails(&["hit", "-k", path.to_str().unwrap()], b"");
    let expected = format!(
        "expected a base64-encoded 32-byte Ed25519 private key in {}",
        path.display()
    );
    assert!(line.contains(&expected), "{line}");
}

#[test]
fn usage_errors_exit_with_status_2() {
    let out = hipbone(&["hit", "--public", "-k", "x"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = hipbone(&["frobnicate"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn overlay_takes_its_config_before_or_after_the_subcommand() {
    let missing = "/nonexistent/hipbone-test.toml";
    for args in [
        ["overlay", "-c", missing, "status"],
        ["overlay", "status", "-c", missing],
    ] {
        let line = fails(&args, b"");
        assert!(line.contains(missing), "{args:?}: {line}");
    }
}

//! The configuration file as a user meets it: `hipbone up -c FILE` (and `down`, `status`)
//! with a file that is wrong, checked for exit status 1 and one `hipbone: error:` line that
//! names the file, the line and the key.
//!
//! Every configuration here is refused before the daemon touches the system (no TUN device,
//! socket or key file is created); as a guard, a child still running after a few seconds is
//! killed and the test fails.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "hipbone-config-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `text` to `name` in the directory and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `hipbone ARGS` (RUST_LOG cleared, so that logs cannot leak into stderr) and
/// expects it to fail with status 1, nothing on stdout and one `hipbone: error:` line on
/// stderr, which it returns without the prefix.
fn fails(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hipbone"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // Our own child, by its handle: the configuration was accepted after all.
            let _ = child.kill();
            let _ = child.wait();
            panic!("hipbone {args:?} is still running: the configuration was accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read_all = |mut r: Box<dyn Read>| {
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        text
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    assert_eq!(status.code(), Some(1), "hipbone {args:?}: {stderr}");
    assert!(stdout.is_empty(), "hipbone {args:?} printed {stdout:?}");
    let line = stderr
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {stderr:?}"));
    assert!(!line.contains('\n'), "more than one line: {stderr:?}");
    line.strip_prefix("hipbone: error: ")
        .unwrap_or_else(|| panic!("no error prefix: {stderr:?}"))
        .to_owned()
}

fn up(config: &Path) -> String {
    fails(&["up", "-c", config.to_str().unwrap()])
}

#[test]
fn a_missing_config_file_named_with_c_is_an_error() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nope.toml");
    let msg = up(&path);
    assert_eq!(
        msg,
        format!(
            "reading {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn the_mtu_rule_is_reported_with_file_line_and_key() {
    let dir = TempDir::new("mtu");
    let path = dir.file("hipbone.toml", "[interface]\ntun = \"hip9\"\nmtu = 1480\n");
    assert_eq!(
        up(&path),
        format!(
            "{}:3: interface.mtu = 1480 leaves no room for the ESP/UDP overhead: with \
             path_mtu = 1500 the largest mtu is 1455",
            path.display()
        )
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let dir = TempDir::new("keys");
    let cases = [
        (
            "[interface]\nmut = 1400\n",
            ":2: unknown key interface.mut (did you mean mtu?)",
        ),
        (
            "[[peer]]\nhit = \"2001:db8::1\"\nlocators = [\"192.0.2.1\"]\n",
            ":2: peer[0].hit: \"2001:db8::1\" is not a HIT (not in 2001:20::/28)",
        ),
        (
            "[interface]\nport = \"ten\"\n",
            ":2: interface.port: invalid type: string \"ten\"",
        ),
        (
            "[nat]\nbehind = \"yes\"\n",
            ":2: nat.behind: invalid type: string \"yes\"",
        ),
        ("[interface\n", ":1: invalid TOML: "),
    ];
    for (text, want) in cases {
        let path = dir.file("hipbone.toml", text);
        let msg = up(&path);
        let want = format!("{}{want}", path.display());
        assert!(msg.starts_with(&want), "{text:?}: {msg}");
    }
}

#[test]
fn down_and_status_read_the_same_file() {
    let dir = TempDir::new("control");
    let path = dir.file("hipbone.toml", "[interface]\ntun = \"hip/0\"\n");
    let want = format!(
        "{}:2: interface.tun = \"hip/0\" is not a usable interface name",
        path.display()
    );
    for cmd in ["down", "status"] {
        let msg = fails(&[cmd, "-c", path.to_str().unwrap()]);
        assert!(msg.starts_with(&want), "{cmd}: {msg}");
    }
}

#[test]
fn a_world_readable_identity_is_refused_before_anything_is_set_up() {
    let dir = TempDir::new("identity");
    let key = dir.0.join("identity.key");
    // `hipbone genkey -o` writes a valid 0600 key file; it is then opened up.
    let out = Command::new(env!("CARGO_BIN_EXE_hipbone"))
        .args(["genkey", "-o", key.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::read(&key).unwrap();
    // Everything else points into the temp dir, so that nothing shared is touched even if
    // the daemon got further than it should.
    let text = format!(
        "[interface]\nidentity = \"{}\"\ntun = \"hbcfgtest0\"\nlisten = [\"127.0.0.1\"]\n\
         port = 47999\ncontrol = \"{}\"\n",
        key.display(),
        dir.0.join("control.sock").display()
    );
    let path = dir.file("hipbone.toml", &text);
    let msg = up(&path);
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    assert!(msg.contains("chmod 600"), "{msg}");
    assert_eq!(fs::read(&key).unwrap(), before, "the key file was changed");
}

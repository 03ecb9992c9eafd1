//! The host's private key, at the path `interface.identity` names: loaded, or created on
//! first start with the rules of [`crate::keys`] (0600, written atomically, never
//! overwritten).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use hip::HostIdentity;
use zeroize::Zeroizing;

use crate::keys::{self, KeyError};

/// Loads the host identity from the key file at `path`, or creates one there if there is no
/// file: the parent directory is created (mode 0700) if missing, a key is drawn from the
/// operating system's randomness and written with [`keys::write_key_file`] (0600,
/// atomically). An existing file is never overwritten: one that group or others may read is
/// refused with [`keys::read_key_file`]'s advice, and if another process creates the file
/// first, its key is used.
pub fn load_or_create_identity(path: &Path) -> Result<HostIdentity, KeyError> {
    match keys::read_key_file(path) {
        Err(KeyError::NotFound { .. }) => {}
        other => return other,
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Only directories that are missing are created, all 0700 (less the umask); an
        // existing one keeps its mode.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyError::Io {
                action: "creating the directory",
                path: Some(dir.to_owned()),
                source,
            })?;
    }
    let mut secret = Zeroizing::new([0u8; keys::KEY_LEN]);
    getrandom::getrandom(&mut secret[..]).map_err(|e| KeyError::Io {
        action: "drawing randomness from the operating system",
        path: None,
        source: io::Error::other(e.to_string()),
    })?;
    let identity = HostIdentity::from_secret(*secret);
    match keys::write_key_file(path, &identity) {
        Ok(()) => {
            tracing::info!(path = %path.display(), hit = %identity.hit(), "created host identity");
            Ok(identity)
        }
        // Another process created it between our read and write: its key wins.
        Err(KeyError::AlreadyExists { .. }) => keys::read_key_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TempDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_is_created_0600_in_a_new_0700_directory() {
        let dir = TempDir::new("create");
        let path = dir.0.join("lib/hipbone/identity.key");
        let id = load_or_create_identity(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.0.join("lib")), 0o700);
        // Only the key, no temporary left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // Loading again gives the same identity.
        assert_eq!(load_or_create_identity(&path).unwrap().hit(), id.hit());
        // The key never shows in Debug output.
        let text = fs::read_to_string(&path).unwrap();
        assert!(!format!("{id:?}").contains(text.trim()));
    }

    #[test]
    fn an_existing_identity_is_never_overwritten() {
        let dir = TempDir::new("existing");
        let path = dir.0.join("identity.key");
        let id = HostIdentity::from_secret([7; 32]);
        keys::write_key_file(&path, &id).unwrap();
        let before = fs::read(&path).unwrap();
        assert_eq!(load_or_create_identity(&path).unwrap().hit(), id.hit());
        assert_eq!(fs::read(&path).unwrap(), before);

        // A file that is not a key is an error, and stays as it was.
        fs::write(&path, "precious\n").unwrap();
        let e = load_or_create_identity(&path).unwrap_err();
        assert!(matches!(e, KeyError::Malformed { .. }), "{e:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");
    }

    #[test]
    fn a_world_readable_identity_is_refused() {
        let dir = TempDir::new("mode");
        let path = dir.0.join("identity.key");
        keys::write_key_file(&path, &HostIdentity::from_secret([7; 32])).unwrap();
        let before = fs::read(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_identity(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, KeyError::Unprotected { mode: 0o644, .. }),
            "{e:?}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}

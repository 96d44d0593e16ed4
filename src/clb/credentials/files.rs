//! Source 2: credentials in files. The `*_FILE` variables name files holding the values, as a mounted Secret
//! gives them; they are re-read when they change (a Secret update swaps a symlink), so a rotated key is used
//! without a restart. Below them, the Tencent SDKs' profile file.
//!
//! Every file is read the same bounded way ([`read_bounded`]): a regular file of at most [`MAX_BYTES`], checked
//! before it is opened, so a FIFO, a device or a huge file is an error at once instead of a read that blocks or
//! fills memory. Surrounding whitespace (the newline `echo` adds) is dropped; an empty file is an error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    CLBSYNC_ID_FILE, CLBSYNC_KEY_FILE, Credentials, Error, SDK_ID_FILE, SDK_KEY_FILE, SDK_TOKEN_FILE, SecretKey,
    SessionToken,
};

/// The largest credential or token file read. Keys are tens of bytes and a service-account token a few KiB.
pub const MAX_BYTES: u64 = 64 * 1024;

/// Where the Tencent SDKs look for their profile file, in order.
pub const PROFILE_PATHS: [&str; 2] = ["~/.tencentcloud/credentials", "/etc/tencentcloud/credentials"];

/// How often the files' metadata is looked at for a change, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The text of a small regular file, trimmed; `what` names it in errors ("TKE_WEB_IDENTITY_TOKEN_FILE").
pub fn read_bounded(what: &str, path: &Path) -> Result<String, Error> {
    let fail = |reason: String| Error::File { what: what.to_owned(), path: path.display().to_string(), reason };
    let meta = std::fs::metadata(path).map_err(|e| fail(io_reason(&e)))?;
    if !meta.is_file() {
        let kind = file_kind(&meta);
        return Err(fail(format!("is {kind}, not a regular file: point it at the file itself")));
    }
    if meta.len() > MAX_BYTES {
        return Err(fail(format!(
            "is {} bytes, larger than the {} KiB limit for a credential file",
            meta.len(),
            MAX_BYTES >> 10
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(io_reason(&e)))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(fail(format!(
            "grew past the {} KiB limit for a credential file while it was read",
            MAX_BYTES >> 10
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(fail("is empty".into()));
    }
    Ok(text.to_owned())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be read: permission denied".into(),
        _ => format!("cannot be read: {e}"),
    }
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// The files named by the `*_FILE` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// (variable, path) of the SecretId, the SecretKey and the optional session token.
    pub id: (&'static str, PathBuf),
    pub key: (&'static str, PathBuf),
    pub token: Option<(&'static str, PathBuf)>,
}

impl Paths {
    /// `CLOUD_TENCENT_SECRET_ID_FILE`/`_KEY_FILE` if either is set, else the `TENCENTCLOUD_*_FILE` names (with the
    /// optional `TENCENTCLOUD_SESSION_TOKEN_FILE`); `None` when neither pair is set. As for the variables
    /// themselves, a pair is never mixed across the two naming schemes.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Paths>, Error> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.is_empty()).map(|v| (name, PathBuf::from(v)));
        let pair = |id: &'static str, key: &'static str| match (get(id), get(key)) {
            (Some(id), Some(key)) => Ok(Some((id, key))),
            (Some(_), None) => Err(Error::Incomplete { set: id, missing: key }),
            (None, Some(_)) => Err(Error::Incomplete { set: key, missing: id }),
            (None, None) => Ok(None),
        };
        if let Some((id, key)) = pair(CLBSYNC_ID_FILE, CLBSYNC_KEY_FILE)? {
            return Ok(Some(Paths { id, key, token: None }));
        }
        Ok(pair(SDK_ID_FILE, SDK_KEY_FILE)?.map(|(id, key)| Paths { id, key, token: get(SDK_TOKEN_FILE) }))
    }

    fn all(&self) -> impl Iterator<Item = &(&'static str, PathBuf)> {
        [&self.id, &self.key].into_iter().chain(&self.token)
    }

    /// "files /run/secret-id, /run/secret-key (CLOUD_TENCENT_SECRET_ID_FILE, CLOUD_TENCENT_SECRET_KEY_FILE)".
    pub fn describe(&self) -> String {
        let paths: Vec<String> = self.all().map(|(_, p)| p.display().to_string()).collect();
        let vars: Vec<&str> = self.all().map(|(v, _)| *v).collect();
        format!("files {} ({})", paths.join(", "), vars.join(", "))
    }

    /// Reads the files once.
    pub fn load(&self) -> Result<Credentials, Error> {
        let read = |(var, path): &(&'static str, PathBuf)| read_bounded(var, path);
        Ok(Credentials {
            secret_id: read(&self.id)?,
            secret_key: SecretKey::new(read(&self.key)?),
            token: self.token.as_ref().map(read).transpose()?.map(SessionToken::new),
            source: self.describe(),
        })
    }

    /// What identifies each file's current contents: a Secret update swaps the symlinks to new files (another
    /// inode), an edit in place changes the size or the modification time.
    fn stamp(&self) -> Vec<Option<Stamp>> {
        use std::os::unix::fs::MetadataExt;
        self.all()
            .map(|(_, p)| std::fs::metadata(p).ok().and_then(|m| Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))))
            .collect()
    }
}

/// A file's device, inode, size and modification time.
type Stamp = (u64, u64, u64, std::time::SystemTime);

/// The `*_FILE` credentials, re-read when the files change.
pub struct Watched {
    paths: Paths,
    state: Mutex<WatchState>,
}

struct WatchState {
    current: Arc<Credentials>,
    stamp: Vec<Option<Stamp>>,
    checked: Instant,
    /// The files changed into something unusable, and that was logged: not again until they change.
    warned: bool,
}

/// What one look at the files found.
pub enum Check {
    Unchanged,
    /// Read again after a change: the new credentials are in use.
    Reloaded,
    /// Changed but unusable (half written, empty, gone): the previous credentials stay.
    Kept(Error),
}

impl Watched {
    /// Reads the files; an unusable file is an error here, before any network call.
    pub fn new(paths: Paths) -> Result<Watched, Error> {
        let stamp = paths.stamp();
        let current = Arc::new(paths.load()?);
        let state = WatchState { current, stamp, checked: Instant::now(), warned: false };
        Ok(Watched { paths, state: Mutex::new(state) })
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The credentials to sign with now, after looking at the files when [`CHECK_INTERVAL`] has passed since the
    /// last look (or at once with `force`, after CLB refused the current ones).
    pub fn get(&self, force: bool) -> (Arc<Credentials>, Check) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if !force && now.duration_since(s.checked) < CHECK_INTERVAL {
            return (s.current.clone(), Check::Unchanged);
        }
        s.checked = now;
        let stamp = self.paths.stamp();
        if stamp == s.stamp {
            return (s.current.clone(), Check::Unchanged);
        }
        let check = match self.paths.load() {
            Ok(creds) => {
                s.current = Arc::new(creds);
                s.stamp = stamp;
                s.warned = false;
                Check::Reloaded
            }
            // A half-written update is retried at the next look; the first failure of a change is logged.
            Err(e) if !s.warned => {
                s.warned = true;
                Check::Kept(e)
            }
            Err(_) => Check::Unchanged,
        };
        (s.current.clone(), check)
    }
}

/// The first profile file that exists: `$HOME/.tencentcloud/credentials`, then `/etc/tencentcloud/credentials`.
pub fn profile_path(lookup: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let home = lookup("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".tencentcloud/credentials"));
    home.into_iter().chain([PathBuf::from(PROFILE_PATHS[1])]).find(|p| p.exists())
}

/// The `[default]` `secret_id` and `secret_key` of an SDK profile file (INI; `#` and `;` start comments; values
/// are trimmed, as the SDKs do).
pub fn profile(path: &Path) -> Result<Credentials, Error> {
    let text = read_bounded("profile file", path)?;
    let mut section = "";
    let (mut id, mut key) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim();
            continue;
        }
        let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else { continue };
        if section == "default" {
            match k.trim() {
                "secret_id" => id = Some(v.trim().to_owned()).filter(|v| !v.is_empty()),
                "secret_key" => key = Some(v.trim().to_owned()).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
    }
    let fail = |missing: &str| Error::File {
        what: "profile file".into(),
        path: path.display().to_string(),
        reason: format!("has no {missing} in its [default] section"),
    };
    let secret_id = id.ok_or_else(|| fail("secret_id"))?;
    let secret_key = key.ok_or_else(|| fail("secret_key"))?;
    Ok(Credentials {
        secret_id,
        secret_key: SecretKey::new(secret_key),
        token: None,
        source: format!("profile file {}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_file_is_trimmed_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_bounded("X", &write(dir.path(), "a", "AKIDabc\n")).unwrap(), "AKIDabc");
        let err = read_bounded("X", &write(dir.path(), "b", " \n")).unwrap_err();
        assert!(err.to_string().ends_with("/b: is empty"), "{err}");
        let err = read_bounded("X", &dir.path().join("none")).unwrap_err().to_string();
        assert!(err.starts_with("X ") && err.ends_with("does not exist"), "{err}");
    }

    #[test]
    fn a_directory_or_an_oversized_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded("X", dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory, not a regular file"), "{err}");
        let big = write(dir.path(), "big", &"k".repeat(MAX_BYTES as usize + 1));
        let err = read_bounded("X", &big).unwrap_err().to_string();
        assert!(err.contains("larger than the 64 KiB limit"), "{err}");
        assert!(!err.contains("kkkk"), "the contents are not echoed: {err}");
    }

    #[test]
    fn file_variables_pair_like_the_plain_ones() {
        let env = |pairs: &'static [(&str, &str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let p = Paths::from_lookup(&env(&[(SDK_ID_FILE, "/i"), (SDK_KEY_FILE, "/k"), (SDK_TOKEN_FILE, "/t")]));
        let p = p.unwrap().unwrap();
        assert_eq!(
            p.describe(),
            "files /i, /k, /t (TENCENTCLOUD_SECRET_ID_FILE, TENCENTCLOUD_SECRET_KEY_FILE, TENCENTCLOUD_SESSION_TOKEN_FILE)"
        );
        let err = Paths::from_lookup(&env(&[(CLBSYNC_KEY_FILE, "/k"), (SDK_ID_FILE, "/i"), (SDK_KEY_FILE, "/k")]));
        assert_eq!(err.unwrap_err(), Error::Incomplete { set: CLBSYNC_KEY_FILE, missing: CLBSYNC_ID_FILE });
        assert_eq!(Paths::from_lookup(&env(&[])).unwrap(), None);
    }

    #[test]
    fn the_profile_file_gives_its_default_section() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# comment\n[other]\nsecret_id = nope\n[default]\nsecret_id = AKIDprof\nsecret_key= profkey \n";
        let c = profile(&write(dir.path(), "credentials", text)).unwrap();
        assert_eq!((c.secret_id.as_str(), c.secret_key.expose()), ("AKIDprof", "profkey"));
        let err = profile(&write(dir.path(), "half", "[default]\nsecret_id = AKIDprof\n")).unwrap_err();
        assert!(err.to_string().ends_with("has no secret_key in its [default] section"), "{err}");
    }

    #[test]
    fn a_changed_file_is_reread_and_a_broken_change_keeps_the_old_pair_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = write(dir.path(), "id", "AKIDold");
        let key = write(dir.path(), "key", "oldkey");
        let paths = Paths { id: (CLBSYNC_ID_FILE, id.clone()), key: (CLBSYNC_KEY_FILE, key.clone()), token: None };
        let w = Watched::new(paths).unwrap();
        assert!(matches!(w.get(true), (c, Check::Unchanged) if c.secret_id == "AKIDold"));
        std::fs::write(&key, "").unwrap();
        assert!(matches!(w.get(true), (c, Check::Kept(_)) if c.secret_id == "AKIDold"));
        assert!(matches!(w.get(true), (_, Check::Unchanged)), "logged once");
        std::fs::write(&id, "AKIDnew2").unwrap();
        std::fs::write(&key, "newkey").unwrap();
        let (c, check) = w.get(true);
        assert!(matches!(check, Check::Reloaded));
        assert_eq!((c.secret_id.as_str(), c.secret_key.expose()), ("AKIDnew2", "newkey"));
    }
}

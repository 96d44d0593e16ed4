//! A batch run's metrics, handed on when it ends: pushed to a Prometheus Pushgateway (`--pushgateway`) and/or
//! written for the node exporter's textfile collector (`--metrics-file`), in the Prometheus text format 0.0.4.
//!
//! - The push is an HTTP `PUT` to `<url>/metrics/job/clbsync[/owner/<owner>]`: it replaces the group's previous
//!   push, so a series of an earlier run (a failure code, a failed change) does not linger. An owner name is
//!   URL-safe and never empty ([`Owner`]), so the path needs no base64 encoding.
//! - The file is written to a temporary file in the same directory and renamed over the target, so the collector
//!   reads the old file or the new one, never half of one. The temporary name does not end in `.prom`, which the
//!   collector would read.
//! - Either may fail: the failure is returned for the caller to log once; it never changes the exit code. The
//!   push gives up after [`PUSH_TIMEOUT`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Owner;
use crate::observe::metrics::TEXT_CONTENT_TYPE;

/// How long the whole push (connect, send, answer) may take.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// The Pushgateway's `job` label of every push.
pub const JOB: &str = "clbsync";

/// A push or a write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot push the metrics to the Pushgateway {url}: {reason}; check --pushgateway and that it is reachable")]
    Push { url: String, reason: String },
    #[error("cannot write the metrics file {}: {source}; check --metrics-file and that its directory is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A Pushgateway's base URL (`--pushgateway`), checked when the command line is parsed. Its `Debug` and
/// `Display` hide any user name and password: the run configuration that holds it is `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pushgateway(Box<reqwest::Url>);

impl Pushgateway {
    /// `http://` or `https://` with a host; a path prefix (behind a reverse proxy) is kept. No message shows
    /// what may be a password: anything between `://` and the last `@` is cut out.
    pub fn parse(s: &str) -> Result<Pushgateway, String> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("`{}` is not a URL: {e}", redact_text(s)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`{}` is not an http:// or https:// URL", redact_text(s)));
        }
        if url.path().contains('@') {
            // `http://bot:80/x@gw/` parses as host `bot`, port 80: the pushes would go elsewhere, and the "path" is a
            // password.
            return Err(format!(
                "`{}`: `@` after the host: write `@` and `/` in a user name or password as %40 and %2F",
                redact_text(s)
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{}`: give the Pushgateway's base URL, without ? or # (in a password, write them as %3F and %23)",
                redact_text(s)
            ));
        }
        Ok(Pushgateway(Box::new(url)))
    }

    /// The grouping key's URL: `<base>/metrics/job/clbsync[/owner/<owner>]`.
    pub fn group_url(&self, owner: Option<&Owner>) -> reqwest::Url {
        let mut url = (*self.0).clone();
        let mut path = url.path().trim_end_matches('/').to_owned();
        path.push_str("/metrics/job/");
        path.push_str(JOB);
        if let Some(owner) = owner {
            path.push_str("/owner/");
            path.push_str(owner.name());
        }
        url.set_path(&path);
        url
    }
}

impl std::fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pushgateway").field(&redact(&self.0)).finish()
    }
}

impl std::fmt::Display for Pushgateway {
    /// The URL with any user name and password replaced by `***`: safe for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// The URL without its userinfo (`https://***@host/`), for messages.
fn redact(url: &reqwest::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("***");
    shown.to_string()
}

/// The text of a URL as given, with everything from `://` to its last `@` cut out: a password may hold `/`, `?`
/// or `#`, so where the authority ends cannot be told from the text.
fn redact_text(s: &str) -> String {
    let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
    match rest.rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => s.to_owned(),
    }
}

/// At most this much of an error answer is read: its start is all a message shows.
const MAX_ERROR_BODY: usize = 4096;

/// PUTs `text` (Prometheus text 0.0.4) to the group of this job and owner, replacing its previous push. A user
/// name and password in the URL go as HTTP basic authentication.
pub async fn push(gateway: &Pushgateway, owner: Option<&Owner>, text: String) -> Result<(), Error> {
    let url = gateway.group_url(owner);
    let fail = |reason: String| Error::Push { url: redact(&url), reason };
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("clbsync/", env!("CARGO_PKG_VERSION")))
        .timeout(PUSH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_rustls()
        .build()
        .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let mut request = client.put(bare).header(reqwest::header::CONTENT_TYPE, TEXT_CONTENT_TYPE).body(text);
    if !url.username().is_empty() || url.password().is_some() {
        request = request.basic_auth(url.username(), url.password());
    }
    let answer = request.send().await.map_err(|e| fail(e.without_url().to_string()))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let body = read_prefix(answer, MAX_ERROR_BODY).await;
    let body = crate::model::printable(body.trim());
    let body: String = body.chars().take(300).collect();
    Err(fail(format!("HTTP {status}: {body}")))
}

/// The first `max` bytes of a body (as text), reading no more of it than that.
async fn read_prefix(mut answer: reqwest::Response, max: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < max {
        match answer.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk[..chunk.len().min(max - bytes.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename. The temporary file has a
/// random name and is created exclusively (`O_EXCL`: never through a file or symlink planted at its name), then
/// made 0644 for the collector; the rename replaces whatever is at `path`, a symlink included, without following it.
pub fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| Error::Write { path: path.to_owned(), source };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("the path names no file")))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new().prefix(&prefix).suffix(".tmp").tempfile_in(dir).map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_url_adds_job_and_owner_to_the_base_path() {
        let owner = Owner::new("prod-a").expect("owner");
        let url = |base: &str, owner| Pushgateway::parse(base).expect("url").group_url(owner).to_string();
        assert_eq!(url("http://pg:9091", None), "http://pg:9091/metrics/job/clbsync");
        assert_eq!(url("http://pg:9091/", Some(&owner)), "http://pg:9091/metrics/job/clbsync/owner/prod-a");
        assert_eq!(url("https://gw.example/push/", None), "https://gw.example/push/metrics/job/clbsync");
    }

    #[test]
    fn a_url_with_a_password_prints_without_it() {
        let pg = Pushgateway::parse("https://bot:s3cret@gw.example:9091/").expect("url");
        assert_eq!(pg.to_string(), "https://***@gw.example:9091/");
        assert_eq!(
            format!("{pg:?}"),
            r#"Pushgateway("https://***@gw.example:9091/")"#,
            "the run configuration is Debug"
        );
        let err = Pushgateway::parse("ftp://bot:s3cret@gw.example/").expect_err("not http");
        assert!(!err.contains("s3cret") && err.contains("***@gw.example"), "{err}");
        let err = Pushgateway::parse("http://bot:s3cret@gw example/").expect_err("not a URL");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(Pushgateway::parse("http://gw/?x=1").is_err());
        // Issue 24 #18: a password with `/`, `#` or `?` ends the authority early for a URL parser.
        let given = [
            "http://bot:pa/ss@gw:9091/",
            "http://bot:12#ss@gw/",
            "http://bot:p?ss@gw/",
            "bot:s3/c@gw",
            "http://bot:8080/xyz@gw/",
        ];
        for given in given {
            let err = Pushgateway::parse(given).expect_err("not a valid base URL");
            for secret in ["pa/ss", "12#ss", "p?ss", "s3/c", "8080/xyz"] {
                assert!(!err.contains(secret), "{given}: {err}");
            }
        }
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clbsync.prom");
        write_file(&path, "a 1\n").expect("first write");
        write_file(&path, "a 2\n").expect("second write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 2\n");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["clbsync.prom"]);
        let err = write_file(&dir.path().join("missing/clbsync.prom"), "a 1\n").expect_err("no such directory");
        assert!(err.to_string().contains("missing/clbsync.prom"), "{err}");
    }

    /// Issue 24 #19: the old temporary name was predictable (`.clbsync.prom.<pid>.tmp`) and `File::create`
    /// followed a symlink planted there. Now a symlink at any name is neither followed nor written through.
    #[test]
    fn a_planted_symlink_is_not_followed_and_the_file_is_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").expect("victim");
        let path = dir.path().join("clbsync.prom");
        let old_name = dir.path().join(format!(".clbsync.prom.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_name).expect("plant at the old name");
        write_file(&path, "a 1\n").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep\n", "written through the symlink");
        let mode = std::fs::metadata(&path).expect("written").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);

        std::fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(&victim, &path).expect("plant at the target");
        write_file(&path, "a 2\n").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep\n", "the target symlink was followed");
        assert!(!std::fs::symlink_metadata(&path).expect("target").file_type().is_symlink(), "replaced by a file");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 2\n");
    }
}

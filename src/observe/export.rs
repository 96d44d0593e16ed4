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

/// A Pushgateway's base URL (`--pushgateway`), checked when the command line is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushgateway(Box<reqwest::Url>);

impl Pushgateway {
    /// `http://` or `https://` with a host; a path prefix (behind a reverse proxy) is kept.
    pub fn parse(s: &str) -> Result<Pushgateway, String> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("`{}` is not a URL: {e}", redact_text(s)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`{}` is not an http:// or https:// URL", redact(&url)));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{}`: give the Pushgateway's base URL, without ? or #", redact(&url)));
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

/// A string that did not parse as a URL, with anything before an `@` in its authority cut out.
fn redact_text(s: &str) -> String {
    let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => s.to_owned(),
    }
}

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
    let body = answer.text().await.unwrap_or_default();
    let body = crate::model::printable(body.trim());
    let body: String = body.chars().take(300).collect();
    Err(fail(format!("HTTP {status}: {body}")))
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
pub fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let fail = |source| Error::Write { path: path.to_owned(), source };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("the path names no file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
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
        let err = Pushgateway::parse("ftp://bot:s3cret@gw.example/").expect_err("not http");
        assert!(!err.contains("s3cret") && err.contains("***@gw.example"), "{err}");
        let err = Pushgateway::parse("http://bot:s3cret@gw example/").expect_err("not a URL");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(Pushgateway::parse("http://gw/?x=1").is_err());
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
}

//! [`Provider`]: the source chosen at start ([`Provider::select`]) and what the CLB client asks before each
//! request ([`Provider::get`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::files::{self, Check, Paths, Watched};
use super::metadata::CvmRole;
use super::refresh::{Cache, Fetch, Issued, RefreshResult};
use super::sts::Oidc;
use super::{
    Credentials, Error, Kind, Selection, Settings, TKE_PROVIDER_ID, TKE_REGION, TKE_ROLE_ARN, TKE_TOKEN_FILE, env,
};

/// Where the credentials come from and how they are kept valid. Cloning shares the source.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    source: Source,
    stats: Mutex<BTreeMap<(Kind, &'static str), u64>>,
}

#[allow(clippy::large_enum_variant, reason = "one per process, inside an Arc")]
enum Source {
    /// Read once: the environment, the profile file, or given directly.
    Fixed(Arc<Credentials>),
    Files(Watched),
    Temporary(Cache<Temporary>),
}

/// The two sources of temporary credentials.
enum Temporary {
    Oidc(Oidc),
    Cvm(CvmRole),
}

impl Fetch for Temporary {
    async fn fetch(&self) -> Result<Issued, Error> {
        match self {
            Temporary::Oidc(o) => o.fetch().await,
            Temporary::Cvm(c) => c.fetch().await,
        }
    }
}

/// What the metrics show of the credentials: fetches by source and result, and when the ones in use expire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// `(source, "ok" | "error")` → count.
    pub refreshes: BTreeMap<(&'static str, &'static str), u64>,
    /// Unix seconds; `None` for credentials that do not expire.
    pub expires_unix: Option<i64>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider").field("kind", &self.inner.kind).finish_non_exhaustive()
    }
}

impl From<Credentials> for Provider {
    fn from(credentials: Credentials) -> Self {
        Provider::new(Kind::Env, Source::Fixed(Arc::new(credentials)))
    }
}

impl Provider {
    fn new(kind: Kind, source: Source) -> Provider {
        Provider { inner: Arc::new(Inner { kind, source, stats: Mutex::new(BTreeMap::new()) }) }
    }

    /// The source `settings` select, from the variables `lookup` reads (`std::env::var` in production). Files
    /// are read and every setting is checked here; nothing goes over the network until the first [`Provider::get`].
    pub fn select(settings: &Settings, lookup: impl Fn(&str) -> Option<String>) -> Result<Provider, Error> {
        let provider = match settings.selection {
            Selection::Env | Selection::File | Selection::TkeOidc => {
                let found = match settings.selection {
                    Selection::Env => env_source(&lookup)?,
                    Selection::File => file_source(&lookup)?,
                    _ => oidc_source(settings, &lookup)?,
                };
                found.ok_or(Error::Missing { selection: settings.selection })
            }
            Selection::CvmRole => Ok(Provider::new(
                Kind::CvmRole,
                Source::Temporary(Cache::new(Temporary::Cvm(CvmRole::new(settings.metadata_endpoint.as_deref())?))),
            )),
            Selection::Auto => match env_source(&lookup)? {
                Some(p) => Ok(p),
                None => match file_source(&lookup)? {
                    Some(p) => Ok(p),
                    None => oidc_source(settings, &lookup)?.ok_or(Error::Missing { selection: Selection::Auto }),
                },
            },
        }?;
        if provider.inner.kind != Kind::TkeOidc && settings.sts_endpoint.is_some() {
            tracing::warn!("--sts-endpoint is ignored: the credentials are not TKE OIDC's");
        }
        if provider.inner.kind != Kind::CvmRole && settings.metadata_endpoint.is_some() {
            tracing::warn!("--metadata-endpoint is ignored: the credentials are not the CVM role's");
        }
        Ok(provider)
    }

    /// Where the credentials come from, for the one info line at start (never a secret).
    pub fn describe(&self) -> String {
        match &self.inner.source {
            Source::Fixed(c) => match self.inner.kind {
                Kind::Env => format!("environment ({})", c.source),
                _ => c.source.clone(),
            },
            Source::Files(w) => format!("{}, re-read when they change", w.paths().describe()),
            Source::Temporary(cache) => match cache.source() {
                Temporary::Oidc(o) => o.describe(),
                Temporary::Cvm(c) => c.describe(),
            },
        }
    }

    /// The credentials to sign a request with now (refreshed first when they are due).
    pub async fn get(&self) -> Result<Arc<Credentials>, Error> {
        match &self.inner.source {
            Source::Fixed(c) => Ok(c.clone()),
            Source::Files(w) => Ok(self.files_checked(w.get(false))),
            Source::Temporary(cache) => {
                let (result, outcome) = cache.get().await;
                self.record(outcome);
                result
            }
        }
    }

    /// CLB refused `used` (`AuthFailure.TokenFailure`, `AuthFailure.SecretIdNotFound`): the credentials to retry
    /// with, fetched or read again at once, when they differ from `used`.
    pub async fn rejected(&self, used: &Arc<Credentials>) -> Option<Arc<Credentials>> {
        match &self.inner.source {
            Source::Fixed(_) => None,
            Source::Files(w) => Some(self.files_checked(w.get(true))).filter(|c| !Arc::ptr_eq(c, used)),
            Source::Temporary(cache) => {
                let (fresh, outcome) = cache.rejected(used).await;
                self.record(outcome);
                fresh
            }
        }
    }

    /// Fetches and re-reads so far, and the expiry of the credentials in use.
    pub fn stats(&self) -> Stats {
        let counts = self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        let refreshes = counts.iter().map(|((kind, result), n)| ((kind.as_str(), *result), *n)).collect();
        let expires_unix = match &self.inner.source {
            Source::Temporary(cache) => cache.expires_unix(),
            _ => None,
        };
        Stats { refreshes, expires_unix }
    }

    fn count(&self, result: &'static str) {
        let mut counts = self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((self.inner.kind, result)).or_default() += 1;
    }

    fn files_checked(&self, (credentials, check): (Arc<Credentials>, Check)) -> Arc<Credentials> {
        match check {
            Check::Unchanged => {}
            Check::Reloaded => {
                self.count("ok");
                tracing::info!(secret_id = %credentials.secret_id, "the credential files changed: using the new key");
            }
            Check::Kept(e) => {
                self.count("error");
                tracing::warn!("the credential files changed but cannot be used ({e}); the previous key stays in use");
            }
        }
        credentials
    }

    fn record(&self, outcome: RefreshResult) {
        let source = self.inner.kind.as_str();
        match outcome {
            RefreshResult::None => {}
            RefreshResult::Refreshed { valid_for } => {
                self.count("ok");
                tracing::debug!(source, valid_for_s = valid_for.as_secs(), "credentials refreshed");
            }
            RefreshResult::FailedKept { error, valid_for, retry_in } => {
                self.count("error");
                tracing::warn!(
                    "refreshing the credentials failed: {error}; the current ones stay in use ({}s of validity left), next attempt in {}ms",
                    valid_for.as_secs(),
                    retry_in.as_millis()
                );
            }
            RefreshResult::Failed => self.count("error"),
        }
    }
}

/// The four variables of TKE OIDC.
const TKE_NAMES: [&str; 4] = [TKE_REGION, TKE_PROVIDER_ID, TKE_TOKEN_FILE, TKE_ROLE_ARN];

fn env_source(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Provider>, Error> {
    Ok(env::from_lookup(lookup)?.map(|c| Provider::new(Kind::Env, Source::Fixed(Arc::new(c)))))
}

/// The `*_FILE` variables, else the profile file.
fn file_source(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Provider>, Error> {
    if let Some(paths) = Paths::from_lookup(lookup)? {
        return Ok(Some(Provider::new(Kind::File, Source::Files(Watched::new(paths)?))));
    }
    match files::profile_path(lookup) {
        Some(path) => Ok(Some(Provider::new(Kind::Profile, Source::Fixed(Arc::new(files::profile(&path)?))))),
        None => Ok(None),
    }
}

/// TKE OIDC when any of its four variables is set; all four must be.
fn oidc_source(settings: &Settings, lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Provider>, Error> {
    let values: Vec<Option<String>> = TKE_NAMES.iter().map(|n| lookup(n).filter(|v| !v.is_empty())).collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<&'static str> =
        TKE_NAMES.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        let set: Vec<&str> = TKE_NAMES.iter().zip(&values).filter(|(_, v)| v.is_some()).map(|(n, _)| *n).collect();
        let set = format!("{} {}", set.join(", "), if set.len() == 1 { "is" } else { "are" });
        return Err(Error::TkeIncomplete { set, missing });
    }
    if let Some((name, _)) = TKE_NAMES.iter().zip(&values).find(|(_, v)| v.as_deref() == Some("REPLACE_ME")) {
        return Err(Error::Config(format!(
            "{name} is REPLACE_ME: set it in your overlay (deploy/examples/tke-oidc, docs/src/install.md \"Credentials\")"
        )));
    }
    let [region, provider_id, token_file, role_arn] =
        <[String; 4]>::try_from(values.into_iter().flatten().collect::<Vec<_>>()).expect("all four are set");
    let hostname = lookup("HOSTNAME");
    let oidc = Oidc::new(
        settings.sts_endpoint.as_deref(),
        region,
        provider_id,
        PathBuf::from(token_file),
        role_arn,
        hostname.as_deref(),
    )?;
    Ok(Some(Provider::new(Kind::TkeOidc, Source::Temporary(Cache::new(Temporary::Oidc(oidc))))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clb::credentials::{CLBSYNC_ID, CLBSYNC_ID_FILE, CLBSYNC_KEY, CLBSYNC_KEY_FILE};

    fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }

    fn select(selection: Selection, pairs: Vec<(&'static str, String)>) -> Result<Provider, Error> {
        let mut pairs = pairs;
        pairs.push(("HOME", "/nonexistent".into()));
        Provider::select(&Settings { selection, ..Settings::default() }, env(pairs))
    }

    #[test]
    fn auto_takes_the_first_configured_source_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (id, key, token) = (dir.path().join("id"), dir.path().join("key"), dir.path().join("token"));
        std::fs::write(&id, "AKIDfile").unwrap();
        std::fs::write(&key, "filekey").unwrap();
        std::fs::write(&token, "a.b.c").unwrap();
        let files = vec![(CLBSYNC_ID_FILE, id.display().to_string()), (CLBSYNC_KEY_FILE, key.display().to_string())];
        let tke = vec![
            (TKE_REGION, "ap-guangzhou".to_string()),
            (TKE_PROVIDER_ID, "p".into()),
            (TKE_TOKEN_FILE, token.display().to_string()),
            (TKE_ROLE_ARN, "qcs::cam::uin/1:roleName/r".into()),
        ];
        let plain = vec![(CLBSYNC_ID, "AKIDenv".to_string()), (CLBSYNC_KEY, "envkey".into())];
        let all = [plain.clone(), files.clone(), tke.clone()].concat();
        assert_eq!(select(Selection::Auto, all).unwrap().inner.kind, Kind::Env);
        assert_eq!(select(Selection::Auto, [files.clone(), tke.clone()].concat()).unwrap().inner.kind, Kind::File);
        let oidc = select(Selection::Auto, tke.clone()).unwrap();
        assert_eq!(oidc.inner.kind, Kind::TkeOidc);
        assert!(oidc.describe().contains("qcs::cam::uin/1:roleName/r"), "{}", oidc.describe());
        // An explicit choice ignores the others.
        assert_eq!(select(Selection::TkeOidc, [plain, tke].concat()).unwrap().inner.kind, Kind::TkeOidc);
        let err = select(Selection::File, vec![]).unwrap_err().to_string();
        assert!(err.starts_with("--credentials file: CLOUD_TENCENT_SECRET_ID_FILE") && !err.contains("TKE_"), "{err}");
    }

    #[test]
    fn a_half_configured_tke_oidc_names_what_is_missing() {
        let err = select(Selection::Auto, vec![(TKE_ROLE_ARN, "qcs::cam::uin/1:roleName/r".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TKE OIDC: TKE_ROLE_ARN is set but TKE_REGION, TKE_PROVIDER_ID, TKE_WEB_IDENTITY_TOKEN_FILE not: set all \
             four (TKE's pod-identity webhook or deploy/components/tke-oidc does)"
        );
    }

    #[test]
    fn the_components_placeholder_is_refused_at_start() {
        let values = [TKE_REGION, TKE_PROVIDER_ID, TKE_TOKEN_FILE, TKE_ROLE_ARN].map(|n| (n, "REPLACE_ME".to_string()));
        let err = select(Selection::Auto, values.to_vec()).unwrap_err().to_string();
        assert!(err.starts_with("TKE_REGION is REPLACE_ME: set it in your overlay"), "{err}");
    }

    #[test]
    fn nothing_configured_names_every_variable_read_and_the_cvm_role() {
        let msg = select(Selection::Auto, vec![]).unwrap_err().to_string();
        for name in ["CLOUD_TENCENT_SECRET_ID", "_KEY_FILE", TKE_TOKEN_FILE, "~/.tencentcloud/credentials", "cvm-role"]
        {
            assert!(msg.contains(name), "{name}: {msg}");
        }
    }
}

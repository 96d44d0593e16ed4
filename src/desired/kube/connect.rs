//! Connecting: the kubeconfig (or kube-rs's defaults) read and checked, the credential plugins kept from the CLB
//! credentials, and the client built with a cap on response bodies.

use std::path::Path;

use kube::client::ClientBuilder;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Config, Error as KubeError};

use super::{DEFAULT_REQUEST_TIMEOUT, KubeCluster, MAX_RESPONSE_BYTES};
use crate::clb::credentials;
use crate::desired::Error;

/// What [`KubeCluster::connect_with`] tolerates in the client configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectOptions {
    /// Accept `insecure-skip-tls-verify: true` (with a warning) instead of refusing it.
    pub allow_insecure_skip_tls_verify: bool,
}

impl KubeCluster {
    /// Connects with the kubeconfig at `kubeconfig` (its current context), or, when `None`, with kube-rs's
    /// defaults: `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account. The error says
    /// which sources were tried.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, Error> {
        Self::connect_with(kubeconfig, &ConnectOptions::default()).await
    }

    /// [`KubeCluster::connect`] with `options`.
    pub(crate) async fn connect_with(kubeconfig: Option<&Path>, options: &ConnectOptions) -> Result<Self, Error> {
        let (mut config, tried) = match kubeconfig {
            Some(path) => {
                let tried = format!("kubeconfig {}", path.display());
                let config = async {
                    let file = Kubeconfig::read_from(path)?;
                    let cluster = current_cluster(&file);
                    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
                    Ok::<_, KubeError>((config, cluster))
                }
                .await
                .map_err(|error| Error::Config { tried: tried.clone(), error })?;
                check_tls(&config.0, config.1, options)?;
                (config.0, tried)
            }
            None => {
                let tried = match std::env::var_os("KUBECONFIG") {
                    Some(v) => format!("KUBECONFIG={} and the in-cluster service account", v.to_string_lossy()),
                    None => "~/.kube/config and the in-cluster service account".to_owned(),
                };
                let config = Config::infer()
                    .await
                    .map_err(|e| Error::Config { tried: tried.clone(), error: KubeError::InferConfig(e) })?;
                // Only a kubeconfig can set insecure-skip-tls-verify: name its cluster.
                let cluster = config.accept_invalid_certs.then(|| Kubeconfig::read().ok()).flatten();
                check_tls(&config, cluster.as_ref().and_then(current_cluster), options)?;
                (config, tried)
            }
        };
        hide_credentials_from_plugins(&mut config.auth_info);
        let server = config.cluster_url.to_string();
        // Building the client runs the credential plugin (std::process, blocking): off the runtime, bounded.
        let build = tokio::task::spawn_blocking(move || {
            ClientBuilder::try_from(config).map(|b| b.with_layer(&BodyLimit(MAX_RESPONSE_BYTES)).build())
        });
        let client = match tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, build).await {
            Ok(Ok(built)) => built.map_err(|error| Error::Config { tried, error })?,
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => return Err(Error::ConnectTimeout { tried, secs: DEFAULT_REQUEST_TIMEOUT.as_secs() }),
        };
        Ok(Self { server: Some(server), ..Self::from_client(client) })
    }
}

/// The cluster of the kubeconfig's current context, for messages.
fn current_cluster(file: &Kubeconfig) -> Option<String> {
    let current = file.current_context.as_deref()?;
    let context = file.contexts.iter().find(|c| c.name == current)?.context.as_ref()?;
    Some(context.cluster.clone())
}

/// Refuses a configuration that skips TLS verification, unless allowed; then warns.
fn check_tls(config: &Config, cluster: Option<String>, options: &ConnectOptions) -> Result<(), Error> {
    if !config.accept_invalid_certs {
        return Ok(());
    }
    let cluster = cluster.unwrap_or_else(|| "(current context)".to_owned());
    let server = config.cluster_url.to_string();
    if !options.allow_insecure_skip_tls_verify {
        return Err(Error::InsecureTls { cluster, server });
    }
    tracing::warn!(
        %cluster,
        %server,
        "INSECURE: the Kubernetes API server's certificate is NOT checked (insecure-skip-tls-verify in the kubeconfig, accepted by --allow-insecure-skip-tls-verify): anyone on the path can read clbsync's token"
    );
    Ok(())
}

/// The variables no credential plugin gets: the CLB credentials', and `CLBSYNC_PUSHGATEWAY` (its URL may hold a
/// password).
pub fn hidden_from_plugins() -> impl Iterator<Item = &'static str> {
    credentials::VARIABLES.into_iter().chain(["CLBSYNC_PUSHGATEWAY"])
}

/// Removes [`hidden_from_plugins`] from the environment of the kubeconfig's credential plugins: an `exec` plugin
/// (`drop_env`) and an auth-provider's `cmd-path` command (`cmd-drop-env`).
fn hide_credentials_from_plugins(auth: &mut AuthInfo) {
    if let Some(exec) = auth.exec.as_mut() {
        exec.drop_env.get_or_insert_default().extend(hidden_from_plugins().map(String::from));
    }
    if let Some(provider) = auth.auth_provider.as_mut() {
        let drop = provider.config.entry("cmd-drop-env".to_owned()).or_default();
        let names: Vec<String> =
            drop.split_whitespace().map(String::from).chain(hidden_from_plugins().map(String::from)).collect();
        *drop = names.join(" ");
    }
}

/// Caps every response body at the given size while it is read (kube-rs buffers whole bodies).
#[derive(Clone, Copy)]
struct BodyLimit(usize);

impl<S> tower::Layer<S> for BodyLimit {
    type Service = BodyLimited<S>;

    fn layer(&self, inner: S) -> BodyLimited<S> {
        BodyLimited { inner, max: self.0 }
    }
}

#[derive(Clone)]
struct BodyLimited<S> {
    inner: S,
    max: usize,
}

impl<S, Req, B> tower::Service<Req> for BodyLimited<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<http_body_util::Limited<B>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        use futures::TryFutureExt;
        let max = self.max;
        Box::pin(self.inner.call(request).map_ok(move |r| r.map(|body| http_body_util::Limited::new(body, max))))
    }
}

//! kubesim: a local Kubernetes API server for tests and the sandbox.
//!
//! `README.md` next to this file says what it implements, what it deliberately does not,
//! and how it differs from the real API server (checked by a differential suite that
//! runs every kubesim test against a real kube-apiserver too).
//!
//! It speaks the real wire protocol over HTTP, generically for every resource (one store
//! and one set of handlers; kinds differ only by their `ResourceDef` (`resources/def.rs`)), and
//! runs either in-process behind a [`kube::Client`] (no sockets) or on 127.0.0.1.
//!
//! ```no_run
//! # async fn demo() -> kubesim::Result<()> {
//! use kubesim::KubeSim;
//! let sim = KubeSim::new();
//! let client = sim.client(); // in-process
//! let server = sim.serve_tcp("127.0.0.1:0".parse().expect("literal address")).await?;
//! server.write_kubeconfig("kubesim.kubeconfig".as_ref())?; // for kubectl or a process
//! sim.faults().fail_next_writes("configmaps", 2, 500);
//! assert_eq!(sim.write_counts().total(), 0);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Implemented
//! - Resources: Namespace (`default`, `kube-system`, `kube-public`, `kube-node-lease`
//!   exist at start), ServiceAccount, ConfigMap, Pod (stored, never run; status starts
//!   `Pending`), core/v1 Event and events.k8s.io/v1 Event (one store, as in the real
//!   server: an Event written through either API is read through both, with the fields
//!   renamed; see `StoredAs` in `resources/def.rs`), coordination.k8s.io/v1 Lease, apps/v1
//!   Deployment (stored, never rolled out: no ReplicaSets or Pods follow), the four
//!   rbac.authorization.k8s.io/v1 kinds (stored, never enforced),
//!   apiextensions.k8s.io/v1 CustomResourceDefinition. A created CRD registers its
//!   served versions (no conversion: objects are stored once and served at any served
//!   version with `apiVersion` rewritten, as `conversion: None` does), scope, short
//!   names, categories, status subresource and printer columns, and gets `NamesAccepted`
//!   and `Established`; deleting it deletes its objects (finalizers respected) and then
//!   unregisters it.
//! - Verbs: get, list (label selectors with every operator; field selectors on the fields
//!   the real server offers: `metadata.name`/`metadata.namespace`, the Pod, Namespace and
//!   Event fields, a CRD's `selectableFields`; `limit`/`continue`), watch,
//!   create (`generateName`, uid, creationTimestamp, generation 1 on the kinds that have one:
//!   Pods, Deployments, CRDs, custom resources), update (stale
//!   resourceVersion → 409 Conflict; custom resources require a resourceVersion as the
//!   real server does), patch (merge, JSON patch with `test`, strategic merge for built-in
//!   kinds, server-side apply: see `patch.rs` and `apply.rs` for the covered cases), delete
//!   (finalizers: deletionTimestamp set and object returned; removed when the last
//!   finalizer goes; new finalizers refused while deleting; uid/resourceVersion
//!   preconditions; `propagationPolicy` Background, Orphan, and Foreground: the owner
//!   keeps a `foregroundDeletion` finalizer until its dependents with
//!   `blockOwnerDeletion` are gone), deletecollection,
//!   `dryRun`, `fieldValidation=Strict` (unknown custom resource fields → 400).
//! - Generation bumps when anything but metadata (and status, with a status subresource)
//!   changes, and when deletion starts; with the status subresource, main-resource writes
//!   keep the old status and `/status` writes change only status. Writes that change
//!   nothing keep the resourceVersion and emit no event.
//! - Watch: `watch=1`, `resourceVersion` (unset or "0": current objects as ADDED first),
//!   `sendInitialEvents` (with the `k8s.io/initial-events-end` bookmark),
//!   `allowWatchBookmarks`, `timeoutSeconds`, label and field selectors; one global
//!   resourceVersion order; bounded history, a too-old resourceVersion answers an ERROR
//!   event with a 410 Expired Status.
//! - Namespaces: writes into a missing namespace → 404, into a terminating one → 403;
//!   deleting a namespace deletes its content and the namespace goes when it is empty.
//! - Garbage collection by ownerReferences: when an object is removed, dependents whose
//!   owners are all gone are deleted (dependents with finalizers get a deletionTimestamp
//!   and stay until their finalizers go); an object written with ownerReferences none of
//!   which resolves (missing uid, or an owner in another namespace) is deleted too. It
//!   runs in the same transaction as the write that triggers it rather than a moment
//!   later.
//! - Custom resources: schema pruning, defaults, validation and CEL rules (`schema.rs`).
//! - Events: validated by the rules of the API they are written through (`events.rs`).
//! - Built-in kinds are decoded as their k8s-openapi types, as the real server decodes
//!   them: a wrongly typed field → 400 (`Pod in version "v1" cannot be handled as a
//!   Pod: ...`), unknown fields dropped (400 with `fieldValidation=Strict`). CRDs need a
//!   schema per served version.
//! - Errors: `metav1.Status` with the real codes, reasons, messages and causes (400, 403,
//!   404, 405, 409 AlreadyExists/Conflict, 410, 415, 422); malformed bodies → 400; invalid
//!   names (RFC 1123) → 422; a rejected request changes nothing.
//! - Discovery (legacy and aggregated), OpenAPI v3 enough for `kubectl apply`, Tables
//!   for `kubectl get` and `get -w` (`discovery.rs`, `table.rs`), and
//!   `PartialObjectMetadata` for metadata-only clients (get, list, watch).
//! - Faults and counters (`faults.rs`).
//!
//! # Not implemented
//! Authentication and authorization (every request is allowed); TLS (plain http);
//! protobuf (protobuf bodies get 415, so `kubectl create configmap|namespace|...`, which
//! send protobuf, fail, while `kubectl apply`/`create -f` send JSON and work);
//! `/openapi/v2` and OpenAPI component schemas (`kubectl explain`); conversion and
//! admission webhooks; graceful deletion periods; `resourceVersionMatch` on lists (lists
//! are served from the latest state; continue tokens page it in key order rather than
//! from a snapshot); `/watch/` path prefixes and watches of a single named object by path;
//! subresources other than `status` (`finalize` of namespaces is routed but behaves as an
//! update); controllers of any kind (no Pods run, no default ServiceAccounts or tokens
//! are made); re-checking a foreground deletion when a dependent drops its ownerReference by an
//! update (it is re-checked when a dependent is removed); errors about events.k8s.io
//! Events name the storage resource (`events`).
//!
//! # Public API
//! [`KubeSim`] (with [`Options`]): `client()` (in-process), `router()` (the tower
//! service), `serve_tcp(addr)` → [`ServerHandle`] (`addr`, `url`, `kubeconfig`,
//! `write_kubeconfig`, `client`, `shutdown`, `serve_until`), `faults()` → [`Faults`],
//! `write_counts()` → [`WriteCounts`] by resource and [`Verb`], `reset_write_counts()`,
//! `resource_version()`, `compact_history()`; [`kubeconfig_yaml`].

mod apply;
mod crd;
mod discovery;
mod error;
mod events;
mod failure;
mod faults;
mod gc;
mod http;
mod kinds;
mod meta;
mod patch;
pub mod rbac;
mod re2;
mod resources;
mod schema;
mod serve;
mod store;
mod table;
mod watch;
mod writes;

use std::sync::Arc;
use std::time::Duration;

pub use error::{Error, Result};
pub use faults::{Faults, Verb, WriteCounts};
pub use serve::{ServerHandle, kubeconfig_yaml};

use faults::WriteCounters;
use store::Store;

/// Tunables of a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch events retained for resuming watches; older resourceVersions answer 410.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// How many events a watcher may fall behind (not reading its stream) before its
    /// watch ends with 410 Expired, as the real server ends slow watchers.
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            watch_buffer: 4096,
        }
    }
}

pub(crate) struct Shared {
    pub store: Store,
    pub faults: Faults,
    pub counters: WriteCounters,
    pub options: Options,
}

/// One simulated API server. Cheap to clone; clones share the same state.
#[derive(Clone)]
pub struct KubeSim {
    shared: Arc<Shared>,
}

impl Default for KubeSim {
    fn default() -> Self {
        Self::new()
    }
}

impl KubeSim {
    pub fn new() -> Self {
        Self::with_options(Options::default())
    }

    pub fn with_options(options: Options) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Store::new(options.history_limit, options.watch_buffer),
                faults: Faults::default(),
                counters: WriteCounters::default(),
                options,
            }),
        }
    }

    /// The server as an axum router (a tower service), for any transport.
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }

    /// A client talking to this server in-process; default namespace `default`. Needs a
    /// Tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// A client whose resource requests must be granted by these ClusterRole rules
    /// (403 Forbidden otherwise), as for a ServiceAccount bound to that ClusterRole.
    pub fn client_with_rules(
        &self,
        user: &str,
        rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    ) -> kube::Client {
        let rules = Arc::new(rules);
        let user = Arc::new(user.to_owned());
        let check = move |req: axum::extract::Request, next: axum::middleware::Next| {
            let (rules, user) = (rules.clone(), user.clone());
            async move {
                let uri = req.uri();
                if let Some(a) =
                    rbac::attributes(req.method().as_str(), uri.path(), uri.query().unwrap_or(""))
                    && !rbac::allowed(&rules, &a)
                {
                    let gr = resources::GroupResource::new(&a.group, &a.resource);
                    let detail = format!(
                        "User \"{user}\" cannot {} resource \"{}\" in API group \"{}\"",
                        a.verb, a.resource, a.group
                    );
                    tracing::debug!(%detail, "kubesim RBAC denied");
                    return http::failure(&failure::Failure::forbidden(
                        &gr,
                        a.name.as_deref().unwrap_or_default(),
                        &detail,
                    ));
                }
                next.run(req).await
            }
        };
        kube::Client::new(
            self.router().layer(axum::middleware::from_fn(check)),
            "default",
        )
    }

    /// Serves on `addr` (use port 0 for any free port) until the handle is shut down.
    pub async fn serve_tcp(&self, addr: std::net::SocketAddr) -> crate::Result<ServerHandle> {
        serve::serve_tcp(self.clone(), addr).await
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Write requests received so far, by resource and verb.
    pub fn write_counts(&self) -> WriteCounts {
        self.shared.counters.snapshot()
    }

    pub fn reset_write_counts(&self) {
        self.shared.counters.reset();
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().resource_version()
    }

    /// Forgets the watch history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.shared.store.lock().compact();
    }
}

//! The one error type of the library, and the classes AWS failures fall into.

use std::fmt;

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("AWS {0}")]
    Aws(AwsError),

    /// kubesim could not serve or hand out a client (sandbox and tests only).
    #[cfg(feature = "sandbox")]
    #[error("kubesim: {0}")]
    KubeSim(#[from] kubesim::Error),

    /// The AWS client could not be configured (no region, bad endpoint).
    #[error("AWS configuration: {0}")]
    AwsConfig(String),

    /// An AWS answer this crate cannot use (a policy document that is not JSON, a field
    /// AWS always sets missing).
    #[error("unexpected AWS answer to {operation}: {message}")]
    AwsAnswer { operation: String, message: String },

    /// A binding's spec the operator cannot act on; `field` is its path under `spec`.
    #[error("invalid spec.{field}: {message}")]
    InvalidSpec { field: String, message: String },

    /// A preset asked for by name (`pod-identity-operator presets show`) that does not
    /// exist, or parameters it does not take.
    #[error("preset {name}: {message}")]
    Preset { name: String, message: String },

    /// A manifest file the sandbox cannot apply.
    #[error("manifest {path}: {message}")]
    Manifest { path: String, message: String },

    /// A binding outside the guardrail rule governing its namespace; `field` is the
    /// path of the field refused (`metadata.namespace` when no rule matches).
    #[error("{field} denied by guardrail rule {rule:?}: {message}")]
    PolicyDenied {
        rule: String,
        field: String,
        message: String,
    },

    /// A local AWS server (moto, ministack) the sandbox needs cannot be found or started.
    #[error("local AWS server: {0}")]
    LocalServer(String),

    /// The guardrail configuration cannot be used.
    #[error("guardrail configuration: {0}")]
    Config(String),

    /// Leader election could not start or stopped.
    #[error("leader election: {0}")]
    LeaderElection(String),

    /// A reconcile pass still running at its deadline (`Settings::pass_deadline`).
    #[error("the reconcile pass did not finish within {0:?}; retrying")]
    PassTimeout(std::time::Duration),

    /// Adding or removing the binding's finalizer failed, or its reconcile did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// A command's arguments ask for what it cannot do (a flag missing or malformed for
    /// this use, a result over a limit); the message names the flag and the fix.
    #[error("{0}")]
    Usage(String),

    /// A failure, with what was being done when it happened (`cannot read FILE`).
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A command this binary was built without: `kubesim` and `sandbox` need the Cargo
    /// feature `sandbox`, which the production image leaves out.
    #[error(
        "`{0}` is not in this build: this binary was built without the Cargo feature \
         `sandbox` (kubesim and the AWS simulator), as the production image is; build one \
         with the default features for it: `cargo run --release -- {0}`"
    )]
    NotInThisBuild(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        Error::Aws(e)
    }
}

impl Error {
    /// `source`, with what was being done when it happened.
    pub fn context(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// The AWS failure inside, if this is one.
    pub fn aws(&self) -> Option<&AwsError> {
        match self {
            Error::Aws(e) => Some(e),
            _ => None,
        }
    }
}

/// What kind of AWS failure this is; it decides how the caller retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, dispatch failures, concurrent modification:
    /// retry with backoff.
    Transient,
    /// A resource just created is not yet visible to another service: retry soon,
    /// within a bounded window.
    Propagation,
    /// The request itself is wrong (malformed policy, bad ARN, name too long): no retry
    /// until the input changes.
    UserInput,
    /// The resource exists, or is in use, or is held by something else.
    Conflict,
    /// Missing permission or credentials.
    AccessDenied,
    /// The resource does not exist.
    NotFound,
    /// A service quota or limit is exhausted.
    Quota,
}

/// One failed AWS call, with what is needed to classify, report and log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    pub class: ErrorClass,
    /// The API operation, e.g. `CreateRole`.
    pub operation: String,
    /// The service's error code, e.g. `EntityAlreadyExists`, or a local code such as
    /// `DispatchFailure` when no answer came.
    pub code: String,
    pub message: String,
    /// True when AWS throttled the call; counted apart in metrics.
    pub throttled: bool,
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.operation, self.code, self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

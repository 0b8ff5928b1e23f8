//! The one error type of the library, and the classes AWS failures fall into.

pub use pod_identity_aws::{AwsError, ErrorClass};

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

/// An AWS call's failure, as the same variant here (their messages read the same).
impl From<pod_identity_aws::Error> for Error {
    fn from(e: pod_identity_aws::Error) -> Self {
        use pod_identity_aws::Error as E;
        match e {
            E::Aws(e) => Error::Aws(e),
            E::AwsConfig(m) => Error::AwsConfig(m),
            E::AwsAnswer { operation, message } => Error::AwsAnswer { operation, message },
            E::Io(e) => Error::Io(e),
            E::Json(e) => Error::Json(e),
        }
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

//! The crate's error type, and the classes AWS failures fall into.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// Every failure of an AWS call, an AWS client's set-up, or the simulator's front.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call AWS (or the simulator) answered with an error, or that got no answer.
    #[error("AWS {0}")]
    Aws(AwsError),

    /// The AWS client could not be configured (no region, bad endpoint).
    #[error("AWS configuration: {0}")]
    AwsConfig(String),

    /// An AWS answer this crate cannot use (a policy document that is not JSON, a field
    /// AWS always sets missing).
    #[error("unexpected AWS answer to {operation}: {message}")]
    AwsAnswer { operation: String, message: String },

    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<AwsError> for Error {
    fn from(e: AwsError) -> Self {
        Error::Aws(e)
    }
}

impl Error {
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

/// Parses a policy as IAM returns it: URL-encoded JSON (GetRole, GetRolePolicy), or
/// plain JSON (some servers, and documents already decoded).
pub fn decode_policy(text: &str) -> Result<Value> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(serde_json::from_str(text)?);
    }
    // IAM encodes with `%XX` (a `+` in the document arrives as `%2B`); a decoder that
    // also reads `+` as a space is tried second, for servers encoding form-style.
    let strict = percent_decode_str(text).decode_utf8_lossy();
    match serde_json::from_str(&strict) {
        Ok(v) => Ok(v),
        Err(first) => {
            let form = percent_decode_str(&text.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            serde_json::from_str(&form).map_err(|_| first.into())
        }
    }
}

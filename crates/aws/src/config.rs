//! Building the SDK configuration the adapters run with.
//!
//! Credentials come from `aws-config`'s standard chain: environment variables, the
//! shared profile files, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`), and container
//! credentials, which is how EKS Pod Identity hands them to a pod
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI` plus `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`),
//! then instance metadata. The region comes from [`AwsSettings::region`] when set,
//! otherwise from the chain. Retries use the SDK's adaptive mode, which also slows the
//! client down when AWS throttles. An endpoint override exists for tests against
//! wire-protocol servers.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};

use crate::{Error, Result};

/// What the command line says about reaching AWS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// The region; `None` takes it from the environment or profile.
    pub region: Option<String>,
    /// Send every call to this URL instead of AWS (tests against moto or ministack).
    pub endpoint_url: Option<String>,
    /// Attempts per call, the first included, before an error is returned.
    pub max_attempts: u32,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of a call, answer included.
    pub attempt_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// A loader with the settings applied and credentials left to the standard chain;
/// callers that need something else (tests with fixed credentials) change it before
/// [`ConfigLoader::load`].
pub fn config_loader(settings: &AwsSettings) -> ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::adaptive().with_max_attempts(settings.max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// Loads the configuration through the standard chain; fails when no region can be
/// found, since every EKS call needs one.
pub async fn load_sdk_config(settings: &AwsSettings) -> Result<SdkConfig> {
    checked(config_loader(settings).load().await)
}

/// The loaded configuration, refused when it has no region.
pub fn checked(config: SdkConfig) -> Result<SdkConfig> {
    if config.region().is_none() {
        return Err(Error::AwsConfig(
            "no AWS region: set --region, AWS_REGION, or a region in the AWS profile".into(),
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[tokio::test]
    async fn explicit_region_endpoint_and_adaptive_retries_are_applied() {
        let settings = AwsSettings {
            region: Some("eu-west-3".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            max_attempts: 7,
            ..AwsSettings::default()
        };
        let config = config_loader(&settings)
            .credentials_provider(Credentials::new("a", "b", None, None, "test"))
            .load()
            .await;
        let config = checked(config).expect("region was given");
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:1"));
        let retry = config.retry_config().expect("retry config set");
        assert_eq!(retry.mode(), aws_config::retry::RetryMode::Adaptive);
        assert_eq!(retry.max_attempts(), 7);
        let timeouts = config.timeout_config().expect("timeouts set");
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_configuration_without_region_is_refused() {
        let config = SdkConfig::builder().build();
        let err = checked(config).expect_err("no region");
        assert!(matches!(err, Error::AwsConfig(m) if m.contains("region")));
    }
}

//! Clients for local AWS-compatible servers (moto, ministack) and the set-up calls a
//! local account needs that the operator itself never makes: CreateCluster and
//! CreatePolicy. The sandbox's wire mode uses them, so that outside this crate no code
//! holds an SDK type.

use std::sync::Arc;

use aws_credential_types::Credentials;
use serde_json::Value;

use crate::Result;
use crate::classify::classify;
use crate::config::{AwsSettings, config_loader};
use crate::eks::SdkEks;
use crate::iam::SdkIam;

/// The SDK configuration the operator builds for itself ([`config_loader`]) with
/// `settings`, signing with `access_key_id` and a fixed secret: what a local server
/// (moto, ministack, the simulator's front) accepts.
pub async fn local_config(settings: AwsSettings, access_key_id: &str) -> aws_config::SdkConfig {
    config_loader(&settings)
        .credentials_provider(Credentials::new(
            access_key_id,
            "local-server-secret",
            None,
            None,
            "pod-identity-local",
        ))
        .load()
        .await
}

/// IAM and EKS on local servers, with fixed credentials (the servers accept any).
pub struct LocalAccount {
    pub iam: Arc<SdkIam>,
    pub eks: Arc<SdkEks>,
    iam_client: aws_sdk_iam::Client,
    eks_client: aws_sdk_eks::Client,
}

impl LocalAccount {
    /// Clients for IAM at `iam_url` and EKS at `eks_url`, in `region`, signing with
    /// `access_key_id`.
    pub async fn connect(
        iam_url: &str,
        eks_url: &str,
        region: &str,
        access_key_id: &str,
    ) -> LocalAccount {
        let config = |url: &str| {
            let settings = AwsSettings {
                region: Some(region.into()),
                endpoint_url: Some(url.into()),
                ..AwsSettings::default()
            };
            local_config(settings, access_key_id)
        };
        let (iam_config, eks_config) = (config(iam_url).await, config(eks_url).await);
        LocalAccount {
            iam: Arc::new(SdkIam::new(&iam_config)),
            eks: Arc::new(SdkEks::new(&eks_config)),
            iam_client: aws_sdk_iam::Client::new(&iam_config),
            eks_client: aws_sdk_eks::Client::new(&eks_config),
        }
    }

    /// CreateCluster with an empty VPC configuration.
    pub async fn create_cluster(&self, name: &str, role_arn: &str) -> Result<()> {
        self.eks_client
            .create_cluster()
            .name(name)
            .role_arn(role_arn)
            .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
            .send()
            .await
            .map_err(|e| classify("CreateCluster", &e))?;
        Ok(())
    }

    /// CreatePolicy: a customer-managed policy named `name`.
    pub async fn create_policy(&self, name: &str, document: &Value) -> Result<()> {
        self.iam_client
            .create_policy()
            .policy_name(name)
            .policy_document(document.to_string())
            .send()
            .await
            .map_err(|e| classify("CreatePolicy", &e))?;
        Ok(())
    }
}

//! The SDK adapters over the wire: IAM against moto, EKS against ministack, each a fresh
//! server (see `servers`), with the configuration the operator builds for itself
//! (`config_loader`) plus an endpoint override and fixed test credentials.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use pod_identity_operator::aws::config::{AwsSettings, config_loader};
use pod_identity_operator::aws::eks::SdkEks;
use pod_identity_operator::aws::iam::SdkIam;

use crate::backend::{Backend, BackendKind};
use crate::servers::{self, ACCOUNT_ID, Kind};

pub const REGION: &str = "us-east-1";
const CLUSTER: &str = "contract";

/// The configuration the adapters get, pointed at one test server.
pub async fn sdk_config(url: &str) -> SdkConfig {
    let settings = AwsSettings {
        region: Some(REGION.into()),
        endpoint_url: Some(url.into()),
        ..AwsSettings::default()
    };
    config_loader(&settings)
        .credentials_provider(Credentials::new(
            "AKIACONTRACTTESTS",
            "contract-secret",
            None,
            None,
            "contract-tests",
        ))
        .load()
        .await
}

/// Creates the EKS cluster the cases use (set-up only: the operator never creates one).
async fn create_cluster(config: &SdkConfig, name: &str) {
    let eks = aws_sdk_eks::Client::new(config);
    eks.create_cluster()
        .name(name)
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster"))
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateCluster on ministack: {e:?}"));
}

pub async fn start() -> Backend {
    let (moto, ministack) =
        tokio::join!(servers::lease(Kind::Moto), servers::lease(Kind::Ministack));
    let iam_config = sdk_config(&moto.url()).await;
    let eks_config = sdk_config(&ministack.url()).await;
    create_cluster(&eks_config, CLUSTER).await;
    Backend {
        kind: BackendKind::Wire,
        iam: Arc::new(SdkIam::new(&iam_config)),
        eks: Arc::new(SdkEks::new(&eks_config)),
        cluster_name: CLUSTER.into(),
        account_id: ACCOUNT_ID.into(),
        _guard: Box::new((moto, ministack)),
    }
}

crate::cases::all_cases!();

//! `pod-identity-operator audit`: a read-only report of a cluster's identity wiring, as
//! it stands before (and after) a move from IRSA and hand-made associations to
//! `PodIdentityBinding`s.
//!
//! [`observe`] reads what is there (Kubernetes: bindings, ServiceAccounts, the Pod
//! Identity Agent's DaemonSet; AWS: the cluster, its associations, its add-ons, the roles
//! under the operator's path and the roles the associations and IRSA annotations name),
//! with reads only. [`findings`] is a pure function of that observation, one
//! [`Finding`] per thing worth a platform team's attention, each with a [`Severity`];
//! `migrate` plans from the same observation.

mod findings;
mod model;
mod read;
mod report;

pub use findings::{
    admits_pod_identity, findings, scoped_by_session_tags, unscoped_pod_identity_statements,
    update_addon_step,
};
pub use model::{
    AGENT_NAME, AGENT_NAMESPACE, CREDENTIAL_CHAIN_DOCS, Finding, IrsaServiceAccount, Kind,
    Observed, Owner, Selection, Severity,
};
pub use read::observe;
pub use report::{Report, render_table, table};

use kube::Client;

use crate::Result;
use crate::aws::{EksApi, IamApi};
use crate::cli::connection::{Connection, Output};

/// Observes and reports.
pub async fn audit(
    client: &Client,
    iam: &dyn IamApi,
    eks: &dyn EksApi,
    cluster_name: &str,
) -> Result<Report> {
    let o = observe(client, iam, eks, cluster_name, &Selection::default()).await?;
    Ok(Report {
        cluster: cluster_name.to_owned(),
        findings: findings(&o),
    })
}

/// The clients of a [`Connection`]: Kubernetes, IAM and EKS through the SDK.
pub struct Clients {
    pub kube: Client,
    pub iam: crate::aws::iam::SdkIam,
    pub eks: crate::aws::eks::SdkEks,
}

impl Clients {
    /// The clients the connection flags of `audit` and `migrate` name.
    pub async fn connect(connection: &Connection) -> Result<Clients> {
        use crate::aws::config::{AwsSettings, load_sdk_config};
        // kube's TLS needs a process-wide rustls provider; one already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sdk = load_sdk_config(&AwsSettings {
            region: connection.region.clone(),
            endpoint_url: connection.aws_endpoint_url.clone(),
            ..AwsSettings::default()
        })
        .await?;
        Ok(Clients {
            kube: Client::try_default().await?,
            iam: crate::aws::iam::SdkIam::new(&sdk),
            eks: crate::aws::eks::SdkEks::new(&sdk),
        })
    }
}

/// Runs `audit`: prints the report and returns whether it fails `fail_on`.
pub async fn run(connection: &Connection, output: Output, fail_on: Severity) -> Result<bool> {
    let c = Clients::connect(connection).await?;
    let report = audit(&c.kube, &c.iam, &c.eks, &connection.cluster_name).await?;
    match output {
        Output::Table => print!("{}", render_table(&report)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.fails(fail_on))
}

#[cfg(test)]
mod tests;

//! The arguments of `iam-policy`.

use crate::operator_policy::{self, Installation, PolicyDocument};

/// Options of `iam-policy`.
#[derive(clap::Args, Debug)]
pub struct IamPolicyArgs {
    /// Name of the EKS cluster the operator runs in.
    #[arg(long)]
    pub cluster_name: String,
    /// The AWS account of the cluster.
    #[arg(long)]
    pub account: String,
    /// The cluster's region.
    #[arg(long)]
    pub region: String,
    /// The guardrail file the operator runs with (`run --config`); needed for the
    /// permissions document.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The operator's own role, denied to the policy and refused in bindings.
    #[arg(long)]
    pub operator_role_arn: Option<String>,
    /// The operator's namespace and ServiceAccount, admitted by `--document trust`.
    #[arg(long, default_value = operator_policy::OPERATOR_NAMESPACE)]
    pub namespace: String,
    #[arg(long, default_value = operator_policy::OPERATOR_SERVICE_ACCOUNT)]
    pub service_account: String,
    /// Which document: the permissions policy or the trust policy of the operator's role.
    #[arg(long, value_enum, default_value = "permissions")]
    pub document: PolicyDocument,
}

impl IamPolicyArgs {
    /// The installation these flags describe.
    pub fn installation(&self) -> Installation {
        let mut inst = Installation::new(&self.cluster_name, &self.account, &self.region)
            .with_operator_role(self.operator_role_arn.clone());
        inst.namespace = self.namespace.clone();
        inst.service_account = self.service_account.clone();
        inst
    }
}

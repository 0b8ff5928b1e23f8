//! Where the end-to-end suite runs: kubesim and the local AWS servers by default, or an
//! external cluster (`E2E_KUBECONFIG`, a kubeconfig file, e.g. a kind cluster's) and an
//! external AWS endpoint (`E2E_AWS_ENDPOINT`: moto/ministack or LocalStack elsewhere,
//! holding the EKS cluster named by `E2E_CLUSTER_NAME`, default `e2e`). Only the tests
//! that need neither kubesim's fault injection nor the simulator's knobs honour it.

use std::path::PathBuf;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub aws_endpoint: Option<String>,
    pub cluster_name: String,
}

impl Target {
    pub fn from_env() -> Result<Target, String> {
        Target::parse(|key| std::env::var(key).ok())
    }

    /// Reads the settings through `get` (an empty value counts as unset).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Target, String> {
        let get = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let kubeconfig = get("E2E_KUBECONFIG").map(PathBuf::from);
        if let Some(path) = &kubeconfig
            && !path.is_file()
        {
            return Err(format!("E2E_KUBECONFIG={}: no such file", path.display()));
        }
        let aws_endpoint = get("E2E_AWS_ENDPOINT");
        if let Some(url) = &aws_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("E2E_AWS_ENDPOINT={url}: not an http(s) URL"));
        }
        let cluster_name = get("E2E_CLUSTER_NAME").unwrap_or_else(|| "e2e".into());
        Ok(Target {
            kubeconfig,
            aws_endpoint,
            cluster_name,
        })
    }
}

//! How the operator reads what AWS answers, and what it refuses before asking: the
//! managed role's trust without session tags, AWS errors that say something about the
//! spec (a managed policy that does not exist, a cross-account role, a trust policy not
//! yet propagated, quotas and sizes known in advance), the association's `externalId`
//! in the status, and per-binding bookkeeping (backoff entries, the pass deadline).

use std::sync::Arc;

use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::Settings;
use serde_json::json;

mod support;

use support::{Env, NS};

const CLUSTER: &str = "prod";

async fn start(config: SimConfig, tune: impl FnOnce(&mut Settings)) -> (Env, Arc<AwsSim>) {
    let aws = Arc::new(AwsSim::new(config));
    aws.add_cluster(CLUSTER);
    let env = Env::start(CLUSTER, aws.clone(), aws.clone(), tune).await;
    (env, aws)
}

/// The trust policy of the role the association of ServiceAccount `sa` names.
fn associated_trust(aws: &AwsSim, sa: &str) -> serde_json::Value {
    let inv = aws.inventory();
    let assoc = inv.associations_for(NS, sa);
    let arn = &assoc.first().expect("an association").role_arn;
    inv.roles
        .iter()
        .find(|r| &r.role.arn == arn)
        .map(|r| r.role.assume_role_policy.clone())
        .expect("the associated role exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_session_tags_the_trust_still_names_the_source_account_and_cluster() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("untagged", json!({"disableSessionTags": true}))
        .await;
    let b = env.wait_converged("untagged").await;
    let cluster_arn = aws.inventory().clusters[0].arn.clone();
    let trust = associated_trust(&aws, "untagged");
    let cond = &trust["Statement"][0]["Condition"];
    assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "111122223333");
    assert_eq!(cond["ArnEquals"]["aws:SourceArn"], cluster_arn.as_str());
    assert!(!trust.to_string().contains("aws:RequestTag/"), "{trust}");
    let role = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "RoleReady"))
        .expect("RoleReady");
    assert!(
        role.message.contains("scoped to cluster prod"),
        "{}",
        role.message
    );
    env.stop().await;
}

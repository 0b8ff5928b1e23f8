//! What failures log: the AWS request IDs, never the policy bodies.

use pod_identity_operator::aws::faults::{Fault, Service};
use serde_json::json;

use crate::{allow, logs, start};

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_logged_with_request_ids_and_without_policy_bodies() {
    let (env, aws) = start().await;
    let secret = "arn:aws:s3:::private-bucket-7f3a/confidential/*";
    aws.knobs()
        .fail_next("PutRolePolicy", Fault::server_error(Service::Iam));
    env.apply(
        "logged",
        json!({"role": {"inlinePolicies": {"p": allow("s3:GetObject", secret)}},
            "tags": {"owner": "team"}}),
    )
    .await;
    env.wait_converged("logged").await;
    let logs = logged();
    let failure = logs
        .lines()
        .find(|l| l.contains("PutRolePolicy failed"))
        .unwrap_or_else(|| panic!("the failed call is logged:\n{logs}"));
    assert!(failure.contains("request id "), "{failure}");
    assert!(
        !logs.contains("private-bucket-7f3a"),
        "a policy body was logged:\n{logs}"
    );
    assert!(
        !logs.contains("\"Statement\""),
        "a policy document was logged:\n{logs}"
    );
    env.stop().await;
}

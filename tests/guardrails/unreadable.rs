//! A binding the operator cannot read (a spec the schema would have refused): deleting it
//! cleans what can be known of it.

use std::time::{Duration, Instant};

use kube::Client;
use pod_identity_operator::aws::sim::AwsSim;
use serde_json::{Value, json};

use crate::support::{NS, WAIT};
use crate::{raw, start, verdict};

/// (roles, associations) in AWS carrying the ownership tags of binding `name`.
fn owned(aws: &AwsSim, name: &str) -> (usize, usize) {
    let tag = pod_identity_operator::naming::TAG_NAME;
    let inv = aws.inventory();
    let mine = |tags: &std::collections::BTreeMap<String, String>| {
        tags.get(tag).map(String::as_str) == Some(name)
    };
    (
        inv.roles.iter().filter(|r| mine(&r.role.tags)).count(),
        inv.associations.iter().filter(|a| mine(&a.tags)).count(),
    )
}

/// Waits for a Ready condition whose reason is `reason` and returns its message.
async fn wait_reason(client: &Client, ns: &str, name: &str, reason: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, message) = verdict(client, ns, name).await;
        if got == reason {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name}: still {got}: {message}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the (possibly unreadable) binding is gone.
async fn wait_gone(client: &Client, name: &str) {
    let deadline = Instant::now() + WAIT;
    while raw(client, NS).get_opt(name).await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "{name} never went away");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn spoil(client: &Client, name: &str, spec: Value) {
    raw(client, NS)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("spec patched");
}

/// A binding that became unreadable and is then deleted: what can be known from its
/// name, namespace, readable fields, status and ownership tags is removed and the
/// finalizer goes; what cannot be known keeps the finalizer, with the fix in the status
/// and an Event, until the spec is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unreadable_binding_cleans_what_can_be_known() {
    let (env, aws) = start().await;
    let spec = json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}});
    for name in ["readable-role", "unreadable-role", "unreadable-policy"] {
        env.apply(name, spec.clone()).await;
    }
    for name in ["readable-role", "unreadable-role", "unreadable-policy"] {
        env.wait_converged(name).await;
        assert_eq!(owned(&aws, name), (1, 1), "{name}");
    }
    // Unreadable elsewhere than the role (derived name, prefixed by the rule): fully
    // cleaned, finalizer removed.
    spoil(
        &env.client,
        "readable-role",
        json!({"serviceAccount": {"create": "yes"}}),
    )
    .await;
    // The role's name cannot be read; the association can still be found by its tags.
    spoil(&env.client, "unreadable-role", json!({"role": "admin"})).await;
    // Whether to delete at all cannot be known.
    spoil(
        &env.client,
        "unreadable-policy",
        json!({"deletionPolicy": "Sometimes"}),
    )
    .await;
    for name in ["readable-role", "unreadable-role", "unreadable-policy"] {
        wait_reason(&env.client, NS, name, "InvalidSpec").await;
        raw(&env.client, NS)
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .expect("delete");
    }

    wait_gone(&env.client, "readable-role").await;
    assert_eq!(owned(&aws, "readable-role"), (0, 0));

    let message = wait_reason(&env.client, NS, "unreadable-role", "CleanupBlocked").await;
    for fragment in [
        "spec.role cannot be read",
        "kubectl edit podidentitybinding unreadable-role -n default",
        "podidentity.dev/cleanup",
    ] {
        assert!(message.contains(fragment), "{fragment:?} in {message}");
    }
    let note = env.wait_warning("unreadable-role", "CleanupBlocked").await;
    assert!(note.contains("spec.role cannot be read"), "{note}");
    // The association (found by its tags) and the role status.roleArn names are gone;
    // the finalizer stays for a role the unreadable field may name.
    let deadline = Instant::now() + WAIT;
    while owned(&aws, "unreadable-role") != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            owned(&aws, "unreadable-role")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let message = wait_reason(&env.client, NS, "unreadable-policy", "CleanupBlocked").await;
    assert!(
        message.contains("spec.deletionPolicy cannot be read")
            && message.contains("Delete or Retain"),
        "{message}"
    );
    assert_eq!(owned(&aws, "unreadable-policy"), (1, 1), "nothing removed");
    for name in ["unreadable-role", "unreadable-policy"] {
        let obj = raw(&env.client, NS).get(name).await.expect("still there");
        assert!(
            obj.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"podidentity.dev/cleanup".to_owned())
        );
    }

    // The fixes the messages give unblock the cleanup.
    spoil(&env.client, "unreadable-role", json!({"role": {}})).await;
    spoil(
        &env.client,
        "unreadable-policy",
        json!({"deletionPolicy": "Delete"}),
    )
    .await;
    for name in ["unreadable-role", "unreadable-policy"] {
        wait_gone(&env.client, name).await;
        assert_eq!(owned(&aws, name), (0, 0), "{name}");
    }
    env.stop().await;
}

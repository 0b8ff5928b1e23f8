//! The operator binary against the simulator's HTTP front: every spec update, renames,
//! out-of-band deletes, replaces and bad specs.

use super::*;

/// Where a [`Stack`]'s AWS inventory comes from.
enum StackAws {
    /// The simulator behind its HTTP front (the default).
    Sim {
        sim: Arc<pod_identity_operator::aws::sim::AwsSim>,
        front: tokio::task::JoinHandle<pod_identity_operator::aws::Result<()>>,
    },
    /// `E2E_AWS_ENDPOINT` or real AWS, read through the APIs.
    Api { iam: SdkIam, eks: SdkEks },
}

/// The binary against the target's Kubernetes (kubesim over TCP by default) and AWS
/// (the simulator's HTTP front by default), in namespaces of the test's own.
struct Stack {
    aws: StackAws,
    access: AwsAccess,
    kube: Kube,
    target: Target,
    cluster: String,
    dir: tempfile::TempDir,
    /// The namespaces the test works in; the inventory is limited to them.
    namespaces: Vec<String>,
    operators: Vec<Operator>,
}

impl Stack {
    async fn start(local_cluster: &str) -> Stack {
        use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
        let target = Target::from_env();
        let cluster = target.cluster(local_cluster);
        let (aws, access) = match target.aws {
            AwsTarget::Local => {
                let sim = Arc::new(AwsSim::new(SimConfig {
                    account_id: ACCOUNT_ID.into(),
                    ..SimConfig::default()
                }));
                sim.add_cluster(&cluster);
                support::enforce_rendered(&sim, &cluster, &e2e_guardrails());
                let (url, front) = serve_simulator(sim.clone()).await;
                (StackAws::Sim { sim, front }, local(&url))
            }
            _ => {
                let access = target.aws_access(None);
                let config = access.sdk_config().await;
                let aws = StackAws::Api {
                    iam: SdkIam::new(&config),
                    eks: SdkEks::new(&config),
                };
                (aws, access)
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let (kube, ns) = Kube::start_in(&target, dir.path(), NS).await;
        let mut stack = Stack {
            aws,
            access,
            kube,
            target,
            cluster,
            dir,
            namespaces: Vec::new(),
            operators: Vec::new(),
        };
        stack.watch(&ns);
        stack
    }

    /// The cluster's ARN, as DescribeCluster gives it.
    async fn cluster_arn(&self) -> String {
        let cluster = match &self.aws {
            StackAws::Sim { sim, .. } => sim.describe_cluster(&self.cluster).await,
            StackAws::Api { eks, .. } => eks.describe_cluster(&self.cluster).await,
        };
        cluster
            .expect("DescribeCluster")
            .expect("the cluster exists")
            .arn
    }

    /// The namespace the test works in.
    fn ns(&self) -> &str {
        &self.namespaces[0]
    }

    /// Has `ns` reconciled: on kubesim the one operator (it watches every namespace)
    /// starts with the first; on another cluster each namespace gets an operator
    /// limited to it.
    fn watch(&mut self, ns: &str) {
        self.namespaces.push(ns.to_owned());
        let limit = self.target.external_kube().then_some(ns);
        if self.operators.is_empty() || limit.is_some() {
            let operator = spawn_operator(
                &self.kube.operator_kubeconfig,
                &self.cluster,
                &self.access,
                limit,
                2,
                &self.dir.path().join("operator.log"),
            );
            self.operators.push(operator);
        }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.kube.kubeconfig.clone()
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn bindings(&self, ns: &str) -> Api<PodIdentityBinding> {
        Api::namespaced(self.kube.client.clone(), ns)
    }

    /// What AWS holds for the test's namespaces.
    async fn inventory(&self) -> pod_identity_operator::aws::sim::Inventory {
        let mut inv = match &self.aws {
            StackAws::Sim { sim, .. } => sim.inventory(),
            StackAws::Api { iam, eks } => pod_identity_operator::sandbox::wire::read_inventory(
                iam,
                eks,
                &self.cluster,
                Some(&naming::role_path(&self.cluster)),
            )
            .await
            .expect("inventory through the AWS APIs"),
        };
        let mine = |ns: &str| self.namespaces.iter().any(|n| n == ns);
        inv.roles.retain(|r| {
            r.role
                .tags
                .get(naming::TAG_NAMESPACE)
                .is_some_and(|ns| mine(ns))
        });
        inv.associations.retain(|a| mine(&a.namespace));
        inv
    }

    /// Waits until `pred` holds of the test's part of the account.
    async fn wait_aws(
        &self,
        what: &str,
        pred: impl Fn(&pod_identity_operator::aws::sim::Inventory) -> bool,
    ) {
        let deadline = Instant::now() + WAIT;
        loop {
            let inv = self.inventory().await;
            if pred(&inv) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "AWS never got {what}: {inv:#?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the binding's Ready condition to match, for its current generation.
    async fn wait_reason(
        &self,
        ns: &str,
        name: &str,
        status: &str,
        reason: &str,
    ) -> PodIdentityBinding {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(b) = self.bindings(ns).get_opt(name).await.expect("get")
                && let Some(c) = support::ready(&b)
                && c.status == status
                && c.reason == reason
                && c.observed_generation == b.metadata.generation
            {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "{ns}/{name} never {status} {reason}: {:?}\n{}",
                self.bindings(ns)
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.bindings(self.ns())
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
        self.wait_reason(self.ns(), name, "True", "Reconciled")
            .await;
    }

    async fn stop(mut self) {
        // Bindings left behind are cleaned up by the operators before their namespaces
        // go (on another cluster).
        for ns in self.namespaces.clone() {
            let _ = self
                .bindings(&ns)
                .delete_collection(&Default::default(), &Default::default())
                .await;
        }
        if self.target.external_kube() {
            let deadline = Instant::now() + WAIT;
            for ns in self.namespaces.clone() {
                while self
                    .bindings(&ns)
                    .list(&Default::default())
                    .await
                    .is_ok_and(|l| !l.items.is_empty())
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.operators.clear();
        if let StackAws::Sim { front, .. } = &self.aws {
            front.abort();
        }
        self.kube.stop().await;
    }
}

fn binding(ns: &str, name: &str, spec: serde_json::Value) -> PodIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .expect("binding")
}

/// Each spec field updated in turn through the binary reaches AWS; a ServiceAccount
/// rename moves the association; a second binding on the same ServiceAccount is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_applies_every_spec_update_and_renames() {
    const CLUSTER: &str = "updates";
    let stack = Stack::start(CLUSTER).await;
    let ns = stack.ns().to_owned();
    let ns = ns.as_str();
    let cluster_arn = stack.cluster_arn().await;
    let bindings = stack.bindings(ns);
    bindings
        .create(&Default::default(), &binding(ns, "app", json!({})))
        .await
        .expect("create");
    stack.wait_reason(ns, "app", "True", "Reconciled").await;
    let role_name = naming::default_role_name(&cluster_arn, ns, "app");
    let role = |inv: &pod_identity_operator::aws::sim::Inventory| inv.role(&role_name).cloned();

    stack
        .patch_spec("app", json!({"role": {"description": "updated"}}))
        .await;
    stack
        .wait_aws("the description", |i| {
            role(i).is_some_and(|r| r.role.description.as_deref() == Some("updated"))
        })
        .await;
    stack
        .patch_spec("app", json!({"role": {"maxSessionDuration": 7200}}))
        .await;
    stack
        .wait_aws("the session duration", |i| {
            role(i).is_some_and(|r| r.role.max_session_duration == 7200)
        })
        .await;
    stack
        .patch_spec("app", json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
        .await;
    stack
        .wait_aws("the managed policy", |i| {
            role(i).is_some_and(|r| r.attached_policy_arns == [READ_ONLY])
        })
        .await;
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]});
    stack
        .patch_spec("app", json!({"role": {"inlinePolicies": {"s3": doc}}}))
        .await;
    stack
        .wait_aws("the inline policy", |i| {
            role(i).is_some_and(|r| r.inline_policies.keys().eq(["s3"]))
        })
        .await;
    stack
        .patch_spec("app", json!({"tags": {"team": "blue"}}))
        .await;
    stack
        .wait_aws("the tag", |i| {
            role(i).is_some_and(|r| r.role.tags.get("team").map(String::as_str) == Some("blue"))
        })
        .await;
    let target = "arn:aws:iam::444455556666:role/reader";
    stack
        .patch_spec("app", json!({"targetRoleArn": target}))
        .await;
    stack
        .wait_aws("the target role", |i| {
            i.associations_for(ns, "app")
                .first()
                .is_some_and(|a| a.target_role_arn.as_deref() == Some(target))
        })
        .await;
    stack
        .patch_spec(
            "app",
            json!({"targetRoleArn": null, "disableSessionTags": true, "sessionPolicy": doc}),
        )
        .await;
    stack
        .wait_aws("the session policy", |i| {
            i.associations_for(ns, "app").first().is_some_and(|a| {
                a.disable_session_tags && a.session_policy.is_some() && a.target_role_arn.is_none()
            })
        })
        .await;

    // Rename the ServiceAccount: the association follows, the old one goes.
    stack
        .patch_spec("app", json!({"serviceAccount": {"name": "app-renamed"}}))
        .await;
    stack
        .wait_aws("the association moved", |i| {
            i.associations_for(ns, "app").is_empty()
                && i.associations_for(ns, "app-renamed").len() == 1
        })
        .await;

    // A second binding on the same ServiceAccount loses to the first.
    bindings
        .create(
            &Default::default(),
            &binding(
                ns,
                "second",
                json!({"serviceAccount": {"name": "app-renamed"}}),
            ),
        )
        .await
        .expect("create second");
    stack
        .wait_reason(ns, "second", "False", "AssociationConflict")
        .await;
    let inv = stack.inventory().await;
    assert_eq!(inv.associations_for(ns, "app-renamed").len(), 1);
    assert_eq!(
        inv.associations_for(ns, "app-renamed")[0].role_arn,
        role(&inv).expect("role").role.arn
    );
    stack.stop().await;
}

/// Out-of-band and GitOps-shaped changes through the binary: a ServiceAccount deleted
/// behind the operator's back comes back; a binding deleted and created again at once
/// (`kubectl replace --force`) ends with one role and one association; a deleted
/// namespace takes its bindings' AWS resources with it; bad specs are refused with their
/// reasons, by the API server or by the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_handles_out_of_band_deletes_replaces_and_bad_specs() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    const CLUSTER: &str = "changes";
    let mut stack = Stack::start(CLUSTER).await;
    let ns = stack.ns().to_owned();
    let ns = ns.as_str();
    let cluster_arn = stack.cluster_arn().await;
    let client = stack.kube.client.clone();
    let bindings = stack.bindings(ns);
    bindings
        .create(&Default::default(), &binding(ns, "web", json!({})))
        .await
        .expect("create");
    stack.wait_reason(ns, "web", "True", "Reconciled").await;

    // The ServiceAccount deleted out of band is made again.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.delete("web", &Default::default())
        .await
        .expect("delete SA");
    let deadline = Instant::now() + WAIT;
    while sas.get_opt("web").await.expect("get SA").is_none() {
        assert!(
            Instant::now() < deadline,
            "SA never made again\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.wait_reason(ns, "web", "True", "Reconciled").await;

    // Deleted and applied again at once, as `kubectl replace --force` does.
    let old_uid = bindings.get("web").await.expect("get").metadata.uid;
    kubectl(
        &stack.kubeconfig(),
        &["delete", "pib", "web", "-n", ns, "--wait=false"],
    );
    let deadline = Instant::now() + WAIT;
    while bindings
        .create(
            &Default::default(),
            &binding(ns, "web", json!({"tags": {"v": "2"}})),
        )
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "never re-created\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = stack.wait_reason(ns, "web", "True", "Reconciled").await;
    assert_ne!(b.metadata.uid, old_uid);
    let role_name = naming::default_role_name(&cluster_arn, ns, "web");
    stack
        .wait_aws("one role and one association for the new binding", |i| {
            i.roles.len() == 1
                && i.role(&role_name)
                    .is_some_and(|r| r.role.tags.get("v").map(String::as_str) == Some("2"))
                && i.associations_for(ns, "web").len() == 1
        })
        .await;

    // A namespace deleted with a binding in it.
    let doomed = stack.target.namespace("doomed");
    let doomed = doomed.as_str();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let doomed_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": doomed}})).expect("ns");
    namespaces
        .create(&Default::default(), &doomed_ns)
        .await
        .expect("create ns");
    stack.watch(doomed);
    stack
        .bindings(doomed)
        .create(&Default::default(), &binding(doomed, "temp", json!({})))
        .await
        .expect("create in doomed");
    stack
        .wait_reason(doomed, "temp", "True", "Reconciled")
        .await;
    namespaces
        .delete(doomed, &Default::default())
        .await
        .expect("delete ns");
    let deadline = Instant::now() + WAIT;
    while namespaces.get_opt(doomed).await.expect("get ns").is_some() {
        assert!(
            Instant::now() < deadline,
            "namespace stuck\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack
        .wait_aws("nothing left of the namespace", |i| {
            i.associations_for(doomed, "temp").is_empty()
                && i.role(&naming::default_role_name(&cluster_arn, doomed, "temp"))
                    .is_none()
        })
        .await;

    // Refused by the API server (schema): kubectl names the field.
    let bad = stack.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "apiVersion: podidentity.dev/v1alpha1\nkind: PodIdentityBinding\n\
             metadata: {{name: bad, namespace: {ns}}}\nspec:\n  deletionPolicy: Sometimes\n"
        ),
    )
    .expect("write");
    let out = support::kubectl::kubectl_command(&stack.kubeconfig())
        .args(["apply", "-f", bad.to_str().expect("utf-8 path")])
        .output()
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a bad deletionPolicy");
    assert!(stderr.contains("deletionPolicy"), "{stderr}");
    // Refused by the operator: a policy document IAM would refuse.
    bindings
        .create(
            &Default::default(),
            &binding(
                ns,
                "bad-policy",
                json!({"role": {"inlinePolicies": {"p": {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"}]}}}}),
            ),
        )
        .await
        .expect("create bad-policy");
    let b = stack
        .wait_reason(ns, "bad-policy", "False", "InvalidSpec")
        .await;
    let message = &support::ready(&b).expect("Ready").message;
    assert!(message.contains("inlinePolicies"), "{message}");
    assert!(
        stack
            .inventory()
            .await
            .role(&naming::default_role_name(&cluster_arn, ns, "bad-policy"))
            .is_none(),
        "a role was made for an invalid spec"
    );
    stack.stop().await;
}

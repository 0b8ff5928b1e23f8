use super::*;
use serde_json::json;

use crate::aws::{Association, Tags};

#[test]
fn session_tag_conditions_scope_a_statement() {
    let scoped = crate::policy::pod_identity_trust_policy(Some(&crate::policy::TrustScope {
        account_id: "111122223333".into(),
        cluster_arn: "arn:aws:eks:us-east-1:111122223333:cluster/prod".into(),
        namespace: "apps".into(),
        service_account: "web".into(),
    }));
    assert_eq!(unscoped_pod_identity_statements(&scoped), 0);
    let open = crate::policy::pod_identity_trust_policy(None);
    assert_eq!(unscoped_pod_identity_statements(&open), 1);
    let cluster_only = crate::policy::cluster_trust_policy(
        "111122223333",
        "arn:aws:eks:us-east-1:111122223333:cluster/prod",
    );
    assert_eq!(unscoped_pod_identity_statements(&cluster_only), 1);
    let oidc = json!({"Statement": {"Effect": "Allow",
        "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"},
        "Action": "sts:AssumeRoleWithWebIdentity"}});
    assert_eq!(unscoped_pod_identity_statements(&oidc), 0);
}

#[test]
fn owners_from_owner_arn_and_tags() {
    let mut a = Association {
        cluster_name: "prod".into(),
        association_id: "a-1".into(),
        association_arn: "arn".into(),
        namespace: "n".into(),
        service_account: "s".into(),
        role_arn: "r".into(),
        target_role_arn: None,
        disable_session_tags: false,
        session_policy: None,
        external_id: None,
        owner_arn: None,
        tags: Tags::new(),
        created_at: None,
        modified_at: None,
    };
    assert_eq!(Owner::of(&a), Owner::Unknown);
    a.tags
        .insert("alpha.eksctl.io/cluster-name".into(), "prod".into());
    assert_eq!(Owner::of(&a), Owner::Eksctl);
    a.tags = [("ManagedBy".to_owned(), "Terraform".to_owned())].into();
    assert_eq!(Owner::of(&a), Owner::Terraform);
    a.owner_arn = Some("arn:aws:eks:us-east-1:1:addon/prod/aws-ebs-csi-driver/u".into());
    let owner = Owner::of(&a);
    assert_eq!(owner.addon_name(), Some("aws-ebs-csi-driver"));
    assert_eq!(owner.to_string(), "EKS add-on aws-ebs-csi-driver");
}

#[test]
fn severities_are_ordered_and_fail_at_the_threshold() {
    let report = Report {
        cluster: "c".into(),
        findings: vec![Finding {
            severity: Severity::Warning,
            kind: Kind::OrphanRole,
            subject: "s".into(),
            message: "m".into(),
        }],
    };
    assert!(report.fails(Severity::Info) && report.fails(Severity::Warning));
    assert!(!report.fails(Severity::Error));
    let text = render_table(&report);
    assert!(text.starts_with("SEVERITY"), "{text}");
    assert!(text.contains("WARNING   OrphanRole  s        m"), "{text}");
}

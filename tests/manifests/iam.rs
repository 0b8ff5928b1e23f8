//! The operator's IAM policy: valid, allowing every AWS API the `IamApi`/`EksApi` traits
//! map to, and none of the APIs left to `audit` and `migrate`.

use pod_identity_operator::policy::{self, DocumentKind};

use crate::{USER_ONLY_APIS, allows, aws_apis, eks_resource, iam_policy, strings};

#[test]
fn the_controller_calls_none_of_the_apis_left_to_audit_and_migrate() {
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/operator/src/controller"
    ))];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("crates/operator/src/controller") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "the controller's sources: {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("source");
        for (api, method) in USER_ONLY_APIS {
            assert!(
                !text.contains(&format!(".{method}(")),
                "{} calls {api}, which the operator's policy does not allow",
                path.display()
            );
        }
    }
}

#[test]
fn iam_policy_is_valid_and_allows_every_aws_api_the_operator_calls() {
    let doc = iam_policy();
    policy::validate(&doc, DocumentKind::Identity).expect("a valid identity policy");
    let (iam_apis, eks_apis) = aws_apis();
    assert!(iam_apis.contains("CreateRole") && eks_apis.contains("CreatePodIdentityAssociation"));

    // Nothing broader than needed: no action or resource wildcards beyond the ARN
    // patterns, and every action is one the operator calls (PassRole aside).
    for s in doc["Statement"].as_array().expect("statements") {
        assert_eq!(s["Effect"], "Allow");
        assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
        for r in strings(&s["Resource"]) {
            assert_ne!(r, "*", "no statement on every resource");
        }
        for a in strings(&s["Action"]) {
            assert!(!a.contains('*'), "no action wildcard: {a}");
            let known = match a.split_once(':') {
                Some(("iam", op)) => iam_apis.contains(op) || op == "PassRole",
                Some(("eks", op)) => eks_apis.contains(op),
                _ => false,
            };
            assert!(known, "{a} is not an API the operator calls");
        }
    }

    let account = "111122223333";
    let managed = format!("arn:aws:iam::{account}:role/pod-identity/prod/pi-prod-default-app");
    let foreign = format!("arn:aws:iam::{account}:role/admin");
    for api in &iam_apis {
        let action = format!("iam:{api}");
        assert!(
            allows(&doc, &action, &managed, &[]),
            "{action} on a role under /pod-identity/"
        );
        // Outside the path only GetRole (existing roles named by bindings).
        assert_eq!(
            allows(&doc, &action, &foreign, &[]),
            api == "GetRole",
            "{action} on a role outside /pod-identity/"
        );
    }
    // CreateRole with tags needs TagRole; the association calls pass the role to EKS.
    assert!(iam_apis.contains("TagRole"));
    let to_pods = [("iam:PassedToService", "pods.eks.amazonaws.com")];
    for role in [&managed, &foreign] {
        assert!(
            allows(&doc, "iam:PassRole", role, &to_pods),
            "PassRole {role}"
        );
        assert!(
            !allows(
                &doc,
                "iam:PassRole",
                role,
                &[("iam:PassedToService", "ec2.amazonaws.com")]
            ),
            "PassRole to another service"
        );
        assert!(
            !allows(&doc, "iam:PassRole", role, &[]),
            "PassRole unconditioned"
        );
    }

    let cluster = format!("arn:aws:eks:eu-west-1:{account}:cluster/prod");
    let assoc =
        format!("arn:aws:eks:eu-west-1:{account}:podidentityassociation/prod/a-0123456789abcdefg");
    for api in &eks_apis {
        let action = format!("eks:{api}");
        let on = eks_resource(api, &cluster, &assoc);
        assert!(allows(&doc, &action, on, &[]), "{action} on {on}");
        let other = if on == cluster { &assoc } else { &cluster };
        assert!(
            !allows(&doc, &action, other, &[]),
            "{action} only on the resource it is authorized on, not {other}"
        );
        assert!(
            !allows(&doc, &action, &managed, &[]),
            "{action} on an IAM role ARN"
        );
    }
}

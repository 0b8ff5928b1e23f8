//! Contract cases of a role's trust policy, permissions boundary, managed and inline
//! policies.

use super::*;

// ---- trust policy ----

pub async fn trust_policy_update_reads_back_equivalent(b: &Backend) {
    let role = new_role(b, "pi-trust").await;
    let scoped = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PodIdentity",
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {
                "StringEquals": {
                    "aws:SourceAccount": b.account_id,
                    "aws:RequestTag/kubernetes-namespace": "team-a",
                    "aws:RequestTag/kubernetes-service-account": "app+1 x"
                },
                "ArnEquals": {"aws:RequestTag/eks-cluster-arn": format!(
                    "arn:aws:eks:us-east-1:{}:cluster/{}", b.account_id, b.cluster_name)}
            }
        }]
    });
    b.iam
        .update_assume_role_policy(&role.name, &scoped)
        .await
        .expect("UpdateAssumeRolePolicy");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(
        documents_equivalent(&got.assume_role_policy, &scoped),
        "{}",
        got.assume_role_policy
    );
    assert!(!documents_equivalent(&got.assume_role_policy, &trust()));
}

pub async fn trust_policy_malformed_refused(b: &Backend) {
    let role = new_role(b, "pi-badtrust").await;
    // AWS answers MalformedPolicyDocument (CreateRole, UpdateAssumeRolePolicy); each
    // document with the known difference of a server that accepts it.
    let grammar = "trust-policy-grammar-unchecked";
    let bad = [
        (json!({"Statement": trust()["Statement"].clone()}), grammar),
        (json!({"Version": "2012-10-17"}), grammar),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Permit",
            "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            grammar,
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "sts:AssumeRole"}]}),
            "trust-policy-principal-required",
        ),
        (json!("not an object"), grammar),
    ];
    for (doc, rule) in bad {
        let r = b.iam.update_assume_role_policy(&role.name, &doc).await;
        if !refused_unless(b.iam_server, &[rule], r, "MalformedPolicyDocument", &doc) {
            // The server took it: the role's trust policy back as it was.
            b.iam
                .update_assume_role_policy(&role.name, &trust())
                .await
                .expect("UpdateAssumeRolePolicy");
        }
        let mut input = role_input(&unique("pi-badtrust"));
        input.assume_role_policy = doc;
        refused_unless(
            b.iam_server,
            &["create-role-trust-policy-unchecked", rule],
            b.iam.create_role(&input).await,
            "MalformedPolicyDocument",
            &input.assume_role_policy,
        );
    }
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(
        documents_equivalent(&got.assume_role_policy, &trust()),
        "unchanged"
    );
}

/// A trust policy of exactly `size` characters not counting whitespace, padded with as
/// many spaces, which IAM does not count.
pub(super) fn trust_of_size(size: usize) -> Value {
    padded(trust(), size, size)
}

pub async fn trust_policy_size_quota(b: &Backend) {
    let role = new_role(b, "pi-bigtrust").await;
    // Whitespace is not counted: 2,048 characters plus as many spaces is accepted.
    b.iam
        .update_assume_role_policy(&role.name, &trust_of_size(2048))
        .await
        .expect("2,048 characters without whitespace");
    // Past ACLSizePerRole AWS answers LimitExceeded.
    let over = refusal(
        b.iam_server,
        "trust-policy-size-quota",
        b.iam
            .update_assume_role_policy(&role.name, &trust_of_size(2049))
            .await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = over {
        assert_eq!(e.message, "Cannot exceed quota for ACLSizePerRole: 2048");
    }
    let mut input = role_input(&unique("pi-bigtrust"));
    input.assume_role_policy = trust_of_size(2049);
    refusal(
        b.iam_server,
        "trust-policy-size-quota",
        b.iam.create_role(&input).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
}

// ---- boundary, managed and inline policies ----

pub(super) const BOUNDARY: &str = "arn:aws:iam::aws:policy/PowerUserAccess";
pub(super) const MANAGED: [&str; 11] = [
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSNSReadOnlyAccess",
    "arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonRDSReadOnlyAccess",
    "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonRoute53ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonVPCReadOnlyAccess",
];

pub async fn permissions_boundary_put_delete(b: &Backend) {
    let role = new_role(b, "pi-boundary").await;
    b.iam
        .put_role_permissions_boundary(&role.name, BOUNDARY)
        .await
        .expect("PutRolePermissionsBoundary");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.permissions_boundary_arn.as_deref(), Some(BOUNDARY));
    b.iam
        .delete_role_permissions_boundary(&role.name)
        .await
        .expect("DeleteRolePermissionsBoundary");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.permissions_boundary_arn, None);

    let mut input = role_input(&unique("pi-boundary"));
    input.permissions_boundary_arn = Some(BOUNDARY.into());
    let created = b
        .iam
        .create_role(&input)
        .await
        .expect("CreateRole with boundary");
    assert_eq!(created.permissions_boundary_arn.as_deref(), Some(BOUNDARY));
}

pub async fn managed_policies_attach_detach_list(b: &Backend) {
    let role = new_role(b, "pi-attach").await;
    assert!(
        b.iam
            .list_attached_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    for arn in &MANAGED[..2] {
        b.iam
            .attach_role_policy(&role.name, arn)
            .await
            .expect("AttachRolePolicy");
    }
    // Attaching again changes nothing.
    b.iam
        .attach_role_policy(&role.name, MANAGED[0])
        .await
        .expect("AttachRolePolicy again");
    let mut listed = b.iam.list_attached_role_policies(&role.name).await.unwrap();
    listed.sort_by(|x, y| x.arn.cmp(&y.arn));
    let mut want: Vec<&str> = MANAGED[..2].to_vec();
    want.sort();
    assert_eq!(
        listed.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(),
        want
    );
    for p in &listed {
        assert_eq!(Some(p.name.as_str()), p.arn.rsplit('/').next());
    }
    b.iam
        .detach_role_policy(&role.name, MANAGED[0])
        .await
        .expect("DetachRolePolicy");
    let listed = b.iam.list_attached_role_policies(&role.name).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(),
        [MANAGED[1]]
    );
}

pub async fn managed_policies_quota(b: &Backend) {
    let role = new_role(b, "pi-quota").await;
    for arn in &MANAGED[..10] {
        b.iam
            .attach_role_policy(&role.name, arn)
            .await
            .expect("ten fit");
    }
    let eleventh = refusal(
        b.iam_server,
        "managed-policies-quota",
        b.iam.attach_role_policy(&role.name, MANAGED[10]).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &eleventh {
        assert_eq!(e.message, "Cannot exceed quota for PoliciesPerRole: 10");
    }
    let attached = b
        .iam
        .list_attached_role_policies(&role.name)
        .await
        .unwrap()
        .len();
    assert_eq!(attached, if eleventh.is_some() { 10 } else { 11 });
}

pub async fn managed_policy_missing_or_not_attached(b: &Backend) {
    let role = new_role(b, "pi-nopolicy").await;
    expect_aws(
        b.iam.detach_role_policy(&role.name, MANAGED[0]).await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
    let missing = format!("arn:aws:iam::{}:policy/{}", b.account_id, unique("absent"));
    refusal(
        b.iam_server,
        "attach-missing-policy",
        b.iam.attach_role_policy(&role.name, &missing).await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
}

pub async fn inline_policies_put_get_list_delete(b: &Backend) {
    let role = new_role(b, "pi-inline").await;
    assert!(
        b.iam
            .list_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.iam.get_role_policy(&role.name, "read").await.unwrap(),
        None
    );
    b.iam
        .put_role_policy(&role.name, "read", &inline_doc("one"))
        .await
        .expect("PutRolePolicy");
    b.iam
        .put_role_policy(&role.name, "write", &inline_doc("two"))
        .await
        .expect("PutRolePolicy");
    // Putting a policy of the same name replaces it.
    b.iam
        .put_role_policy(&role.name, "read", &inline_doc("three"))
        .await
        .expect("replace");
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    assert_eq!(names, ["read", "write"]);
    let got = b
        .iam
        .get_role_policy(&role.name, "read")
        .await
        .unwrap()
        .expect("read exists");
    assert!(documents_equivalent(&got, &inline_doc("three")), "{got}");
    assert!(!documents_equivalent(&got, &inline_doc("one")));
    b.iam
        .delete_role_policy(&role.name, "read")
        .await
        .expect("DeleteRolePolicy");
    assert_eq!(
        b.iam.list_role_policies(&role.name).await.unwrap(),
        ["write"]
    );
    assert_eq!(
        b.iam.get_role_policy(&role.name, "read").await.unwrap(),
        None
    );
    expect_aws(
        b.iam.delete_role_policy(&role.name, "read").await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
}

pub async fn inline_policy_malformed_refused(b: &Backend) {
    let role = new_role(b, "pi-badinline").await;
    // AWS answers MalformedPolicyDocument; each document with the known difference of
    // a server that accepts it.
    let bad: [(Value, &[&str]); 4] = [
        (
            json!({"Statement": inline_doc("x")["Statement"].clone()}),
            &["policy-version-unchecked"],
        ),
        (json!({"Version": "2012-10-17"}), &[]),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": "*", "Action": "s3:*", "Resource": "*"}]}),
            &["identity-policy-principal"],
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
            &[],
        ),
    ];
    for (doc, rules) in bad {
        let r = b.iam.put_role_policy(&role.name, "bad", &doc).await;
        if !refused_unless(b.iam_server, rules, r, "MalformedPolicyDocument", &doc) {
            b.iam
                .delete_role_policy(&role.name, "bad")
                .await
                .expect("DeleteRolePolicy");
        }
    }
    assert!(
        b.iam
            .list_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An identity policy of `size` characters, whitespace not counted.
pub(super) fn inline_of_size(size: usize) -> Value {
    let base = inline_doc("");
    let filler = "b".repeat(size - chars(&base));
    let doc = inline_doc(&filler);
    assert_eq!(chars(&doc), size);
    doc
}

pub async fn inline_policies_total_size_quota(b: &Backend) {
    let role = new_role(b, "pi-inlinesize").await;
    b.iam
        .put_role_policy(&role.name, "a", &inline_of_size(6000))
        .await
        .expect("first");
    b.iam
        .put_role_policy(&role.name, "b", &inline_of_size(4240))
        .await
        .expect("to 10,240");
    // Replacing a policy counts its new size, not both.
    b.iam
        .put_role_policy(&role.name, "b", &inline_of_size(4000))
        .await
        .expect("replace");
    // Past 10,240 characters for the role AWS answers LimitExceeded.
    let over = refusal(
        b.iam_server,
        "inline-policies-size-quota",
        b.iam
            .put_role_policy(&role.name, "c", &inline_of_size(300))
            .await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &over {
        assert!(
            e.message
                .starts_with("Maximum policy size of 10240 bytes exceeded for role"),
            "{e}"
        );
    }
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    let want: &[&str] = if over.is_some() {
        &["a", "b"]
    } else {
        &["a", "b", "c"]
    };
    assert_eq!(names, want);
}

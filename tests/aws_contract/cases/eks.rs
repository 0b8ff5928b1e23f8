//! Contract cases of EKS: clusters and Pod Identity associations.

use super::grammar::*;
use super::*;

// ---- EKS ----

pub async fn describe_cluster_found_and_missing(b: &Backend) {
    let c = b
        .eks
        .describe_cluster(&b.cluster_name)
        .await
        .expect("DescribeCluster")
        .expect("exists");
    assert_eq!(c.name, b.cluster_name);
    assert_eq!(c.account_id, b.account_id);
    assert!(c.arn.starts_with("arn:aws:eks:"), "{}", c.arn);
    assert!(
        c.arn
            .ends_with(&format!(":{}:cluster/{}", b.account_id, b.cluster_name)),
        "{}",
        c.arn
    );
    assert_eq!(
        b.eks
            .describe_cluster(&unique("absent"))
            .await
            .expect("DescribeCluster"),
        None
    );
}

fn assert_id_and_arn(b: &Backend, a: &Association) {
    let id = a
        .association_id
        .strip_prefix("a-")
        .expect("id starts with a-");
    match known(b.eks_server, "association-id-format") {
        None => assert_eq!(id.len(), 17, "{}", a.association_id),
        Some(d) => d.holds_that(
            id.len() == 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            &a.association_id,
        ),
    }
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{}",
        a.association_id
    );
    let arn_tail = format!(
        ":{}:podidentityassociation/{}/{}",
        b.account_id, b.cluster_name, a.association_id
    );
    assert!(
        a.association_arn.starts_with("arn:aws:eks:"),
        "{}",
        a.association_arn
    );
    assert!(
        a.association_arn.ends_with(&arn_tail),
        "{}",
        a.association_arn
    );
}

pub async fn association_lifecycle(b: &Backend) {
    let role = new_role(b, "pi-assoc").await;
    let other = new_role(b, "pi-assoc2").await;
    let (ns, sa) = (unique("ns"), unique("sa"));
    let mut input = association_input(b, &role, &ns, &sa);
    input.tags = tags(&[("podidentity.dev/name", "app")]);
    let (created, _) = create_when_visible(b, &input).await;
    assert_id_and_arn(b, &created);
    assert_eq!(created.cluster_name, b.cluster_name);
    assert_eq!(
        (created.namespace.as_str(), created.service_account.as_str()),
        (ns.as_str(), sa.as_str())
    );
    assert_eq!(created.role_arn, role.arn);
    assert!(!created.disable_session_tags);
    assert_eq!(created.tags, input.tags);

    let described = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &created.association_id)
        .await
        .expect("Describe")
        .expect("exists");
    assert_eq!(described.association_arn, created.association_arn);
    assert_eq!(described.role_arn, role.arn);
    assert_eq!(described.tags, input.tags);
    assert_eq!(described.owner_arn, None);

    // Wait until EKS sees the second role too.
    let update = UpdateAssociation {
        cluster_name: b.cluster_name.clone(),
        association_id: created.association_id.clone(),
        role_arn: Some(other.arn.clone()),
        ..UpdateAssociation::default()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let updated = loop {
        match b.eks.update_pod_identity_association(&update).await {
            Ok(a) => break a,
            Err(e)
                if e.aws().is_some_and(|a| a.class == ErrorClass::Propagation)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("UpdatePodIdentityAssociation: {e}"),
        }
    };
    assert_eq!(updated.role_arn, other.arn);
    assert_eq!(updated.association_id, created.association_id);
    let described = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &created.association_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(described.role_arn, other.arn);

    b.eks
        .delete_pod_identity_association(&b.cluster_name, &created.association_id)
        .await
        .expect("Delete");
    assert_eq!(
        b.eks
            .describe_pod_identity_association(&b.cluster_name, &created.association_id)
            .await
            .expect("Describe"),
        None
    );
    expect_aws(
        b.eks
            .delete_pod_identity_association(&b.cluster_name, &created.association_id)
            .await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
    let missing = UpdateAssociation {
        cluster_name: b.cluster_name.clone(),
        association_id: created.association_id.clone(),
        disable_session_tags: Some(true),
        ..UpdateAssociation::default()
    };
    expect_aws(
        b.eks.update_pod_identity_association(&missing).await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
}

pub async fn association_list_filters(b: &Backend) {
    let role = new_role(b, "pi-list").await;
    let ns = unique("ns");
    let (sa1, sa2) = (unique("sa"), unique("sa"));
    let (a1, _) = create_when_visible(b, &association_input(b, &role, &ns, &sa1)).await;
    let (a2, _) = create_when_visible(b, &association_input(b, &role, &ns, &sa2)).await;
    let (a3, _) = create_when_visible(b, &association_input(b, &role, &unique("ns"), &sa1)).await;

    let in_ns = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, Some(&ns), None)
        .await
        .unwrap();
    let mut ids: Vec<&str> = in_ns.iter().map(|s| s.association_id.as_str()).collect();
    ids.sort();
    let mut want = vec![a1.association_id.as_str(), a2.association_id.as_str()];
    want.sort();
    assert_eq!(ids, want);

    let one = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, Some(&ns), Some(&sa1))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].association_id, a1.association_id);
    assert_eq!(one[0].association_arn, a1.association_arn);
    assert_eq!(
        (one[0].namespace.as_str(), one[0].service_account.as_str()),
        (ns.as_str(), sa1.as_str())
    );
    assert_eq!(one[0].cluster_name, b.cluster_name);

    let all = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, None, None)
        .await
        .unwrap();
    for a in [&a1, &a2, &a3] {
        assert!(
            all.iter().any(|s| s.association_id == a.association_id),
            "{} listed",
            a.association_id
        );
    }
    let none = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, Some(&unique("ns")), None)
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub async fn association_cluster_must_exist(b: &Backend) {
    let role = new_role(b, "pi-nocluster").await;
    let mut input = association_input(b, &role, "default", &unique("sa"));
    input.cluster_name = unique("absent");
    expect_aws(
        b.eks.create_pod_identity_association(&input).await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
    expect_aws(
        b.eks
            .list_pod_identity_associations(&input.cluster_name, None, None)
            .await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
}

pub async fn association_one_per_service_account(b: &Backend) {
    let role = new_role(b, "pi-dup").await;
    let input = association_input(b, &role, &unique("ns"), &unique("sa"));
    let (first, _) = create_when_visible(b, &input).await;
    let e = expect_aws(
        b.eks.create_pod_identity_association(&input).await,
        "ResourceInUseException",
        ErrorClass::Conflict,
    );
    assert_eq!(e.http_status, Some(409));
    let listed = b
        .eks
        .list_pod_identity_associations(
            &b.cluster_name,
            Some(&input.namespace),
            Some(&input.service_account),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "never two for one ServiceAccount");
    assert_eq!(listed[0].association_id, first.association_id);
}

pub async fn association_idempotent_token(b: &Backend) {
    let role = new_role(b, "pi-token").await;
    let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
    input.client_request_token = Some(uuid::Uuid::new_v4().to_string());
    let (first, _) = create_when_visible(b, &input).await;
    let again = b.eks.create_pod_identity_association(&input).await;
    match known(b.eks_server, "association-client-request-token") {
        None => {
            let again = again.expect("the same token and input answer the same association");
            assert_eq!(again.association_id, first.association_id);
        }
        Some(d) => d.holds(&again, "a repeat with the same token"),
    }
    let listed = b
        .eks
        .list_pod_identity_associations(
            &b.cluster_name,
            Some(&input.namespace),
            Some(&input.service_account),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // A new token for the same ServiceAccount is a second request: refused.
    input.client_request_token = Some(uuid::Uuid::new_v4().to_string());
    expect_aws(
        b.eks.create_pod_identity_association(&input).await,
        "ResourceInUseException",
        ErrorClass::Conflict,
    );
}

pub async fn association_role_must_exist(b: &Backend) {
    // EKS answers InvalidParameterException "Role provided in the request does not
    // exist", which within a window after CreateRole is propagation, not a user error.
    let role_arn = format!("arn:aws:iam::{}:role/{}", b.account_id, unique("pi-never"));
    let input = CreateAssociation {
        cluster_name: b.cluster_name.clone(),
        namespace: unique("ns"),
        service_account: unique("sa"),
        role_arn,
        ..CreateAssociation::default()
    };
    let missing = refusal(
        b.eks_server,
        "association-role-must-exist",
        b.eks.create_pod_identity_association(&input).await,
        "InvalidParameterException",
        ErrorClass::Propagation,
    );
    if let Some(e) = missing {
        assert_eq!(e.message, "Role provided in the request does not exist");
    }
    let mut bad = input.clone();
    bad.service_account = unique("sa");
    bad.role_arn = "not-an-arn".into();
    refusal(
        b.eks_server,
        "association-role-arn-format",
        b.eks.create_pod_identity_association(&bad).await,
        "InvalidParameterException",
        ErrorClass::UserInput,
    );
}

pub async fn association_cross_account_role_refused(b: &Backend) {
    // EKS refuses a role in another account (a target role is the way to reach one).
    let other_account = if b.account_id == "999999999999" {
        "888888888888"
    } else {
        "999999999999"
    };
    let input = CreateAssociation {
        cluster_name: b.cluster_name.clone(),
        namespace: unique("ns"),
        service_account: unique("sa"),
        role_arn: format!("arn:aws:iam::{other_account}:role/elsewhere"),
        ..CreateAssociation::default()
    };
    let refused = refusal(
        b.eks_server,
        "association-cross-account-role",
        b.eks.create_pod_identity_association(&input).await,
        "InvalidParameterException",
        ErrorClass::UserInput,
    );
    if let Some(e) = refused {
        assert_eq!(e.message, "Cross-account pass role is not allowed");
    }
}

pub async fn association_role_propagation_window(b: &Backend) {
    let role = new_role(b, "pi-propagate").await;
    let input = association_input(b, &role, &unique("ns"), &unique("sa"));
    let (a, refusals) = create_when_visible(b, &input).await;
    assert_eq!(a.role_arn, role.arn);
    // The simulator keeps a new role invisible for the window this suite gives it
    // (IAM is eventually consistent, with no fixed window documented); ministack
    // sees it at once.
    if b.eks_server == Server::Simulator {
        assert!(
            refusals > 0,
            "the role was invisible to EKS right after CreateRole"
        );
    } else {
        assert_eq!(refusals, 0, "ministack sees a new role at once");
    }
    let (_, again) = create_when_visible(
        b,
        &association_input(b, &role, &unique("ns"), &unique("sa")),
    )
    .await;
    assert_eq!(again, 0, "once visible, the role stays visible");
}

pub async fn association_delete_window_blocks_service_account(b: &Backend) {
    let (role, first) = new_association(b, "pi-release").await;
    b.eks
        .delete_pod_identity_association(&b.cluster_name, &first.association_id)
        .await
        .unwrap();
    let input = association_input(b, &role, &first.namespace, &first.service_account);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut blocked = 0;
    let second = loop {
        match b.eks.create_pod_identity_association(&input).await {
            Ok(a) => break a,
            Err(e)
                if e.aws().is_some_and(|a| a.code == "ResourceInUseException")
                    && tokio::time::Instant::now() < deadline =>
            {
                blocked += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("CreatePodIdentityAssociation: {e}"),
        }
    };
    assert_ne!(second.association_id, first.association_id);
    // The simulator keeps the ServiceAccount blocked for the release window this
    // suite gives it; ministack releases it at once.
    if b.eks_server == Server::Simulator {
        assert!(
            blocked > 0,
            "the deleted association blocked its ServiceAccount for a while"
        );
    } else {
        assert_eq!(blocked, 0, "ministack releases the ServiceAccount at once");
    }
}

pub async fn association_tag_untag(b: &Backend) {
    let (_, a) = new_association(b, "pi-atags").await;
    let tagged = b
        .eks
        .tag_resource(&a.association_arn, &tags(&[("x", "1"), ("y", "2")]))
        .await;
    let untagged = b
        .eks
        .untag_resource(&a.association_arn, &["x".to_owned()])
        .await;
    let got = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &a.association_id)
        .await
        .unwrap()
        .unwrap();
    // An ARN that names nothing.
    let absent = a
        .association_arn
        .replace(&a.association_id, "a-0000000000000zzzz");
    let absent = b.eks.tag_resource(&absent, &tags(&[("x", "1")])).await;
    match known(b.eks_server, "association-tags") {
        None => {
            tagged.expect("TagResource");
            untagged.expect("UntagResource");
            assert_eq!(got.tags, tags(&[("y", "2")]));
            let e = absent.expect_err("no such association");
            assert_eq!(e.aws().map(|e| e.class), Some(ErrorClass::NotFound), "{e}");
        }
        Some(d) => {
            d.holds(&tagged, "TagResource");
            d.holds(&untagged, "UntagResource");
            d.holds(&absent, "TagResource of an absent association");
            d.holds_that(got.tags.is_empty(), format_args!("tags {:?}", got.tags));
        }
    }
}

pub async fn association_target_role_and_session_policy(b: &Backend) {
    let role = new_role(b, "pi-target").await;
    let target = "arn:aws:iam::999999999999:role/cross-account-target".to_owned();
    let session = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "*"}]});
    let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
    input.target_role_arn = Some(target.clone());
    input.disable_session_tags = true;
    input.session_policy = Some(session.clone());
    let (a, _) = create_when_visible(b, &input).await;
    let got = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &a.association_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.target_role_arn.as_deref(), Some(target.as_str()));
    assert!(got.disable_session_tags);
    assert!(
        got.session_policy
            .as_ref()
            .is_some_and(|p| documents_equivalent(p, &session))
    );

    // Clear the target role and the session policy, then enable session tags.
    let update = UpdateAssociation {
        cluster_name: b.cluster_name.clone(),
        association_id: a.association_id.clone(),
        target_role_arn: Some(None),
        session_policy: Some(None),
        disable_session_tags: Some(false),
        ..UpdateAssociation::default()
    };
    let updated = b
        .eks
        .update_pod_identity_association(&update)
        .await
        .expect("Update");
    assert!(!updated.disable_session_tags);
    match known(b.eks_server, "association-update-clears") {
        None => {
            assert_eq!(updated.target_role_arn, None);
            assert_eq!(updated.session_policy, None);
        }
        Some(d) => d.holds_that(
            updated.target_role_arn.as_deref() == Some(target.as_str())
                && updated.session_policy.is_some(),
            format_args!("{updated:?}"),
        ),
    }

    // EKS: a session policy needs session tags disabled.
    let mut bad = association_input(b, &role, &unique("ns"), &unique("sa"));
    bad.session_policy = Some(session);
    refusal(
        b.eks_server,
        "association-session-policy-needs-disabled-tags",
        b.eks.create_pod_identity_association(&bad).await,
        "InvalidParameterException",
        ErrorClass::UserInput,
    );
}

/// A session policy is an identity policy (Resource required, no Principal) of at most
/// 2,048 characters (STS's session policy limit,
/// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html, which EKS
/// passes it to; counted without whitespace, as IAM counts policies).
pub async fn association_session_policy_grammar_and_size(b: &Backend) {
    let role = new_role(b, "pi-session").await;
    let deny_only = doc_of(json!({"Effect": "Deny", "Action": "s3:*", "Resource": "*"}));
    let at_limit = padded(
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})),
        2048,
        1000,
    );
    for policy in [deny_only, at_limit] {
        let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
        input.disable_session_tags = true;
        input.session_policy = Some(policy.clone());
        let (a, _) = create_when_visible(b, &input).await;
        assert!(
            a.session_policy
                .as_ref()
                .is_some_and(|p| documents_equivalent(p, &policy)),
            "{policy}"
        );
    }
    // EKS refuses what STS would.
    let refused = [
        padded(
            doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})),
            2049,
            0,
        ),
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject"})),
        doc_of(
            json!({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "*"}),
        ),
        json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
    ];
    for policy in &refused {
        let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
        input.disable_session_tags = true;
        input.session_policy = Some(policy.clone());
        refused_unless(
            b.eks_server,
            &["association-session-policy-grammar"],
            b.eks.create_pod_identity_association(&input).await,
            "InvalidParameterException",
            policy,
        );
    }
}

/// Two policy documents say the same: equal once a single value and a one-element list
/// are taken as one, and lists as sets (the forms IAM treats alike). Written here, not
/// borrowed from the operator, so a backend is judged by the suite alone.
pub(crate) fn documents_equivalent(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(list) if list.len() == 1 => canonical(&list[0]),
        Value::Array(list) => {
            let mut items: Vec<Value> = list.iter().map(canonical).collect();
            items.sort_by_key(|i| i.to_string());
            items.dedup();
            Value::Array(items)
        }
        other => other.clone(),
    }
}

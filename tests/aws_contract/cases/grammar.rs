//! Contract cases of IAM's policy grammar, sizes and characters.

use super::*;

// ---- policy grammar and sizes ----
//
// IAM's policy grammar: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html
// and the element pages under
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html.

/// A 2012-10-17 document of one statement.
pub(super) fn doc_of(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Asserts a refusal with this code, of the user-input class, naming the document.
#[track_caller]
pub(super) fn refused_as<T: Debug>(
    r: pod_identity_operator::aws::Result<T>,
    code: &str,
    doc: &Value,
) {
    match r {
        Err(pod_identity_operator::aws::Error::Aws(e)) => {
            assert_eq!(e.code, code, "{doc}: {e}");
            assert_eq!(e.class, ErrorClass::UserInput, "{doc}: {e}");
        }
        other => panic!("{doc}: expected {code}, got {other:?}"),
    }
}

/// A refusal AWS documents with this code (user-input class) for `doc`: true where the
/// backend refused so; false where `server` has one of the known differences `ids`,
/// whose answer is asserted instead.
#[track_caller]
pub(super) fn refused_unless<T: Debug>(
    server: Server,
    ids: &[&str],
    r: pod_identity_operator::aws::Result<T>,
    code: &str,
    doc: &Value,
) -> bool {
    match first_known(server, ids) {
        Some(d) => {
            d.holds(&r, doc);
            false
        }
        None => {
            refused_as(r, code, doc);
            true
        }
    }
}

/// Puts each document as an inline policy and reads it back.
pub(super) async fn inline_accepted(b: &Backend, role: &str, docs: &[Value]) {
    for (i, doc) in docs.iter().enumerate() {
        let name = format!("ok{i}");
        b.iam
            .put_role_policy(role, &name, doc)
            .await
            .unwrap_or_else(|e| panic!("{doc}: {e}"));
        let got = b.iam.get_role_policy(role, &name).await.unwrap();
        assert!(
            got.as_ref().is_some_and(|g| documents_equivalent(g, doc)),
            "{doc}: read back {got:?}"
        );
    }
}

/// What every statement needs (Effect, and exactly one of Action/NotAction and of
/// Resource/NotResource in an identity policy), and the forms it may take. moto and
/// ministack enforce the same.
pub async fn inline_policy_statement_forms(b: &Backend) {
    let role = new_role(b, "pi-stmt").await;
    let accepted = [
        // A Deny-only policy.
        doc_of(json!({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})),
        doc_of(json!({"Effect": "Deny", "Action": ["s3:*"],
            "NotResource": ["arn:aws:s3:::keep", "arn:aws:s3:::keep/*"]})),
        // One statement as an object rather than a list.
        json!({"Version": "2012-10-17", "Id": "one",
            "Statement": {"Effect": "Allow", "Action": "sqs:Send*", "Resource": "*"}}),
        doc_of(json!({"Sid": "Tagged1", "Effect": "Allow",
            "Action": ["ec2:Describe*", "ec2:Get?onsoleOutput"], "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:ResourceTag/team": ["a", "b"]},
                "Bool": {"aws:SecureTransport": "true"},
                "ForAnyValue:StringLike": {"aws:TagKeys": "team*"},
                "ArnLikeIfExists": {"aws:SourceArn": "arn:aws:sns:*:*:t"}}})),
    ];
    inline_accepted(b, &role.name, &accepted).await;

    let refused = [
        doc_of(json!({"Action": "s3:GetObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Permit", "Action": "s3:GetObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject"})),
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*",
            "Resource": "*"}),
        ),
        doc_of(json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "NotResource": "arn:aws:s3:::x"})),
    ];
    for doc in &refused {
        refused_as(
            b.iam.put_role_policy(&role.name, "bad", doc).await,
            "MalformedPolicyDocument",
            doc,
        );
    }
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    assert_eq!(names, ["ok0", "ok1", "ok2", "ok3", "ok4"]);
}

/// Version, action, resource, Sid and condition formats.
pub async fn inline_policy_element_formats(b: &Backend) {
    let role = new_role(b, "pi-formats").await;
    let st = json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"});
    let refused = [
        // Permissions policies must be version 2012-10-17 (Version element page;
        // IAM answers "Policy document must be version 2012-10-17 or greater.").
        json!({"Statement": [st.clone()]}),
        json!({"Version": "2008-10-17", "Statement": [st.clone()]}),
        json!({"Version": "2012-10-18", "Statement": [st.clone()]}),
        // Actions are `service:action` (Action element page).
        doc_of(json!({"Effect": "Allow", "Action": "GetObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "Action": "s3:Get:Object", "Resource": "*"})),
        // Resources are ARNs or `*` (Resource element page).
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "my-bucket"})),
        // Sids are unique within a policy (Sid element page).
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Same", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            {"Sid": "Same", "Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}]}),
        // Condition operators are the documented ones, their values strings or lists
        // (condition operators page).
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Condition": {"StringSortOf": {"aws:username": "a"}}}),
        ),
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Condition": {"StringEquals": {"aws:username": {"nested": "a"}}}}),
        ),
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Effects": "Allow"}),
        ),
    ];
    // The first three are about the Version, the rest about the other elements.
    for (i, doc) in refused.iter().enumerate() {
        let rule = if i < 3 {
            "policy-version-unchecked"
        } else {
            "identity-policy-elements-unchecked"
        };
        refused_or_removed(b, &role.name, &[rule], doc).await;
    }
    // A Principal in an identity-based policy (Principal element page: "You cannot
    // use the Principal element in an identity-based policy"), and a Sid of other than
    // ASCII letters and digits (Sid element page).
    for (doc, rule) in [
        (
            doc_of(
                json!({"Effect": "Allow", "Principal": {"AWS": "111122223333"},
                "Action": "s3:GetObject", "Resource": "*"}),
            ),
            "identity-policy-principal",
        ),
        (
            doc_of(
                json!({"Sid": "not-alnum", "Effect": "Allow", "Action": "s3:GetObject",
                "Resource": "*"}),
            ),
            "sid-format",
        ),
    ] {
        refused_or_removed(b, &role.name, &[rule], &doc).await;
    }
    assert!(
        b.iam
            .list_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    // Numbers and booleans as condition values, which the grammar allows unquoted
    // ("Quotation marks are optional for numeric and Boolean values").
    let numeric = doc_of(json!({"Effect": "Allow", "Action": "s3:ListBucket",
        "Resource": "*", "Condition": {"NumericLessThanEquals": {"s3:max-keys": 10},
                                       "Bool": {"aws:SecureTransport": true}}}));
    match known(b.iam_server, "numeric-condition-values") {
        None => inline_accepted(b, &role.name, &[numeric]).await,
        Some(d) => d.holds(
            &b.iam.put_role_policy(&role.name, "numeric", &numeric).await,
            &numeric,
        ),
    }
}

/// Puts `doc` as the inline policy `bad` of `role`: refused as MalformedPolicyDocument,
/// or, where the server has one of the known differences `ids`, answered as that says,
/// and the policy deleted again if it was taken.
pub(super) async fn refused_or_removed(b: &Backend, role: &str, ids: &[&str], doc: &Value) {
    let r = b.iam.put_role_policy(role, "bad", doc).await;
    let taken = r.is_ok();
    if !refused_unless(b.iam_server, ids, r, "MalformedPolicyDocument", doc) && taken {
        b.iam
            .delete_role_policy(role, "bad")
            .await
            .expect("DeleteRolePolicy");
    }
}

/// A trust policy names a principal and no resource (Principal element page; the
/// trust policy section of the IAM roles terms page).
pub async fn trust_policy_grammar(b: &Backend) {
    let role = new_role(b, "pi-trustgrammar").await;
    let accepted = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", b.account_id)},
         "Action": "sts:AssumeRole"},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]});
    b.iam
        .update_assume_role_policy(&role.name, &accepted)
        .await
        .expect("Allow and Deny statements with principals");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(documents_equivalent(&got.assume_role_policy, &accepted));

    let svc = json!({"Service": "pods.eks.amazonaws.com"});
    let refused = [
        doc_of(
            json!({"Effect": "Allow", "Principal": svc, "Action": "sts:AssumeRole",
            "Resource": "*"}),
        ),
        doc_of(json!({"Effect": "Allow", "Principal": svc, "Action": "s3:GetObject"})),
        doc_of(json!({"Principal": svc, "Action": "sts:AssumeRole"})),
    ];
    // And NotPrincipal in a role trust policy (NotPrincipal element page: "You cannot
    // use the NotPrincipal element in an IAM identity-based policy nor in an IAM role
    // trust policy"), a statement without a principal, and principal types other than
    // AWS, Service, Federated and CanonicalUser (grammar page).
    let more = [
        (
            doc_of(json!({"Effect": "Allow", "NotPrincipal": svc, "Action": "sts:AssumeRole"})),
            "trust-policy-not-principal",
        ),
        (
            doc_of(json!({"Effect": "Allow", "Action": "sts:AssumeRole"})),
            "trust-policy-principal-required",
        ),
        (
            doc_of(json!({"Effect": "Allow", "Principal": {"Pod": "x"},
                "Action": "sts:AssumeRole"})),
            "trust-policy-principal-type",
        ),
    ];
    let all = refused
        .iter()
        .map(|doc| (doc, "trust-policy-grammar-unchecked"))
        .chain(more.iter().map(|(doc, rule)| (doc, *rule)));
    for (doc, rule) in all {
        let r = b.iam.update_assume_role_policy(&role.name, doc).await;
        if !refused_unless(b.iam_server, &[rule], r, "MalformedPolicyDocument", doc) {
            // The server took it: the accepted document back in place.
            b.iam
                .update_assume_role_policy(&role.name, &accepted)
                .await
                .expect("UpdateAssumeRolePolicy");
        }
        let mut input = role_input(&unique("pi-trustgrammar"));
        input.assume_role_policy = doc.clone();
        refused_unless(
            b.iam_server,
            &["create-role-trust-policy-unchecked", rule],
            b.iam.create_role(&input).await,
            "MalformedPolicyDocument",
            doc,
        );
    }
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(
        documents_equivalent(&got.assume_role_policy, &accepted),
        "unchanged"
    );
}

/// A trust policy whose `Federated` principal names an IAM OIDC provider the account
/// does not have (an IRSA trust policy of a cluster whose provider was never created)
/// is refused: MalformedPolicyDocument "Invalid principal in policy" (CreateRole and
/// UpdateAssumeRolePolicy).
pub async fn trust_policy_oidc_provider_must_exist(b: &Backend) {
    let provider = format!(
        "arn:aws:iam::{}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/{}",
        b.account_id,
        suffix().to_uppercase()
    );
    let irsa = doc_of(
        json!({"Effect": "Allow", "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity"}),
    );
    let rule = &["trust-policy-oidc-provider"][..];
    let mut input = role_input(&unique("pi-irsa"));
    input.assume_role_policy = irsa.clone();
    let r = b.iam.create_role(&input).await;
    if let Err(e) = &r {
        assert!(
            e.aws()
                .is_some_and(|a| a.message.starts_with("Invalid principal in policy")),
            "{e}"
        );
    }
    refused_unless(b.iam_server, rule, r, "MalformedPolicyDocument", &irsa);
    let role = new_role(b, "pi-irsa").await;
    let r = b.iam.update_assume_role_policy(&role.name, &irsa).await;
    refused_unless(b.iam_server, rule, r, "MalformedPolicyDocument", &irsa);
}

/// One inline policy alone at the 10,240-character role total, whitespace not counted
/// ("Role policy size cannot exceed 10,240 characters", IAM quotas page).
pub async fn inline_policy_size_limit(b: &Backend) {
    let role = new_role(b, "pi-inlinelimit").await;
    // 10,240 characters and 2,000 spaces: accepted, the spaces are not counted.
    let at_limit = padded(inline_doc("x"), 10240, 2000);
    assert!(at_limit.to_string().chars().count() > 12000);
    b.iam
        .put_role_policy(&role.name, "big", &at_limit)
        .await
        .expect("10,240 characters without whitespace");
    b.iam
        .put_role_policy(&role.name, "big", &padded(inline_doc("x"), 10239, 0))
        .await
        .expect("just under");
    // Past the limit AWS answers LimitExceeded.
    let over = padded(inline_doc("x"), 10241, 0);
    let refused = refusal(
        b.iam_server,
        "inline-policies-size-quota",
        b.iam.put_role_policy(&role.name, "other", &over).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &refused {
        assert!(
            e.message
                .starts_with("Maximum policy size of 10240 bytes exceeded for role"),
            "{e}"
        );
    } else {
        b.iam
            .delete_role_policy(&role.name, "other")
            .await
            .expect("DeleteRolePolicy");
    }
    // Alone too: replacing the only policy with one over the limit.
    refusal(
        b.iam_server,
        "inline-policies-size-quota",
        b.iam.put_role_policy(&role.name, "big", &over).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    assert_eq!(b.iam.list_role_policies(&role.name).await.unwrap(), ["big"]);
}

/// CreateRole with a trust policy just under, at and just over the 2,048-character
/// quota (`ACLSizePerRole`, IAM quotas page), whitespace not counted.
pub async fn trust_policy_size_on_create(b: &Backend) {
    for (size, spaces) in [(2047, 0), (2048, 3000)] {
        let mut input = role_input(&unique("pi-trustsize"));
        input.assume_role_policy = padded(trust(), size, spaces);
        let role = b
            .iam
            .create_role(&input)
            .await
            .unwrap_or_else(|e| panic!("{size} characters: {e}"));
        let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
        assert!(documents_equivalent(
            &got.assume_role_policy,
            &input.assume_role_policy
        ));
    }
    let mut input = role_input(&unique("pi-trustsize"));
    input.assume_role_policy = padded(trust(), 2049, 0);
    let refused = refusal(
        b.iam_server,
        "trust-policy-size-quota",
        b.iam.create_role(&input).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &refused {
        assert_eq!(e.message, "Cannot exceed quota for ACLSizePerRole: 2048");
    }
    let made = b.iam.get_role(&input.name).await.unwrap();
    assert_eq!(made.is_some(), refused.is_none(), "{made:?}");
}

/// Policy documents hold only tab, line feed, carriage return and U+0020 to U+00FF
/// ("IAM name requirements", IAM quotas page; the `PolicyDocument` pattern of the IAM
/// API reference); anything else is refused as a ValidationError.
pub async fn policy_document_characters(b: &Backend) {
    let mut latin1 = trust();
    latin1["Statement"][0]["Condition"] =
        json!({"StringEquals": {"aws:PrincipalTag/x": "café crème"}});
    let mut input = role_input(&unique("pi-chars"));
    input.assume_role_policy = latin1.clone();
    let role = b.iam.create_role(&input).await.expect("Latin-1 characters");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(documents_equivalent(&got.assume_role_policy, &latin1));
    let mut inline = inline_doc("café");
    inline_accepted(b, &role.name, std::slice::from_ref(&inline)).await;
    let rule = &["policy-document-characters"][..];
    let mut beyond = latin1.clone();
    beyond["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalTag/x"] = json!("Łódź");
    let r = b.iam.update_assume_role_policy(&role.name, &beyond).await;
    refused_unless(b.iam_server, rule, r, "ValidationError", &beyond);
    let mut create = role_input(&unique("pi-chars"));
    create.assume_role_policy = beyond.clone();
    let r = b.iam.create_role(&create).await;
    refused_unless(b.iam_server, rule, r, "ValidationError", &beyond);
    inline["Statement"][0]["Resource"] = json!(["arn:aws:s3:::bucket-€/*"]);
    let r = b.iam.put_role_policy(&role.name, "euro", &inline).await;
    let mut want = vec!["ok0"];
    if !refused_unless(b.iam_server, rule, r, "ValidationError", &inline) {
        want.insert(0, "euro");
    }
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    assert_eq!(names, want);
}

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"]
        }]
    })
}

#[test]
fn accepts_well_formed_documents() {
    validate(&trust(), DocumentKind::Trust).unwrap();
    let identity = json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Deny", "NotAction": "s3:*", "Resource": ["*"],
        "Condition": {"Bool": {"aws:SecureTransport": false}}}});
    validate(&identity, DocumentKind::Identity).unwrap();
}

#[test]
fn refuses_malformed_documents() {
    let cases = [
        (json!([]), "Syntax errors in policy."),
        (json!({"Statement": []}), "Missing required field Version"),
        (
            json!({"Version": "2012-10-17"}),
            "Missing required field Statement",
        ),
        (
            json!({"Version": "2020-01-01", "Statement": []}),
            "The policy failed legacy parsing",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe",
                "Principal": "*", "Action": "sts:AssumeRole"}]}),
            "Invalid effect",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": "*"}]}),
            "Missing required field Action",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "sts:AssumeRole"}]}),
            "Missing required field Principal",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": "*", "Action": "sts:AssumeRole", "Resource": "*"}]}),
            "Has prohibited field Resource",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Nobody": "x"}, "Action": "sts:AssumeRole"}]}),
            "Invalid principal in policy: Nobody",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": "*", "Action": 3}]}),
            "Syntax errors in policy.",
        ),
    ];
    for (doc, message) in cases {
        assert_eq!(
            validate(&doc, DocumentKind::Trust),
            Err(PolicyProblem(message.into())),
            "{doc}"
        );
    }
    let with_principal = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": "*", "Action": "s3:*", "Resource": "*"}]});
    assert_eq!(
        validate(&with_principal, DocumentKind::Identity)
            .unwrap_err()
            .0,
        "Policy document should not specify a principal."
    );
    let condition = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": "x"}}]});
    assert!(validate(&condition, DocumentKind::Identity).is_err());
    let dup_sid = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Sid": "A", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}]});
    assert!(validate(&dup_sid, DocumentKind::Identity).is_err());
}

#[test]
fn size_ignores_whitespace_everywhere() {
    let doc = json!({"Version": "2012-10-17", "Statement": {"Sid": "A", "Effect": "Allow",
        "Action": "s3:Get Object", "Resource": "*"}});
    let compact = r#"{"Version":"2012-10-17","Statement":{"Sid":"A","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}"#;
    assert_eq!(size_chars(&doc), compact.chars().count());
}

#[test]
fn decodes_url_encoded_and_plain_documents() {
    let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22pods.eks.amazonaws.com%22%7D%2C%22Action%22%3A%5B%22sts%3AAssumeRole%22%2C%22sts%3ATagSession%22%5D%7D%5D%7D";
    assert_eq!(decode_policy(encoded).unwrap(), trust());
    assert_eq!(decode_policy(&trust().to_string()).unwrap(), trust());
    let form = "%7B%22a%22%3A+%22x+y%22%7D";
    assert_eq!(decode_policy(form).unwrap(), json!({"a": "x y"}));
    let plus = "%7B%22a%22%3A%22x%2By%22%7D";
    assert_eq!(decode_policy(plus).unwrap(), json!({"a": "x+y"}));
    assert!(decode_policy("%7Bnot json").is_err());
}

#[test]
fn equivalence_ignores_what_iam_ignores() {
    let a = trust();
    let b = json!({
        "Statement": {
            "Sid": "PodIdentity",
            "Action": ["STS:TagSession", "sts:assumerole", "sts:TagSession"],
            "Principal": {"Service": ["pods.eks.amazonaws.com"]},
            "Effect": "Allow"
        },
        "Version": "2012-10-17"
    });
    assert!(documents_equivalent(&a, &b));
    let account = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ["111122223333"]}}}]});
    let arn = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::111122223333:root"]}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"AWS:SourceAccount": "111122223333"}}}]});
    assert!(documents_equivalent(&account, &arn));
    let star = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": "*", "Action": "sts:AssumeRole"}]});
    let aws_star = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "*"}, "Action": ["sts:AssumeRole"]}]});
    assert!(documents_equivalent(&star, &aws_star));
    let bools = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
        "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": false}}}]});
    let strings = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
        "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}}]});
    assert!(documents_equivalent(&bools, &strings));
}

#[test]
fn trust_policies_allow_only_sts_actions() {
    let mut doc = trust();
    doc["Statement"][0]["Action"] = json!(["sts:AssumeRole", "s3:GetObject"]);
    assert_eq!(
        validate(&doc, DocumentKind::Trust).unwrap_err().0,
        "AssumeRole policy may only specify STS AssumeRole actions."
    );
}

#[test]
fn equivalence_sees_changes_of_meaning() {
    let a = trust();
    let mut effect = trust();
    effect["Statement"][0]["Effect"] = json!("Deny");
    let mut action = trust();
    action["Statement"][0]["Action"] = json!("sts:AssumeRole");
    let mut service = trust();
    service["Statement"][0]["Principal"]["Service"] = json!("ec2.amazonaws.com");
    let mut condition = trust();
    condition["Statement"][0]["Condition"] =
        json!({"StringEquals": {"aws:RequestTag/kubernetes-namespace": "prod"}});
    let mut resource_case = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::Bucket/*"}]});
    let lower = resource_case.clone();
    resource_case["Statement"][0]["Resource"] = json!("arn:aws:s3:::bucket/*");
    for other in [effect, action, service, condition] {
        assert!(!documents_equivalent(&a, &other), "{other}");
    }
    assert!(!documents_equivalent(&lower, &resource_case));
}

#[test]
fn pod_identity_trust_policies() {
    let open = pod_identity_trust_policy(None);
    validate(&open, DocumentKind::Trust).unwrap();
    assert!(documents_equivalent(&open, &trust()));
    assert!(trust_admits_pod_identity(&open));
    let scope = TrustScope {
        account_id: "111122223333".into(),
        cluster_arn: "arn:aws:eks:us-east-1:111122223333:cluster/prod".into(),
        namespace: "kube-system".into(),
        service_account: "lbc".into(),
    };
    let scoped = pod_identity_trust_policy(Some(&scope));
    validate(&scoped, DocumentKind::Trust).unwrap();
    assert!(size_chars(&scoped) < TRUST_POLICY_MAX_CHARS);
    assert!(trust_admits_pod_identity(&scoped));
    let cond = &scoped["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(cond["aws:RequestTag/kubernetes-namespace"], "kube-system");
    assert_eq!(cond["aws:RequestTag/kubernetes-service-account"], "lbc");
    assert_eq!(
        cond["aws:RequestTag/eks-cluster-arn"],
        scope.cluster_arn.as_str()
    );
    assert_eq!(cond["aws:SourceAccount"], "111122223333");
    assert!(!documents_equivalent(&open, &scoped));
    let other_sa = pod_identity_trust_policy(Some(&TrustScope {
        service_account: "other".into(),
        ..scope.clone()
    }));
    assert!(!documents_equivalent(&scoped, &other_sa));
}

#[test]
fn a_session_policy_is_at_most_2048_characters() {
    let with_resources = |n: usize| {
        let resources: Vec<String> = (0..n).map(|i| format!("arn:aws:s3:::b{i:04}/*")).collect();
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}]})
    };
    let small = with_resources(10);
    validate(&small, DocumentKind::Session).unwrap();
    let big = with_resources(120);
    assert!(size_chars(&big) > SESSION_POLICY_MAX_CHARS);
    let err = validate(&big, DocumentKind::Session).unwrap_err();
    assert!(err.0.contains("2048"), "{err}");
    // The same document is fine as an identity policy.
    validate(&big, DocumentKind::Identity).unwrap();
    // Right at the limit passes.
    let mut n = 10;
    while size_chars(&with_resources(n + 1)) <= SESSION_POLICY_MAX_CHARS {
        n += 1;
    }
    validate(&with_resources(n), DocumentKind::Session).unwrap();
}

#[test]
fn without_session_tags_the_trust_keeps_the_source_account_and_cluster() {
    let arn = "arn:aws:eks:us-east-1:111122223333:cluster/prod";
    let doc = cluster_trust_policy("111122223333", arn);
    validate(&doc, DocumentKind::Trust).unwrap();
    assert!(trust_admits_pod_identity(&doc));
    let cond = &doc["Statement"][0]["Condition"];
    assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "111122223333");
    assert_eq!(cond["ArnEquals"]["aws:SourceArn"], arn);
    let text = doc.to_string();
    assert!(!text.contains("aws:RequestTag/"), "{text}");
    assert!(!documents_equivalent(
        &doc,
        &pod_identity_trust_policy(None)
    ));
    let other = cluster_trust_policy(
        "111122223333",
        "arn:aws:eks:us-east-1:111122223333:cluster/dev",
    );
    assert!(!documents_equivalent(&doc, &other));
}

#[test]
fn tells_whether_a_trust_policy_admits_pod_identity() {
    let ec2 = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow",
        "Principal": {"Service": ["ec2.amazonaws.com"]}, "Action": "sts:AssumeRole"}});
    assert!(!trust_admits_pod_identity(&ec2));
    let no_tag = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    assert!(!trust_admits_pod_identity(&no_tag));
    let deny = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
        "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:*"}]});
    assert!(!trust_admits_pod_identity(&deny));
    let wildcard = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com",
            "pods.eks.amazonaws.com"]}, "Action": "STS:*"}]});
    assert!(trust_admits_pod_identity(&wildcard));
}

#[test]
fn target_role_policy_is_a_valid_identity_policy() {
    let doc = target_role_policy("arn:aws:iam::999999999999:role/target");
    validate(&doc, DocumentKind::Identity).unwrap();
    assert_eq!(
        doc["Statement"][0]["Resource"],
        "arn:aws:iam::999999999999:role/target"
    );
}

fn statement() -> impl Strategy<Value = Value> {
    (
        prop::bool::ANY,
        prop::collection::vec("[a-z]{1,4}:[A-Za-z]{1,6}", 1..4),
        prop::collection::vec("arn:aws:s3:::[a-z]{1,5}", 1..4),
    )
        .prop_map(|(allow, actions, resources)| {
            json!({"Effect": if allow {"Allow"} else {"Deny"},
                   "Action": actions, "Resource": resources})
        })
}

proptest! {
    #[test]
    fn url_encoding_round_trips(statements in prop::collection::vec(statement(), 1..4), tag in "[ -~]{0,20}") {
        let mut doc = json!({"Version": "2012-10-17", "Statement": statements});
        doc["Statement"][0]["Condition"] = json!({"StringEquals": {"aws:PrincipalTag/t": tag}});
        let encoded = percent_encoding::utf8_percent_encode(
            &doc.to_string(), percent_encoding::NON_ALPHANUMERIC).to_string();
        prop_assert_eq!(decode_policy(&encoded).unwrap(), doc);
    }

    #[test]
    fn reordering_and_case_keep_meaning(
        statements in prop::collection::vec(statement(), 1..5),
        seed in any::<u64>(),
    ) {
        let doc = json!({"Version": "2012-10-17", "Statement": statements.clone()});
        prop_assert!(validate(&doc, DocumentKind::Identity).is_ok());
        // Reverse statement order and every list, upper-case actions, and write
        // one-element lists as plain strings.
        let shuffled: Vec<Value> = statements.iter().rev().map(|s| {
            let mut s = s.clone();
            for key in ["Action", "Resource"] {
                let mut list: Vec<Value> = s[key].as_array().unwrap().clone();
                list.reverse();
                if key == "Action" && seed % 2 == 0 {
                    list = list.iter().map(|a| json!(a.as_str().unwrap().to_uppercase())).collect();
                }
                s[key] = if list.len() == 1 { list[0].clone() } else { Value::Array(list) };
            }
            s
        }).collect();
        let other = json!({"Statement": shuffled, "Version": "2012-10-17"});
        prop_assert!(documents_equivalent(&doc, &other));
    }

    #[test]
    fn flipping_an_effect_changes_meaning(statements in prop::collection::vec(statement(), 1..5)) {
        let doc = json!({"Version": "2012-10-17", "Statement": statements.clone()});
        let mut changed = statements.clone();
        let flipped = if changed[0]["Effect"] == "Allow" { "Deny" } else { "Allow" };
        changed[0]["Effect"] = json!(flipped);
        let other = json!({"Version": "2012-10-17", "Statement": changed});
        // The flipped statement may equal another one already present; only assert
        // when it does not.
        let canon: BTreeSet<String> = statements.iter().map(|s| normalize_statement(s).to_string()).collect();
        let flipped_canon = normalize_statement(&other["Statement"][0]).to_string();
        let left: BTreeSet<String> = statements.iter().skip(1).map(|s| normalize_statement(s).to_string()).collect();
        if !canon.contains(&flipped_canon) && !left.contains(&normalize_statement(&statements[0]).to_string()) {
            prop_assert!(!documents_equivalent(&doc, &other));
        }
    }
}

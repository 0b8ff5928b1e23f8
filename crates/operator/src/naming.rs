//! Names and ARNs: the derived role name and path (DESIGN §4), ownership tags, the
//! association's idempotency token, and the checks IAM and EKS apply to names.
//!
//! Implemented: the derived role name `[<prefix>]pi-<cluster>-<namespace>-<name>-<hash>`,
//! whose readable part is cut to fit IAM's 64 characters and whose hash (20 hex digits
//! of SHA-256 over the length-prefixed cluster ARN, namespace and binding name) is
//! always there, so two bindings of any clusters of one account never share a name;
//! ownership tags naming the cluster by name and by ARN; the path
//! `/pod-identity/<cluster>/`; role ARNs from account, path and name; parsing of role
//! ARNs. Not implemented: ARN partitions other than those in the cluster's own ARN.

use sha2::{Digest, Sha256};

use crate::aws::Tags;

/// IAM's limit on role names.
pub const ROLE_NAME_MAX: usize = 64;
/// IAM's limit on role paths.
pub const ROLE_PATH_MAX: usize = 512;
/// Hex digits of the hash closing every derived role name: 80 bits, lower case because
/// IAM compares role names without regard to case.
pub const ROLE_NAME_HASH_LEN: usize = 20;

/// Ownership tag keys, set on every role and association the operator makes.
pub const TAG_CLUSTER: &str = "podidentity.dev/cluster";
/// The cluster's ARN: tells apart clusters of one name in two regions or accounts.
pub const TAG_CLUSTER_ARN: &str = "podidentity.dev/cluster-arn";
pub const TAG_NAMESPACE: &str = "podidentity.dev/namespace";
pub const TAG_NAME: &str = "podidentity.dev/name";

/// Eight hex digits of SHA-256: short, stable across versions and platforms.
pub fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a binding's identity: SHA-256 over a domain label and each part preceded
/// by its length, so no two different tuples feed the same bytes.
fn identity_hash(cluster_arn: &str, namespace: &str, name: &str) -> String {
    let mut hasher = Sha256::new();
    for part in ["podidentity.dev/role-name/v1", cluster_arn, namespace, name] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(ROLE_NAME_HASH_LEN)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect()
}

/// The cluster name in an EKS cluster ARN (`arn:<partition>:eks:<region>:<account>:cluster/<name>`);
/// the whole string when it is not one.
pub fn cluster_name_of(cluster_arn: &str) -> &str {
    cluster_arn
        .rsplit_once(":cluster/")
        .map_or(cluster_arn, |(_, name)| name)
}

/// The default role name of a binding of the cluster `cluster_arn`.
pub fn default_role_name(cluster_arn: &str, namespace: &str, name: &str) -> String {
    prefixed_role_name("", cluster_arn, namespace, name)
}

/// The default role name under a guardrail's role name prefix: the prefix, whole, then
/// the readable part cut to what is left, then the identity hash, whole. Two bindings
/// differing in cluster ARN, namespace or name differ in the hash, whatever the prefix.
/// A prefix too long to leave room for the hash (the guardrails allow 32 characters)
/// gives a name IAM refuses, which validation reports.
pub fn prefixed_role_name(prefix: &str, cluster_arn: &str, namespace: &str, name: &str) -> String {
    let hash = identity_hash(cluster_arn, namespace, name);
    let cluster = cluster_name_of(cluster_arn);
    let readable = format!("pi-{cluster}-{namespace}-{name}");
    let room = ROLE_NAME_MAX.saturating_sub(prefix.len() + 1 + hash.len());
    let head: String = readable
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c))
        .take(room)
        .collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        format!("{prefix}{hash}")
    } else {
        format!("{prefix}{head}-{hash}")
    }
}

/// The path of the roles the operator makes for one cluster.
pub fn role_path(cluster: &str) -> String {
    format!("/pod-identity/{cluster}/")
}

/// True when IAM accepts this role name.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ROLE_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// True when IAM accepts this path: `/`, or `/`-delimited printable ASCII.
pub fn valid_role_path(path: &str) -> bool {
    path.len() <= ROLE_PATH_MAX
        && path.starts_with('/')
        && path.ends_with('/')
        && path.chars().all(|c| ('!'..='~').contains(&c))
}

/// The ARN of a role: partition and account taken from the cluster's ARN.
pub fn role_arn(cluster_arn: &str, account_id: &str, path: &str, name: &str) -> String {
    let partition = cluster_arn.split(':').nth(1).unwrap_or("aws");
    format!("arn:{partition}:iam::{account_id}:role{path}{name}")
}

/// True for a Kubernetes object name of the RFC 1123 subdomain kind (ServiceAccounts).
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The AWS partitions whose ARNs the operator accepts.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// True for `arn:<partition>:iam::<account or aws>:policy/<path><name>`.
pub fn is_policy_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_lit, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    arn_lit == "arn"
        && PARTITIONS.contains(&partition)
        && service == "iam"
        && region.is_empty()
        && (account == "aws"
            || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
        && resource.strip_prefix("policy/").is_some_and(|rest| {
            let name = rest.rsplit('/').next().unwrap_or_default();
            !name.is_empty()
                && name.len() <= 128
                && rest.len() <= 512 + 128
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        })
}

/// A role ARN's parts: account, path and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleArn {
    pub account_id: String,
    pub path: String,
    pub name: String,
}

/// Parses `arn:<partition>:iam::<account>:role<path><name>`; `None` when it is not one.
pub fn parse_role_arn(arn: &str) -> Option<RoleArn> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn_lit != "arn"
        || !PARTITIONS.contains(&partition)
        || service != "iam"
        || !region.is_empty()
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let rest = resource.strip_prefix("role/")?;
    let (path, name) = match rest.rfind('/') {
        Some(i) => (format!("/{}", &rest[..=i]), &rest[i + 1..]),
        None => ("/".to_owned(), rest),
    };
    (valid_role_name(name) && valid_role_path(&path)).then(|| RoleArn {
        account_id: account.to_owned(),
        path,
        name: name.to_owned(),
    })
}

/// The ownership tags of one binding of the cluster `cluster_arn`: the cluster by name
/// (what the operator's IAM policy conditions on) and by ARN, the namespace and the name.
pub fn ownership_tags(cluster_arn: &str, namespace: &str, name: &str) -> Tags {
    [
        (TAG_CLUSTER, cluster_name_of(cluster_arn)),
        (TAG_CLUSTER_ARN, cluster_arn),
        (TAG_NAMESPACE, namespace),
        (TAG_NAME, name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// True when the tags say the resource belongs to that binding of that cluster: a
/// resource tagged for a cluster of the same name elsewhere is not.
pub fn owned_by(tags: &Tags, cluster_arn: &str, namespace: &str, name: &str) -> bool {
    ownership_tags(cluster_arn, namespace, name)
        .iter()
        .all(|(k, v)| tags.get(k) == Some(v))
}

/// True when the tags carry any ownership tag of this operator.
pub fn has_ownership_tags(tags: &Tags) -> bool {
    [TAG_CLUSTER, TAG_CLUSTER_ARN, TAG_NAMESPACE, TAG_NAME]
        .iter()
        .any(|k| tags.contains_key(*k))
}

/// CreatePodIdentityAssociation's `clientRequestToken`: the binding's UID and a hash of
/// what is created, so a retried create is recognised and a different create is not
/// (EKS allows 1 to 64 characters).
pub fn association_token(uid: &str, namespace: &str, service_account: &str) -> String {
    let token = format!("{uid}-{}", short_hash(&[namespace, service_account]));
    token.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: &str = "arn:aws:eks:us-east-1:111122223333:cluster/prod";
    const PROD_EU: &str = "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu";
    const PROD_WEST: &str = "arn:aws:eks:us-west-2:111122223333:cluster/prod";

    #[test]
    fn short_names_are_readable_and_end_in_the_identity_hash() {
        let n = default_role_name(PROD, "kube-system", "alb");
        let (head, hash) = n.rsplit_once('-').expect("a hash");
        assert_eq!(head, "pi-prod-kube-system-alb");
        assert_eq!(hash.len(), ROLE_NAME_HASH_LEN);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(n, default_role_name(PROD, "kube-system", "alb"));
        assert_eq!(role_path("prod"), "/pod-identity/prod/");
        assert_eq!(cluster_name_of(PROD), "prod");
        assert_eq!(cluster_name_of("plain"), "plain");
    }

    #[test]
    fn dashes_moved_between_parts_give_other_names() {
        assert_ne!(
            default_role_name(PROD, "team-a", "b-x"),
            default_role_name(PROD, "team-a-b", "x")
        );
        // Clusters `prod` and `prod-eu` of one account.
        assert_ne!(
            default_role_name(PROD, "eu-team", "app"),
            default_role_name(PROD_EU, "team", "app")
        );
        // Two clusters named `prod` in two regions of one account.
        assert_ne!(
            default_role_name(PROD, "team", "app"),
            default_role_name(PROD_WEST, "team", "app")
        );
        assert_ne!(
            prefixed_role_name("t-", PROD, "team-a", "b-x"),
            prefixed_role_name("t-", PROD, "team-a-b", "x")
        );
    }

    #[test]
    fn long_names_are_cut_keeping_prefix_and_hash_whole() {
        let ns = "a-very-long-namespace-name-for-testing";
        let a = default_role_name(PROD, ns, "aws-load-balancer-controller");
        let b = default_role_name(PROD, ns, "aws-load-balancer-controllers");
        assert_eq!(a.len(), ROLE_NAME_MAX);
        assert!(valid_role_name(&a) && valid_role_name(&b));
        assert_ne!(a, b);
        assert!(a.starts_with("pi-prod-a-very-long"));
        let p = prefixed_role_name(&"p".repeat(32), PROD, ns, "aws-load-balancer-controller");
        assert!(valid_role_name(&p) && p.starts_with(&"p".repeat(32)));
        assert!(p.ends_with(&a[a.len() - ROLE_NAME_HASH_LEN..]));
    }

    #[test]
    fn role_names_and_paths_follow_iam_rules() {
        assert!(valid_role_name("a+b=c,d.e@f_g-h"));
        assert!(!valid_role_name(""));
        assert!(!valid_role_name("has space"));
        assert!(!valid_role_name(&"x".repeat(65)));
        assert!(valid_role_path("/"));
        assert!(valid_role_path("/pod-identity/prod/"));
        assert!(!valid_role_path("pod-identity/"));
        assert!(!valid_role_path("/a b/"));
    }

    #[test]
    fn role_arns_round_trip() {
        let arn = role_arn(PROD, "111122223333", "/pod-identity/prod/", "pi-prod-ns-x");
        assert_eq!(
            arn,
            "arn:aws:iam::111122223333:role/pod-identity/prod/pi-prod-ns-x"
        );
        let parsed = parse_role_arn(&arn).expect("valid");
        assert_eq!(parsed.path, "/pod-identity/prod/");
        assert_eq!(parsed.name, "pi-prod-ns-x");
        assert_eq!(
            parse_role_arn("arn:aws:iam::111122223333:role/plain").map(|r| r.path),
            Some("/".into())
        );
        assert!(parse_role_arn("arn:aws:iam::1111:role/x").is_none());
        assert!(parse_role_arn("arn:aws:iam::111122223333:policy/x").is_none());
    }

    #[test]
    fn ownership_needs_every_tag_and_the_cluster_arn() {
        let mut tags = ownership_tags(PROD, "ns", "b");
        assert_eq!(tags.get(TAG_CLUSTER).map(String::as_str), Some("prod"));
        assert_eq!(tags.get(TAG_CLUSTER_ARN).map(String::as_str), Some(PROD));
        assert!(owned_by(&tags, PROD, "ns", "b"));
        assert!(!owned_by(&tags, PROD, "ns", "other"));
        // A cluster of the same name in another region does not own it.
        assert!(!owned_by(&tags, PROD_WEST, "ns", "b"));
        tags.remove(TAG_NAME);
        assert!(!owned_by(&tags, PROD, "ns", "b"));
        assert!(has_ownership_tags(&tags));
    }

    #[test]
    fn tokens_are_stable_bounded_and_differ_by_service_account() {
        let uid = "0b7a2c4e-1111-2222-3333-444455556666";
        let a = association_token(uid, "ns", "sa");
        assert_eq!(a, association_token(uid, "ns", "sa"));
        assert_ne!(a, association_token(uid, "ns", "sa2"));
        assert!(a.len() <= 64 && a.starts_with(uid));
    }
}

/// Derived role names never collide: any two different (cluster ARN, namespace, name)
/// tuples get two names, under any one prefix and across prefixes.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Kubernetes-like names, dashes likely, up to the 63/253-character edges.
    fn dns_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,3}(-[a-z]{1,3}){0,3}",
            "[a-z0-9-]{1,20}",
            "[a-z][a-z0-9-]{55,62}",
            "[a-z][a-z0-9.-]{60,120}",
        ]
    }

    fn cluster_arn() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("us-east-1"), Just("eu-west-1")],
            prop_oneof![Just("111122223333"), Just("444455556666")],
            prop_oneof![
                "[a-z]{1,3}(-[a-z]{1,3}){0,2}",
                "[a-zA-Z][a-zA-Z0-9_-]{60,99}"
            ],
        )
            .prop_map(|(region, account, name)| {
                format!("arn:aws:eks:{region}:{account}:cluster/{name}")
            })
    }

    fn prefix() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z]{1,4}-", "[a-zA-Z0-9+=,.@_-]{32}"]
    }

    /// One tuple and a second one near it: a dash moved across a part boundary, one
    /// character added or removed, or another tuple altogether.
    fn two_tuples() -> impl Strategy<Value = ((String, String, String), (String, String, String))> {
        (
            cluster_arn(),
            dns_name(),
            dns_name(),
            cluster_arn(),
            dns_name(),
            dns_name(),
            0..5u8,
        )
            .prop_map(|(c, ns, n, c2, ns2, n2, how)| {
                let a = (c.clone(), ns.clone(), n.clone());
                let b = match how {
                    0 => (c, format!("{ns}-{n}"), n.chars().skip(1).collect()),
                    1 => (c, ns.chars().skip(1).collect(), format!("{}-{n}", &ns[..1])),
                    2 => (c, ns, format!("{n}x")),
                    3 => (format!("{c}-{}", &ns[..1]), ns.chars().skip(1).collect(), n),
                    _ => (c2, ns2, n2),
                };
                (a, b)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn different_bindings_never_share_a_role_name(
            (a, b) in two_tuples(),
            pa in prefix(),
            pb in prefix(),
        ) {
            prop_assume!(a != b);
            let na = prefixed_role_name(&pa, &a.0, &a.1, &a.2);
            let nb = prefixed_role_name(&pb, &b.0, &b.1, &b.2);
            prop_assert!(valid_role_name(&na), "{na}");
            prop_assert!(valid_role_name(&nb), "{nb}");
            prop_assert!(na.starts_with(&pa));
            // IAM compares role names without regard to case.
            prop_assert_ne!(na.to_ascii_lowercase(), nb.to_ascii_lowercase());
            prop_assert_eq!(na, prefixed_role_name(&pa, &a.0, &a.1, &a.2));
        }

        #[test]
        fn many_bindings_many_names(
            tuples in prop::collection::btree_set((cluster_arn(), dns_name(), dns_name()), 1..64),
            p in prefix(),
        ) {
            let names: std::collections::BTreeSet<String> = tuples
                .iter()
                .map(|(c, ns, n)| prefixed_role_name(&p, c, ns, n).to_ascii_lowercase())
                .collect();
            prop_assert_eq!(names.len(), tuples.len());
        }
    }
}

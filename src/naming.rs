//! Names and ARNs: the derived role name and path (DESIGN §4), ownership tags, the
//! association's idempotency token, and the checks IAM and EKS apply to names.
//!
//! Implemented: `pi-<cluster>-<namespace>-<name>`, cut to IAM's 64 characters with a
//! stable 8-hex-digit hash suffix when longer; the path `/pod-identity/<cluster>/`;
//! role ARNs from account, path and name; parsing of role ARNs. Not implemented: ARN
//! partitions other than those in the cluster's own ARN.

use sha2::{Digest, Sha256};

use crate::aws::Tags;

/// IAM's limit on role names.
pub const ROLE_NAME_MAX: usize = 64;
/// IAM's limit on role paths.
pub const ROLE_PATH_MAX: usize = 512;

/// Ownership tag keys, set on every role and association the operator makes.
pub const TAG_CLUSTER: &str = "podidentity.dev/cluster";
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

/// The default role name of a binding.
pub fn default_role_name(cluster: &str, namespace: &str, name: &str) -> String {
    let full = format!("pi-{cluster}-{namespace}-{name}");
    if full.len() <= ROLE_NAME_MAX {
        return full;
    }
    let hash = short_hash(&[cluster, namespace, name]);
    // Every character of `full` is ASCII (cluster, namespace and name are DNS-like), so
    // cutting at a byte index is cutting at a character.
    let keep = ROLE_NAME_MAX - hash.len() - 1;
    let head: String = full.chars().take(keep).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

/// `full` when IAM's 64 characters hold it, else its head and a short hash of it.
pub fn fit_role_name(full: &str) -> String {
    if full.len() <= ROLE_NAME_MAX {
        return full.to_owned();
    }
    let hash = short_hash(&[full]);
    let head: String = full.chars().take(ROLE_NAME_MAX - hash.len() - 1).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
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

/// The ownership tags of one binding.
pub fn ownership_tags(cluster: &str, namespace: &str, name: &str) -> Tags {
    [
        (TAG_CLUSTER, cluster),
        (TAG_NAMESPACE, namespace),
        (TAG_NAME, name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// True when the tags say the resource belongs to that binding.
pub fn owned_by(tags: &Tags, cluster: &str, namespace: &str, name: &str) -> bool {
    ownership_tags(cluster, namespace, name)
        .iter()
        .all(|(k, v)| tags.get(k) == Some(v))
}

/// True when the tags carry any ownership tag of this operator.
pub fn has_ownership_tags(tags: &Tags) -> bool {
    [TAG_CLUSTER, TAG_NAMESPACE, TAG_NAME]
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

    #[test]
    fn short_names_are_kept_whole() {
        assert_eq!(
            default_role_name("prod", "kube-system", "alb"),
            "pi-prod-kube-system-alb"
        );
        assert_eq!(role_path("prod"), "/pod-identity/prod/");
    }

    #[test]
    fn long_names_are_cut_with_a_stable_distinct_hash() {
        let ns = "a-very-long-namespace-name-for-testing";
        let a = default_role_name("production-cluster", ns, "aws-load-balancer-controller");
        let b = default_role_name("production-cluster", ns, "aws-load-balancer-controllers");
        assert_eq!(a.len(), ROLE_NAME_MAX);
        assert!(valid_role_name(&a) && valid_role_name(&b));
        assert_ne!(a, b);
        assert_eq!(
            a,
            default_role_name("production-cluster", ns, "aws-load-balancer-controller")
        );
        assert!(a.starts_with("pi-production-cluster-a-very-long"));
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
        let arn = role_arn(
            "arn:aws:eks:us-east-1:111122223333:cluster/prod",
            "111122223333",
            "/pod-identity/prod/",
            "pi-prod-ns-x",
        );
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
    fn ownership_needs_every_tag() {
        let mut tags = ownership_tags("c", "ns", "b");
        assert!(owned_by(&tags, "c", "ns", "b"));
        assert!(!owned_by(&tags, "c", "ns", "other"));
        tags.remove(TAG_NAME);
        assert!(!owned_by(&tags, "c", "ns", "b"));
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

//! IAM's and EKS's input rules and the errors they answer with, worded as the services
//! word them.

use serde_json::Value;

use super::grammar::{self, Kind, SESSION_POLICY_MAX_CHARS};
use crate::faults::aws_error;
use pod_identity_aws::Tags;
use pod_identity_aws::{Error, Result};

// Quotas and limits, from "IAM and AWS STS quotas"
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html), the
// IAM API reference (CreateRole, TagRole) and "Tagging your Amazon EKS resources"
// (https://docs.aws.amazon.com/eks/latest/userguide/eks-using-tags.html).

/// Tags per role (IAM) and per resource (EKS): 50.
pub const MAX_TAGS: usize = 50;
/// Tag key length: 1 to 128 characters.
pub const MAX_TAG_KEY: usize = 128;
/// Tag value length: at most 256 characters.
pub const MAX_TAG_VALUE: usize = 256;
/// A role's maximum session duration: 1 to 12 hours, in seconds (CreateRole,
/// `MaxSessionDuration`).
pub const MIN_SESSION: i32 = 3600;
pub const MAX_SESSION: i32 = 43200;
/// Managed policies attached to one role (`PoliciesPerRole`): 10 by default, raisable
/// to 25.
pub const MANAGED_POLICIES_PER_ROLE: usize = 10;

fn validation(op: &str, value: &str, field: &str, constraint: &str) -> Error {
    aws_error(
        op,
        "ValidationError",
        &format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ),
    )
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Role names: 1 to 64 characters of `[\w+=,.@-]`.
pub fn role_name(op: &str, name: &str) -> Result<()> {
    let len = name.chars().count();
    if len == 0 {
        return Err(validation(
            op,
            name,
            "roleName",
            "Member must have length greater than or equal to 1",
        ));
    }
    if len > 64 {
        return Err(validation(
            op,
            name,
            "roleName",
            "Member must have length less than or equal to 64",
        ));
    }
    if !name.chars().all(is_name_char) {
        return Err(validation(
            op,
            name,
            "roleName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

/// Inline policy names: 1 to 128 characters of `[\w+=,.@-]`.
pub fn policy_name(op: &str, name: &str) -> Result<()> {
    let len = name.chars().count();
    if len == 0 || len > 128 || !name.chars().all(is_name_char) {
        return Err(validation(
            op,
            name,
            "policyName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and 128",
        ));
    }
    Ok(())
}

/// Paths: `/`, or `/` + printable ASCII + `/`, at most 512 characters.
pub fn path(op: &str, path: &str) -> Result<()> {
    if path.len() > 512 {
        return Err(validation(
            op,
            path,
            "path",
            "Member must have length less than or equal to 512",
        ));
    }
    let ok = path == "/"
        || (path.len() >= 3
            && path.starts_with('/')
            && path.ends_with('/')
            && path.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    if !ok {
        return Err(validation(
            op,
            path,
            "path",
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(())
}

/// Descriptions: at most 1,000 characters of tab, newlines and printable Latin-1.
pub fn description(op: &str, d: &str) -> Result<()> {
    if d.chars().count() > 1000 {
        return Err(validation(
            op,
            d,
            "description",
            "Member must have length less than or equal to 1000",
        ));
    }
    let ok = d
        .chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}'));
    if !ok {
        return Err(validation(
            op,
            d,
            "description",
            "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u007E\\u00A1-\\u00FF]*",
        ));
    }
    Ok(())
}

pub fn max_session_duration(op: &str, secs: i32) -> Result<()> {
    if secs < MIN_SESSION {
        return Err(validation(
            op,
            &secs.to_string(),
            "maxSessionDuration",
            "Member must have value greater than or equal to 3600",
        ));
    }
    if secs > MAX_SESSION {
        return Err(validation(
            op,
            &secs.to_string(),
            "maxSessionDuration",
            "Member must have value less than or equal to 43200",
        ));
    }
    Ok(())
}

/// A policy document parameter's characters: tab, line feed, carriage return and
/// U+0020 to U+00FF, else IAM's ValidationError for the parameter's pattern.
fn document_characters(op: &str, field: &str, doc: &Value) -> Result<()> {
    if grammar::characters_allowed(doc) {
        return Ok(());
    }
    Err(validation(
        op,
        &doc.to_string(),
        field,
        "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
    ))
}

/// A trust policy: characters, grammar, then the per-role size quota (`max_chars`).
pub fn trust_policy(op: &str, doc: &Value, max_chars: usize) -> Result<()> {
    let field = if op == "CreateRole" {
        "assumeRolePolicyDocument"
    } else {
        "policyDocument"
    };
    document_characters(op, field, doc)?;
    grammar::check(doc, Kind::Trust).map_err(|m| aws_error(op, "MalformedPolicyDocument", &m))?;
    if grammar::size(doc) > max_chars {
        return Err(aws_error(
            op,
            "LimitExceeded",
            &format!("Cannot exceed quota for ACLSizePerRole: {max_chars}"),
        ));
    }
    Ok(())
}

/// An inline permissions policy: characters, then grammar.
pub fn identity_policy(op: &str, doc: &Value) -> Result<()> {
    document_characters(op, "policyDocument", doc)?;
    grammar::check(doc, Kind::Identity).map_err(|m| aws_error(op, "MalformedPolicyDocument", &m))
}

/// Tags of one request: at most 50, keys 1 to 128 characters, values at most 256,
/// `aws:` keys reserved.
pub fn tags(op: &str, tags: &Tags) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(validation(
            op,
            &format!("{} tags", tags.len()),
            "tags",
            "Member must have length less than or equal to 50",
        ));
    }
    for (i, (key, value)) in tags.iter().enumerate() {
        let n = i + 1;
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY {
            return Err(validation(
                op,
                key,
                &format!("tags.{n}.member.key"),
                "Member must have length less than or equal to 128",
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(validation(
                op,
                value,
                &format!("tags.{n}.member.value"),
                "Member must have length less than or equal to 256",
            ));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(aws_error(
                op,
                "InvalidInput",
                "User is not authorized to perform aws: prefixed tag operations",
            ));
        }
    }
    Ok(())
}

/// The total after a TagRole must stay within the tags-per-role quota.
pub fn tag_total(op: &str, total: usize) -> Result<()> {
    if total > MAX_TAGS {
        return Err(aws_error(
            op,
            "LimitExceeded",
            "Cannot exceed quota for TagsPerRole: 50",
        ));
    }
    Ok(())
}

/// A managed policy ARN: `arn:<partition>:iam::<account or aws>:policy/<path+name>`.
pub fn policy_arn(op: &str, arn: &str) -> Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && (parts[4] == "aws" || is_account(parts[4]))
        && parts[5].strip_prefix("policy/").is_some_and(|rest| {
            !rest.is_empty()
                && !rest.ends_with('/')
                && rest.chars().all(|c| is_name_char(c) || c == '/')
        });
    if !ok {
        return Err(aws_error(
            op,
            "InvalidInput",
            &format!("ARN {arn} is not valid."),
        ));
    }
    Ok(())
}

pub fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The account and name of a role ARN `arn:<partition>:iam::<account>:role/<path><name>`.
pub fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6
        || parts[0] != "arn"
        || !parts[1].starts_with("aws")
        || parts[2] != "iam"
        || !parts[3].is_empty()
        || !is_account(parts[4])
    {
        return None;
    }
    let resource = parts[5].strip_prefix("role/")?;
    let name = resource.rsplit('/').next()?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(is_name_char) {
        return None;
    }
    Some((parts[4], name))
}

pub fn no_such_role(op: &str, name: &str) -> Error {
    aws_error(
        op,
        "NoSuchEntity",
        &format!("The role with name {name} cannot be found."),
    )
}

// EKS

pub fn eks_invalid(op: &str, message: &str) -> Error {
    aws_error(op, "InvalidParameterException", message)
}

pub fn no_cluster(op: &str, name: &str) -> Error {
    aws_error(
        op,
        "ResourceNotFoundException",
        &format!("No cluster found for name: {name}."),
    )
}

pub fn no_association(op: &str, id: &str) -> Error {
    aws_error(
        op,
        "ResourceNotFoundException",
        &format!("No pod identity association found for ID: {id}."),
    )
}

/// Association ids as EKS checks them before looking one up: `a-` and 17 characters.
pub fn association_id(op: &str, id: &str) -> Result<()> {
    if id.chars().count() != 19 {
        return Err(eks_invalid(
            op,
            "The parameter associationId should be 19 characters long.",
        ));
    }
    Ok(())
}

/// Kubernetes names as EKS accepts them for namespaces and ServiceAccounts: 1 to 253
/// characters of lower-case alphanumerics, `-` and `.`, starting and ending
/// alphanumeric.
pub fn kubernetes_name(op: &str, field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(eks_invalid(op, &format!("Invalid {field}: {name}")));
    }
    Ok(())
}

/// A session policy: an identity policy of at most 2,048 characters, allowed only
/// with session tags disabled.
pub fn session_policy(op: &str, doc: &Value, disable_session_tags: bool) -> Result<()> {
    if !disable_session_tags {
        return Err(eks_invalid(
            op,
            "Session policy can only be specified when disableSessionTags is set to true.",
        ));
    }
    if !grammar::characters_allowed(doc) {
        return Err(eks_invalid(
            op,
            "Invalid session policy: characters outside [\\u0009\\u000A\\u000D\\u0020-\\u00FF].",
        ));
    }
    grammar::check(doc, Kind::Session)
        .map_err(|m| eks_invalid(op, &format!("Invalid session policy: {m}")))?;
    if grammar::size(doc) > SESSION_POLICY_MAX_CHARS {
        return Err(eks_invalid(
            op,
            "Session policy exceeds the maximum length of 2048 characters.",
        ));
    }
    Ok(())
}

/// EKS tag rules (TagResource and create): at most 50, keys 1 to 128, values at most
/// 256, `aws:` reserved; answered with `BadRequestException` by TagResource and
/// `InvalidParameterException` by create.
pub fn eks_tags(op: &str, code: &str, tags: &Tags) -> Result<()> {
    let bad = |m: &str| aws_error(op, code, m);
    if tags.len() > MAX_TAGS {
        return Err(bad("Tags exceed the maximum of 50 per resource."));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY {
            return Err(bad(&format!(
                "Tag key {key} must be between 1 and 128 characters."
            )));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(bad(&format!(
                "Tag value for key {key} must be at most 256 characters."
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(bad("Tag keys starting with aws: are reserved."));
        }
    }
    Ok(())
}

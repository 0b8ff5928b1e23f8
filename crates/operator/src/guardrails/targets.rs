//! The roles a permissions policy lets its holder assume or tag a session for
//! ([`role_targets`]), and whether they stay within a rule's allowed target roles
//! ([`targets_within`]).

use serde_json::Value;

use super::globs::{glob_covers, globs_overlap};
use super::statements::{allows, statements, strings};
use crate::glob::glob_match;

/// The actions that take a role's credentials or tag the session doing so; their
/// resource is the role.
pub const ROLE_ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];

/// A role resource reached by an `sts:AssumeRole` or `sts:TagSession` grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleTarget {
    pub statement: usize,
    /// The action pattern as written, or `NotAction`.
    pub action: String,
    /// The resource pattern as written; `None` for `NotResource` (every resource but
    /// those listed).
    pub resource: Option<String>,
}

/// A policy variable (`${aws:username}`) is replaced when the request is made, so it
/// stands for any text here.
fn widen_variables(resource: &str) -> String {
    let mut out = String::new();
    let mut rest = resource;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('*');
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push('*');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when every role a resource pattern can name is matched by one of `allowed`
/// (globs, as `allowedTargetRoleArns` are written): one of them alone must cover it.
/// `None` (`NotResource`) is never inside, nor is a pattern too costly to compare.
/// Policy variables count as `*`.
pub fn targets_within(allowed: &[String], resource: Option<&str>) -> bool {
    let Some(resource) = resource else {
        return false;
    };
    let resource = widen_variables(resource);
    allowed
        .iter()
        .any(|a| glob_covers(a, &resource) == Some(true))
}

/// True when a resource pattern may match some role's ARN. A role ARN has exactly five
/// colons (`arn:<partition>:iam::<account>:role/<path><name>`, no colon in a name or
/// path), so a pattern with five or more lines its colons up with the ARN's and is
/// compared segment by segment; one with fewer (`*`, `arn:*`) is compared as a whole,
/// its wildcards free to cover colons. Letters are compared without case; policy
/// variables count as `*`.
fn could_name_role(resource: &str) -> bool {
    let wide = widen_variables(resource).to_ascii_lowercase();
    let segments: Vec<&str> = wide.splitn(6, ':').collect();
    match segments[..] {
        [arn, _partition, service, region, _account, resource] => {
            globs_overlap(arn, "arn")
                && globs_overlap(service, "iam")
                && globs_overlap(region, "")
                && globs_overlap(resource, "role/*")
        }
        _ => globs_overlap(&wide, "arn:*:iam::*:role/*"),
    }
}

/// Every role resource the document lets its holder assume or tag a session for
/// ([`ROLE_ACTIONS`]), in statement order: each resource of an `Allow` statement one of
/// whose action patterns could match those actions (or whose `NotAction` leaves one of
/// them out), unless the resource can name no role. Policy variables count as `*`.
pub fn role_targets(doc: &Value) -> Vec<RoleTarget> {
    let role_actions: Vec<String> = ROLE_ACTIONS
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let mut found = Vec::new();
    for (i, st) in statements(doc).into_iter().enumerate() {
        if !allows(st) {
            continue;
        }
        let action = if st.get("NotAction").is_some() {
            let excluded: Vec<String> = strings(st.get("NotAction"))
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect();
            role_actions
                .iter()
                .any(|r| !excluded.iter().any(|e| glob_match(e, r)))
                .then(|| "NotAction".to_owned())
        } else {
            strings(st.get("Action")).into_iter().find(|a| {
                let a = a.to_ascii_lowercase();
                role_actions.iter().any(|r| glob_match(&a, r))
            })
        };
        let Some(action) = action else {
            continue;
        };
        if st.get("NotResource").is_some() {
            found.push(RoleTarget {
                statement: i,
                action,
                resource: None,
            });
            continue;
        }
        for resource in strings(st.get("Resource")) {
            if could_name_role(&resource) {
                found.push(RoleTarget {
                    statement: i,
                    action: action.clone(),
                    resource: Some(resource),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allow(a: Value, r: Value) -> Value {
        json!({"Effect": "Allow", "Action": a, "Resource": r})
    }

    fn targets(statement: Value) -> Vec<(String, Option<String>)> {
        role_targets(&json!({"Version": "2012-10-17", "Statement": [statement]}))
            .into_iter()
            .map(|t| (t.action, t.resource))
            .collect()
    }

    #[test]
    fn every_role_an_assume_grant_reaches_is_listed() {
        let deploy = "arn:aws:iam::111122223333:role/deploy";
        for action in [
            "sts:AssumeRole",
            "sts:TagSession",
            "STS:assumerole",
            "sts:*",
            "sts:Assume*",
            "*",
            "*:AssumeRole",
            "s?s:*",
        ] {
            assert_eq!(
                targets(allow(
                    json!(["s3:GetObject", action]),
                    json!(["arn:aws:s3:::b", deploy])
                )),
                [(action.to_owned(), Some(deploy.to_owned()))],
                "{action}"
            );
        }
        // Not STS's role actions: nothing to list.
        for action in [
            "sts:GetCallerIdentity",
            "sts:AssumeRoleWithWebIdentity",
            "iam:*",
            "s3:*",
        ] {
            assert!(
                targets(allow(json!(action), json!(deploy))).is_empty(),
                "{action}"
            );
        }
        // NotAction that leaves sts:AssumeRole in, and NotResource.
        assert_eq!(
            targets(json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": deploy})),
            [("NotAction".to_owned(), Some(deploy.to_owned()))]
        );
        assert!(
            targets(json!({"Effect": "Allow", "NotAction": ["sts:*"], "Resource": deploy}))
                .is_empty()
        );
        assert_eq!(
            targets(json!({"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": deploy})),
            [("sts:AssumeRole".to_owned(), None)]
        );
        // Resources that may name a role, a variable counting as anything.
        for resource in [
            "*",
            "arn:aws:iam::*:*",
            "arn:aws:iam::1:role/${aws:username}",
            "arn:${aws:x}",
        ] {
            assert_eq!(
                targets(allow(json!("sts:AssumeRole"), json!(resource))).len(),
                1,
                "{resource}"
            );
        }
        for no_role in [
            "arn:aws:s3:::b",
            "arn:aws:s3:::data/*",
            "arn:aws:iam::1:policy/team-*",
            "arn:aws:dynamodb:eu-west-1:1:table/t",
        ] {
            assert!(
                targets(allow(json!("sts:AssumeRole"), json!(no_role))).is_empty(),
                "{no_role}"
            );
        }
        assert!(
            targets(allow(
                json!("sts:AssumeRole"),
                json!("arn:aws:iam::1:user/x")
            ))
            .is_empty()
        );
        assert!(
            targets(json!({"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": deploy}))
                .is_empty()
        );
    }

    #[test]
    fn targets_are_within_the_allowed_globs_only_when_every_role_they_name_is() {
        let allowed = vec!["arn:aws:iam::444455556666:role/ok-*".to_owned()];
        for inside in [
            "arn:aws:iam::444455556666:role/ok-app",
            "arn:aws:iam::444455556666:role/ok-*",
            "arn:aws:iam::444455556666:role/ok-?",
        ] {
            assert!(targets_within(&allowed, Some(inside)), "{inside}");
        }
        for outside in [
            "*",
            "arn:aws:iam::444455556666:role/*",
            "arn:aws:iam::*:role/ok-app",
            "arn:aws:iam::444455556666:role/deploy",
            "arn:aws:iam::444455556666:role/${aws:PrincipalTag/team}",
            "arn:aws:iam::444455556666:role/o?-app",
        ] {
            assert!(!targets_within(&allowed, Some(outside)), "{outside}");
        }
        assert!(!targets_within(&allowed, None));
        // Patterns whose comparison would take exponential time are given up on quickly,
        // on the refusing side.
        let costly = format!("arn:aws:iam::444455556666:role/ok-*a{}", "?".repeat(40));
        let started = std::time::Instant::now();
        assert!(!targets_within(&allowed, Some(&costly)));
        let costly_action = allow(json!(format!("*a{}", "?".repeat(40))), json!("*"));
        let doc = json!({"Version": "2012-10-17", "Statement": [costly_action]});
        assert!(!crate::guardrails::escalation::find(&doc).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!targets_within(&["*".to_owned()], None));
        assert!(targets_within(&["*".to_owned()], Some("*")));
    }
}

//! RBAC for one client: [`super::KubeSim::client_with_rules`] gives a client whose
//! resource requests are checked against a ClusterRole's rules, answered 403 Forbidden
//! when no rule grants them, as the API server's RBAC authorizer does.
//!
//! Implemented: `apiGroups`, `resources` (with `resource/subresource` and `*`), `verbs`
//! (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
//! `*`) and `resourceNames`. Non-resource URLs (discovery, `/version`, `/openapi`) are
//! always allowed, as `system:discovery` grants them to every authenticated user.
//!
//! Not implemented: aggregation, `nonResourceURLs` rules, impersonation.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// What one request asks the authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub name: Option<String>,
}

/// The RBAC attributes of a request, or `None` for a non-resource URL.
pub fn attributes(method: &str, path: &str, query: &str) -> Option<Attributes> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => return None,
    };
    let (group, mut rest) = rest;
    // `namespaces/{ns}/{resource}...` addresses a namespaced resource; `namespaces` and
    // `namespaces/{name}[/sub]` address the Namespace objects themselves.
    if rest.len() >= 3 && rest[0] == "namespaces" {
        rest = &rest[2..];
    }
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s, ..] => (*r, Some(*n), Some(*s)),
        [] => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: match sub {
            Some(s) => format!("{resource}/{s}"),
            None => resource.into(),
        },
        name: name.map(str::to_owned),
    })
}

/// True when some rule grants the request.
pub fn allowed(rules: &[PolicyRule], a: &Attributes) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
    };
    rules.iter().any(|r| {
        has(&r.api_groups, &a.group)
            && has(&r.resources, &a.resource)
            && (r.verbs.iter().any(|v| v == "*" || *v == a.verb))
            && match (&r.resource_names, &a.name) {
                (Some(names), Some(n)) if !names.is_empty() => names.contains(n),
                (Some(names), None) if !names.is_empty() => false,
                _ => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: &str, path: &str, query: &str) -> (String, String, String) {
        let a = attributes(method, path, query).expect("resource request");
        (a.verb, a.group, a.resource)
    }

    #[test]
    fn requests_map_to_rbac_attributes() {
        let t = |v: &str, g: &str, r: &str| (v.to_owned(), g.to_owned(), r.to_owned());
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/default/serviceaccounts/a", ""),
            t("get", "", "serviceaccounts")
        );
        assert_eq!(
            attrs(
                "GET",
                "/apis/podidentity.dev/v1alpha1/podidentitybindings",
                "watch=true&x=1"
            ),
            t("watch", "podidentity.dev", "podidentitybindings")
        );
        assert_eq!(
            attrs(
                "PATCH",
                "/apis/podidentity.dev/v1alpha1/namespaces/d/podidentitybindings/b/status",
                ""
            ),
            t("patch", "podidentity.dev", "podidentitybindings/status")
        );
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/team", ""),
            t("get", "", "namespaces")
        );
        assert_eq!(
            attrs("GET", "/api/v1/namespaces", ""),
            t("list", "", "namespaces")
        );
        assert_eq!(
            attrs("DELETE", "/api/v1/namespaces/d/serviceaccounts", ""),
            t("deletecollection", "", "serviceaccounts")
        );
        assert!(attributes("GET", "/apis", "").is_none());
        assert!(attributes("GET", "/version", "").is_none());
        assert!(attributes("GET", "/api/v1", "").is_none());
    }

    #[test]
    fn rules_grant_by_group_resource_verb_and_name() {
        let rule = |g: &str, r: &str, v: &[&str], names: Option<&[&str]>| PolicyRule {
            api_groups: Some(vec![g.into()]),
            resources: Some(vec![r.into()]),
            verbs: v.iter().map(|s| s.to_string()).collect(),
            resource_names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
            ..PolicyRule::default()
        };
        let rules = [
            rule("", "serviceaccounts", &["get", "create"], None),
            rule("", "configmaps", &["get"], Some(&["mine"])),
        ];
        let ok = |m, p| allowed(&rules, &attributes(m, p, "").expect("resource"));
        assert!(ok("GET", "/api/v1/namespaces/d/serviceaccounts/a"));
        assert!(ok("POST", "/api/v1/namespaces/d/serviceaccounts"));
        assert!(!ok("DELETE", "/api/v1/namespaces/d/serviceaccounts/a"));
        assert!(!ok("GET", "/api/v1/namespaces/d/serviceaccounts"));
        assert!(!ok(
            "PATCH",
            "/apis/podidentity.dev/v1alpha1/namespaces/d/podidentitybindings/b/status"
        ));
        assert!(ok("GET", "/api/v1/namespaces/d/configmaps/mine"));
        assert!(!ok("GET", "/api/v1/namespaces/d/configmaps/other"));
    }
}

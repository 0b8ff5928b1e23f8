use super::*;

#[test]
fn builtins_are_served_where_clients_look() {
    let r = Registry::default();
    assert!(r.lookup("", "v1", "configmaps").is_some());
    assert!(r.lookup("coordination.k8s.io", "v1", "leases").is_some());
    assert!(r.lookup("events.k8s.io", "v1", "events").is_some());
    assert!(r.lookup("", "v2", "configmaps").is_none());
    let deployments = r.lookup("apps", "v1", "deployments").expect("deployments");
    assert!(deployments.namespaced && deployments.status_subresource);
    for (plural, namespaced) in [
        ("clusterroles", false),
        ("clusterrolebindings", false),
        ("roles", true),
        ("rolebindings", true),
    ] {
        let def = r
            .lookup("rbac.authorization.k8s.io", "v1", plural)
            .expect(plural);
        assert_eq!(def.namespaced, namespaced, "{plural}");
        assert_eq!(def.name_rule, NameRule::PathSegment, "{plural}");
    }
    let groups = r.groups();
    assert_eq!(groups["apiextensions.k8s.io"], vec!["v1".to_string()]);
    assert!(!groups.contains_key(""));
    assert_eq!(
        GroupResource::new("coordination.k8s.io", "leases").to_string(),
        "leases.coordination.k8s.io"
    );
}

//! The built-in kinds' definitions, which every [`Registry`](super::Registry) starts with.

use serde_json::Value;

use super::def::{CellSource, Checks, Column, Normalize, ResourceDef, StoredAs, VersionDef};
use crate::events;
use crate::kinds::{GroupResource, NameRule};

const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

const NAMESPACE_FIELDS: &[&str] = &["status.phase", "metadata.name"];
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const EVENT_FIELDS: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// Round-trips `v` through `T`, as the real server decodes built-in kinds.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    name_rule: NameRule,
    return_deleted_object: bool,
    columns: fn() -> Vec<Column>,
    normalize: Normalize,
    /// (storage group, storage resource, field renames)
    stored_as: Option<BuiltinView>,
    checks: Option<Checks>,
    field_labels: Option<&'static [&'static str]>,
    generation: bool,
}

type BuiltinView = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn path(p: &str) -> CellSource {
    CellSource::JsonPath(p.to_owned())
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        status: true,
        name_rule: NameRule::Label,
        return_deleted_object: true,
        normalize: typed::<k8s_openapi::api::core::v1::Namespace>,
        stored_as: None,
        checks: None,
        field_labels: Some(NAMESPACE_FIELDS),
        generation: false,
        columns: || {
            vec![
                Column::new("Status", "string", path(".status.phase")),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        status: false,
        name_rule: NameRule::Subdomain,
        return_deleted_object: true,
        normalize: typed::<k8s_openapi::api::core::v1::ServiceAccount>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || {
            vec![
                Column::new(
                    "Secrets",
                    "integer",
                    CellSource::Count(vec!["secrets".into()]),
                ),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        status: false,
        name_rule: NameRule::Subdomain,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::core::v1::ConfigMap>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || {
            vec![
                Column::new(
                    "Data",
                    "integer",
                    CellSource::Count(vec!["data".into(), "binaryData".into()]),
                ),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        status: true,
        name_rule: NameRule::Subdomain,
        return_deleted_object: true,
        normalize: typed::<k8s_openapi::api::core::v1::Pod>,
        stored_as: None,
        checks: None,
        field_labels: Some(POD_FIELDS),
        generation: true,
        columns: || {
            vec![
                Column::new("Ready", "string", CellSource::PodReady),
                Column::new("Status", "string", path(".status.phase")),
                Column::new(
                    "Restarts",
                    "integer",
                    path(".status.containerStatuses[0].restartCount"),
                ),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status: false,
        name_rule: NameRule::PathSegment,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::core::v1::Event>,
        stored_as: None,
        checks: Some(events::check_core),
        field_labels: Some(CORE_EVENT_FIELDS),
        generation: false,
        columns: || {
            vec![
                Column::new("Type", "string", path(".type")),
                Column::new("Reason", "string", path(".reason")),
                Column::new("Object", "string", path(".involvedObject.name")),
                Column::new("Message", "string", path(".message")),
            ]
        },
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status: false,
        name_rule: NameRule::PathSegment,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::events::v1::Event>,
        stored_as: Some(("", "events", EVENT_RENAMES)),
        checks: Some(events::check_events_v1),
        field_labels: Some(EVENT_FIELDS),
        generation: false,
        columns: || {
            vec![
                Column::new("Type", "string", path(".type")),
                Column::new("Reason", "string", path(".reason")),
                Column::new("Object", "string", path(".regarding.name")),
                Column::new("Note", "string", path(".note")),
            ]
        },
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        name_rule: NameRule::Subdomain,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::coordination::v1::Lease>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || {
            vec![
                Column::new("Holder", "string", path(".spec.holderIdentity")),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        status: true,
        name_rule: NameRule::Subdomain,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::apps::v1::Deployment>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: true,
        columns: || {
            vec![
                Column::new("Ready", "string", path(".status.readyReplicas")),
                Column::new("Up-to-date", "integer", path(".status.updatedReplicas")),
                Column::new("Available", "integer", path(".status.availableReplicas")),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        status: true,
        name_rule: NameRule::Subdomain,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::apps::v1::DaemonSet>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: true,
        columns: || {
            vec![
                Column::new("Desired", "integer", path(".status.desiredNumberScheduled")),
                Column::new("Current", "integer", path(".status.currentNumberScheduled")),
                Column::new("Ready", "integer", path(".status.numberReady")),
                Column::age(),
            ]
        },
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        // RBAC names are path segments (`system:controller:...`).
        name_rule: NameRule::PathSegment,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::rbac::v1::ClusterRole>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || vec![Column::age()],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        // RBAC names are path segments (`system:controller:...`).
        name_rule: NameRule::PathSegment,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || vec![Column::age()],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        // RBAC names are path segments (`system:controller:...`).
        name_rule: NameRule::PathSegment,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::rbac::v1::Role>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || vec![Column::age()],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        // RBAC names are path segments (`system:controller:...`).
        name_rule: NameRule::PathSegment,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::api::rbac::v1::RoleBinding>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: false,
        columns: || vec![Column::age()],
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status: true,
        name_rule: NameRule::Subdomain,
        return_deleted_object: false,
        normalize: typed::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
        stored_as: None,
        checks: None,
        field_labels: None,
        generation: true,
        columns: || {
            vec![Column::new(
                "Created At",
                "string",
                path(".metadata.creationTimestamp"),
            )]
        },
    },
];

/// The kinds every server has, before any CRD.
pub fn builtin_defs() -> Vec<ResourceDef> {
    BUILTINS
        .iter()
        .map(|b| ResourceDef {
            group: b.group.to_owned(),
            versions: vec![VersionDef {
                name: b.version.to_owned(),
                columns: (b.columns)(),
                schema: None,
                selectable_fields: Vec::new(),
            }],
            kind: b.kind.to_owned(),
            list_kind: format!("{}List", b.kind),
            plural: b.plural.to_owned(),
            singular: b.kind.to_lowercase(),
            namespaced: b.namespaced,
            short_names: b.short_names.iter().map(|s| (*s).to_owned()).collect(),
            categories: b.categories.iter().map(|s| (*s).to_owned()).collect(),
            status_subresource: b.status,
            name_rule: b.name_rule,
            custom: false,
            return_deleted_object: b.return_deleted_object,
            normalize: Some(b.normalize),
            stored_as: b.stored_as.map(|(group, resource, renames)| StoredAs {
                storage: GroupResource::new(group, resource),
                storage_api_version: "v1",
                renames,
            }),
            checks: b.checks,
            field_labels: b.field_labels,
            generation: b.generation,
        })
        .collect()
}

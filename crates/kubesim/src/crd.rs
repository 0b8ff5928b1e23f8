//! CustomResourceDefinitions: turning one into a served [`ResourceDef`], and its status.

use std::sync::Arc;

use serde_json::{Value, json};

use super::failure::Cause;
use super::meta::now;
use super::resources::{CellSource, Column, NameRule, ResourceDef, VersionDef};
use super::schema::CompiledSchema;

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn columns(version: &Value) -> Vec<Column> {
    let Some(cols) = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
    else {
        return vec![Column {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            source: CellSource::JsonPath(".metadata.creationTimestamp".into()),
        }];
    };
    cols.iter()
        .map(|c| Column {
            name: text(c, "/name"),
            type_: text(c, "/type"),
            format: text(c, "/format"),
            description: text(c, "/description"),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            source: CellSource::JsonPath(text(c, "/jsonPath")),
        })
        .collect()
}

/// Checks a CRD and builds the resource it defines; `Err` holds the causes of a 422.
pub fn resource_def(crd: &Value) -> Result<ResourceDef, Vec<Cause>> {
    let mut causes = Vec::new();
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let name = text(crd, "/metadata/name");
    if group.is_empty() || !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = text(crd, "/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!("Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""),
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    }
    let storage: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
        .collect();
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(
                versions
                    .iter()
                    .map(|v| text(v, "/name"))
                    .collect::<Vec<_>>()
            ),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut served = Vec::new();
    let mut status_subresource = false;
    for (i, v) in versions.iter().enumerate() {
        let vname = text(v, "/name");
        let is_storage = v.get("storage") == Some(&Value::Bool(true));
        if is_storage {
            status_subresource = v.pointer("/subresources/status").is_some();
        }
        if v.get("served") != Some(&Value::Bool(true)) {
            continue;
        }
        let schema = match v.pointer("/schema/openAPIV3Schema") {
            Some(s) => match CompiledSchema::compile(s) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    causes.push(Cause::invalid(
                        &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                        &json!("object"),
                        &e,
                    ));
                    None
                }
            },
            None => {
                causes.push(
                    Cause::required(&format!("spec.versions[{i}].schema.openAPIV3Schema"))
                        .with_detail("schemas are required"),
                );
                None
            }
        };
        let def = VersionDef {
            name: vname,
            columns: columns(v),
            schema,
            selectable_fields: v
                .get("selectableFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                .map(|p| p.trim_start_matches('.').to_owned())
                .collect(),
        };
        if is_storage {
            served.insert(0, def);
        } else {
            served.push(def);
        }
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let singular = text(crd, "/spec/names/singular");
    let list_kind = text(crd, "/spec/names/listKind");
    Ok(ResourceDef {
        group,
        versions: served,
        singular: if singular.is_empty() {
            kind.to_lowercase()
        } else {
            singular
        },
        list_kind: if list_kind.is_empty() {
            format!("{kind}List")
        } else {
            list_kind
        },
        kind,
        plural,
        namespaced: scope == "Namespaced",
        short_names: strings(crd, "/spec/names/shortNames"),
        categories: strings(crd, "/spec/names/categories"),
        status_subresource,
        name_rule: NameRule::Subdomain,
        custom: true,
        return_deleted_object: false,
        stored_as: None,
        normalize: None,
        checks: None,
        field_labels: None,
        generation: true,
    })
}

/// The status the real server gives an accepted CRD: names accepted, established.
pub fn established_status(crd: &Value) -> Value {
    let mut accepted = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if accepted.get("singular").is_none() {
        let kind = text(crd, "/spec/names/kind").to_lowercase();
        accepted["singular"] = json!(kind);
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{}List", text(crd, "/spec/names/kind")));
    }
    let stored: Vec<String> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
                .map(|v| text(v, "/name"))
                .collect()
        })
        .unwrap_or_default();
    let t = now();
    json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": t}
        ],
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                     "versions": [
                        {"name": "v1beta1", "served": true, "storage": false,
                         "schema": {"openAPIV3Schema": {"type": "object"}}},
                        {"name": "v1", "served": true, "storage": true,
                         "subresources": {"status": {}},
                         "schema": {"openAPIV3Schema": {"type": "object"}},
                         "additionalPrinterColumns": [{"name": "Ready", "type": "string",
                            "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}]}]}
        })
    }

    #[test]
    fn a_crd_defines_its_resource() {
        let def = resource_def(&crd()).unwrap();
        assert_eq!(def.storage_version(), "v1");
        assert_eq!(def.versions.len(), 2);
        assert!(def.status_subresource && def.namespaced && def.custom);
        assert_eq!(def.short_names, vec!["wd".to_string()]);
        assert_eq!(def.list_kind, "WidgetList");
        assert_eq!(def.versions[0].columns[0].name, "Ready");
        assert_eq!(def.versions[1].columns[0].name, "Age");
        let status = established_status(&crd());
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn a_version_without_schema_is_refused() {
        let mut bad = crd();
        bad["spec"]["versions"][0]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        let causes = resource_def(&bad).unwrap_err();
        assert_eq!(causes[0].field, "spec.versions[0].schema.openAPIV3Schema");
        assert_eq!(causes[0].message, "Required value: schemas are required");
    }

    #[test]
    fn a_misnamed_crd_is_refused() {
        let mut bad = crd();
        bad["metadata"]["name"] = json!("gadgets.example.com");
        let causes = resource_def(&bad).unwrap_err();
        assert_eq!(causes[0].field, "metadata.name");
    }
}

//! The `PodIdentityBinding` API (`podidentity.dev/v1alpha1`): types, schema, conditions.
//!
//! The schema says what it can: patterns, lengths, ranges and enums on fields, and CEL
//! rules (`x-kubernetes-validations`) for the cross-field rules (`role.arn` excludes the
//! managed-role fields; `sessionPolicy` needs `disableSessionTags`; reserved tag keys).
//! What a schema cannot say (policy document grammar, the derived role name's length)
//! is checked by `controller::desired` before any AWS call.

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The finalizer the operator holds on bindings until their AWS resources are gone.
pub const FINALIZER: &str = "podidentity.dev/cleanup";

/// Pattern of an IAM role ARN.
pub const ROLE_ARN_PATTERN: &str =
    r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$";
/// Pattern of an IAM managed policy ARN (AWS managed ones live in account `aws`).
pub const POLICY_ARN_PATTERN: &str =
    r"^arn:aws(-cn|-us-gov)?:iam::([0-9]{12}|aws):policy/[\w+=,.@/-]{1,512}$";
/// Pattern of an IAM role name.
pub const ROLE_NAME_PATTERN: &str = r"^[\w+=,.@-]{1,64}$";
/// Pattern of a ServiceAccount name (an RFC 1123 subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// What a binding asks for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "podidentity.dev",
    version = "v1alpha1",
    kind = "PodIdentityBinding",
    namespaced,
    shortname = "pib",
    status = "PodIdentityBindingStatus",
    printcolumn = r#"{"name":"ServiceAccount","type":"string","jsonPath":".status.serviceAccount.name"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".status.roleArn"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Presets","type":"string","priority":1,"jsonPath":".spec.role.presets[*].name"}"#
)]
#[x_kube(validation = Rule::new(
    "!has(self.sessionPolicy) || (has(self.disableSessionTags) && self.disableSessionTags == true)"
).message("sessionPolicy requires disableSessionTags: true"))]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityBindingSpec {
    /// The ServiceAccount the association is for.
    #[serde(default)]
    pub service_account: ServiceAccountSpec,
    /// The IAM role: an existing one (`arn`) or one the operator manages.
    #[serde(default)]
    pub role: RoleSpec,
    /// A role in another account the pods' credentials chain into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_ARN_PATTERN))]
    pub target_role_arn: Option<String>,
    /// Turns off the session tags EKS adds (and with them the scoped trust policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_session_tags: Option<bool>,
    /// An EKS session policy (an IAM policy document) limiting the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_object_schema")]
    pub session_policy: Option<Value>,
    /// Take over an association for the ServiceAccount made by something else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,
    /// Tags added to the role and the association.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(
        "self.all(k, !k.startsWith('aws:') && !k.startsWith('podidentity.dev/') && size(k) <= 128 && size(self[k]) <= 256)"
    ).message("tag keys must not start with aws: or podidentity.dev/; keys up to 128, values up to 256 characters"))]
    #[schemars(extend("maxProperties" = 47))]
    pub tags: BTreeMap<String, String>,
    /// What happens to the AWS resources when the binding is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// The ServiceAccount part of a binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSpec {
    /// Defaults to the binding's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Create the ServiceAccount when it is missing (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<bool>,
    /// Labels for a ServiceAccount the operator creates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for a ServiceAccount the operator creates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The role part of a binding: `arn`, or the fields of a managed role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "!has(self.arn) || !(has(self.name) || has(self.description) || has(self.maxSessionDuration) || has(self.permissionsBoundaryArn) || (has(self.managedPolicyArns) && size(self.managedPolicyArns) > 0) || (has(self.inlinePolicies) && size(self.inlinePolicies) > 0) || (has(self.presets) && size(self.presets) > 0))"
).message("role.arn names an existing role: it excludes name, description, maxSessionDuration, permissionsBoundaryArn, managedPolicyArns, inlinePolicies and presets"))]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    /// An existing role to use; the operator never modifies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_ARN_PATTERN))]
    pub arn: Option<String>,
    /// The managed role's name; derived from cluster, namespace and binding by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_NAME_PATTERN))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// Seconds, 3600 to 43200 (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = POLICY_ARN_PATTERN))]
    pub permissions_boundary_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(regex(pattern = POLICY_ARN_PATTERN)))]
    pub managed_policy_arns: Vec<String>,
    /// Inline policy name to policy document.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "inline_policies_schema")]
    pub inline_policies: BTreeMap<String, Value>,
    /// Policy presets for well-known add-ons (`pod-identity-operator presets` lists
    /// them): their managed policies and inline documents join the role's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub presets: Vec<PresetReference>,
}

/// One preset a managed role carries, with its parameters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetReference {
    /// The preset's name (the add-on's chart or EKS add-on name).
    #[schemars(schema_with = "preset_name_schema")]
    pub name: String,
    /// Parameter name to value; lists are comma-separated.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 10))]
    pub parameters: BTreeMap<String, String>,
}

impl crate::presets::PresetRef for PresetReference {
    fn preset_name(&self) -> &str {
        &self.name
    }
    fn preset_parameters(&self) -> &BTreeMap<String, String> {
        &self.parameters
    }
}

fn preset_name_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": crate::presets::names(),
    })
}

/// What happens to AWS resources when a binding is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// What the operator reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityBindingStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The association's external ID, set by EKS when it has a `targetRoleArn`: the
    /// target role's trust policy should require it as `sts:ExternalId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// What the operator noticed beside the binding's AWS state, which `Ready` does not
    /// depend on: the Pod Identity Agent not running, an IRSA annotation on the
    /// ServiceAccount, running pods holding credentials of a role the association left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["reason"]))]
    pub warnings: Vec<StatusWarning>,
}

/// One thing the operator noticed, by a reason of its own.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusWarning {
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the event the warning is about, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// The ServiceAccount the binding is for, and whether the operator created it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountStatus {
    pub name: String,
    pub created: bool,
}

/// A `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn json_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn inline_policies_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 10,
        "additionalProperties": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, k.matches('^[\\\\w+=,.@-]{1,128}$'))",
            "message": "inline policy names are 1 to 128 characters of letters, digits and +=,.@_-",
        }],
    })
}

impl PodIdentityBinding {
    /// The ServiceAccount name the binding asks for (its own name by default).
    pub fn service_account_name(&self) -> String {
        self.spec
            .service_account
            .name
            .clone()
            .unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }

    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy.unwrap_or_default()
    }
}

/// The CRD as YAML, as `crds/podidentitybindings.yaml` holds it.
pub fn crd_yaml() -> crate::Result<String> {
    Ok(serde_yaml::to_string(&PodIdentityBinding::crd())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../crds/podidentitybindings.yaml"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == crd_yaml().expect("CRD serializes"),
            "{path} is stale: run `cargo run -- crd > crds/podidentitybindings.yaml`"
        );
    }

    #[test]
    fn crd_names_columns_and_status() {
        let crd = PodIdentityBinding::crd();
        assert_eq!(crd.spec.group, "podidentity.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["pib".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "ServiceAccount",
                "Role",
                "Ready",
                "Reason",
                "Age",
                "Presets"
            ]
        );
    }
}

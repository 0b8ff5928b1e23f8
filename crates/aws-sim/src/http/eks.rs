//! EKS's REST-JSON protocol: the handlers of the cluster, pod identity association,
//! addon and tag paths, answered in JSON (errors as `x-amzn-ErrorType` and a message).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{failure, status_of};
use crate::AwsSim;
use crate::faults::aws_error;
use pod_identity_aws::{
    Association, AssociationSummary, AwsError, CreateAssociation, EksApi, Tags, UpdateAssociation,
};

fn eks_error(e: &AwsError) -> Response {
    let mut r = (status_of(e), Json(json!({"message": e.message}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&e.code) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    if let Some(Ok(v)) = e.request_id.as_deref().map(HeaderValue::from_str) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

/// An EKS answer: its JSON body, or the error as EKS would send it.
pub(super) struct EksReply(pod_identity_aws::Result<Value>);

impl IntoResponse for EksReply {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(v) => Json(v).into_response(),
            Err(e) => failure(e, eks_error),
        }
    }
}

fn epoch(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map(|t| json!(t.timestamp_millis() as f64 / 1000.0))
        .unwrap_or(Value::Null)
}

fn association_json(a: &Association) -> Value {
    let mut v = json!({
        "clusterName": a.cluster_name,
        "namespace": a.namespace,
        "serviceAccount": a.service_account,
        "roleArn": a.role_arn,
        "associationArn": a.association_arn,
        "associationId": a.association_id,
        "tags": a.tags,
        "createdAt": epoch(a.created_at),
        "modifiedAt": epoch(a.modified_at),
        "disableSessionTags": a.disable_session_tags,
    });
    for (key, value) in [
        ("targetRoleArn", a.target_role_arn.clone()),
        ("externalId", a.external_id.clone()),
        ("ownerArn", a.owner_arn.clone()),
        ("policy", a.session_policy.as_ref().map(Value::to_string)),
    ] {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    v
}

fn summary_json(a: &AssociationSummary) -> Value {
    let mut v = json!({
        "clusterName": a.cluster_name,
        "namespace": a.namespace,
        "serviceAccount": a.service_account,
        "associationArn": a.association_arn,
        "associationId": a.association_id,
    });
    if let Some(owner) = &a.owner_arn {
        v["ownerArn"] = json!(owner);
    }
    v
}

/// A session policy as EKS takes it: a JSON document in a string.
fn session_policy(op: &str, text: &str) -> pod_identity_aws::Result<Value> {
    serde_json::from_str(text).map_err(|_| {
        aws_error(
            op,
            "InvalidParameterException",
            "The session policy is not valid JSON.",
        )
    })
}

pub(super) async fn describe_cluster(
    State(sim): State<Arc<AwsSim>>,
    Path(name): Path<String>,
) -> EksReply {
    EksReply(
        async {
            match sim.describe_cluster(&name).await? {
                Some(c) => {
                    Ok(json!({"cluster": {"name": c.name, "arn": c.arn, "status": c.status}}))
                }
                None => Err(aws_error(
                    "DescribeCluster",
                    "ResourceNotFoundException",
                    &format!("No cluster found for name: {name}."),
                )),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateBody {
    namespace: String,
    service_account: String,
    role_arn: String,
    client_request_token: Option<String>,
    #[serde(default)]
    tags: Tags,
    disable_session_tags: Option<bool>,
    target_role_arn: Option<String>,
    policy: Option<String>,
}

pub(super) async fn create_association(
    State(sim): State<Arc<AwsSim>>,
    Path(name): Path<String>,
    Json(body): Json<CreateBody>,
) -> EksReply {
    const OP: &str = "CreatePodIdentityAssociation";
    EksReply(
        async {
            let policy = match body.policy.as_deref().filter(|p| !p.is_empty()) {
                Some(text) => Some(session_policy(OP, text)?),
                None => None,
            };
            let input = CreateAssociation {
                cluster_name: name,
                namespace: body.namespace,
                service_account: body.service_account,
                role_arn: body.role_arn,
                target_role_arn: body.target_role_arn.filter(|t| !t.is_empty()),
                disable_session_tags: body.disable_session_tags.unwrap_or(false),
                session_policy: policy,
                tags: body.tags,
                client_request_token: body.client_request_token,
            };
            let a = sim.create_pod_identity_association(&input).await?;
            Ok(json!({"association": association_json(&a)}))
        }
        .await,
    )
}

pub(super) async fn describe_association(
    State(sim): State<Arc<AwsSim>>,
    Path((name, id)): Path<(String, String)>,
) -> EksReply {
    EksReply(
        async {
            match sim.describe_pod_identity_association(&name, &id).await? {
                Some(a) => Ok(json!({"association": association_json(&a)})),
                None => Err(aws_error(
                    "DescribePodIdentityAssociation",
                    "ResourceNotFoundException",
                    &format!("No pod identity association found for ID: {id}."),
                )),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateBody {
    role_arn: Option<String>,
    client_request_token: Option<String>,
    disable_session_tags: Option<bool>,
    target_role_arn: Option<String>,
    policy: Option<String>,
}

pub(super) async fn update_association(
    State(sim): State<Arc<AwsSim>>,
    Path((name, id)): Path<(String, String)>,
    Json(body): Json<UpdateBody>,
) -> EksReply {
    const OP: &str = "UpdatePodIdentityAssociation";
    EksReply(
        async {
            // An empty string clears the target role or the session policy.
            let policy = match body.policy.as_deref() {
                None => None,
                Some("") => Some(None),
                Some(text) => Some(Some(session_policy(OP, text)?)),
            };
            let input = UpdateAssociation {
                cluster_name: name,
                association_id: id,
                role_arn: body.role_arn,
                target_role_arn: body
                    .target_role_arn
                    .map(|t| Some(t).filter(|t| !t.is_empty())),
                disable_session_tags: body.disable_session_tags,
                session_policy: policy,
                client_request_token: body.client_request_token,
            };
            let a = sim.update_pod_identity_association(&input).await?;
            Ok(json!({"association": association_json(&a)}))
        }
        .await,
    )
}

pub(super) async fn delete_association(
    State(sim): State<Arc<AwsSim>>,
    Path((name, id)): Path<(String, String)>,
) -> EksReply {
    EksReply(
        async {
            // DeletePodIdentityAssociation answers with the association it deleted; the
            // describe that fetches it is not counted as a call of its own.
            let before = sim.peek_association(&name, &id);
            sim.delete_pod_identity_association(&name, &id).await?;
            let a = before.map(|a| association_json(&a)).unwrap_or(Value::Null);
            Ok(json!({"association": a}))
        }
        .await,
    )
}

pub(super) async fn list_associations(
    State(sim): State<Arc<AwsSim>>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> EksReply {
    EksReply(
        async {
            let find = |key: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let rows = sim
                .list_pod_identity_associations(&name, find("namespace"), find("serviceAccount"))
                .await?;
            // EKS pages by `maxResults` (1 to 100, default 100) and `nextToken` (an
            // offset here).
            let start = find("nextToken")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(0)
                .min(rows.len());
            let max = find("maxResults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(100)
                .clamp(1, 100);
            let end = (start + max).min(rows.len());
            let page: Vec<Value> = rows[start..end].iter().map(summary_json).collect();
            let next = (end < rows.len()).then(|| end.to_string());
            Ok(json!({"associations": page, "nextToken": next}))
        }
        .await,
    )
}

#[derive(Deserialize)]
pub(super) struct TagBody {
    tags: Tags,
}

pub(super) async fn tag_resource(
    State(sim): State<Arc<AwsSim>>,
    Path(arn): Path<String>,
    Json(body): Json<TagBody>,
) -> EksReply {
    EksReply(
        async {
            sim.tag_resource(&arn, &body.tags).await?;
            Ok(json!({}))
        }
        .await,
    )
}

pub(super) async fn untag_resource(
    State(sim): State<Arc<AwsSim>>,
    Path(arn): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> EksReply {
    EksReply(
        async {
            let keys: Vec<String> = query
                .into_iter()
                .filter(|(k, _)| k == "tagKeys")
                .map(|(_, v)| v)
                .collect();
            sim.untag_resource(&arn, &keys).await?;
            Ok(json!({}))
        }
        .await,
    )
}

fn addon_json(a: &pod_identity_aws::Addon) -> Value {
    json!({
        "addonName": a.name,
        "clusterName": a.cluster_name,
        "status": a.status,
        "addonVersion": a.version,
        "addonArn": a.arn,
        "serviceAccountRoleArn": a.service_account_role_arn,
        "podIdentityAssociations": a.pod_identity_association_arns,
    })
}

pub(super) async fn describe_addon(
    State(sim): State<Arc<AwsSim>>,
    Path((name, addon)): Path<(String, String)>,
) -> EksReply {
    EksReply(
        async {
            match sim.describe_addon(&name, &addon).await? {
                Some(a) => Ok(json!({"addon": addon_json(&a)})),
                None => Err(aws_error(
                    "DescribeAddon",
                    "ResourceNotFoundException",
                    &format!("No addon: {addon} found in cluster: {name}"),
                )),
            }
        }
        .await,
    )
}

pub(super) async fn list_addons(
    State(sim): State<Arc<AwsSim>>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> EksReply {
    EksReply(
        async {
            let find = |key: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            let names = sim.list_addons(&name).await?;
            let start = find("nextToken")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(0)
                .min(names.len());
            let max = find("maxResults")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(100)
                .clamp(1, 100);
            let end = (start + max).min(names.len());
            let next = (end < names.len()).then(|| end.to_string());
            Ok(json!({"addons": names[start..end], "nextToken": next}))
        }
        .await,
    )
}

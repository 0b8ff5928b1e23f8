//! The simulator on the wire: IAM's query protocol (form-encoded requests, XML answers)
//! and EKS's REST-JSON protocol for the calls [`IamApi`] and [`EksApi`] make, on one
//! HTTP port, so a separate process (the operator binary under test) can use the
//! simulator through the real SDK clients with an endpoint override, while the test
//! keeps the [`AwsSim`] to inspect and to turn its knobs.
//!
//! Implemented: the 19 IAM and 10 EKS operations of the traits (ListRoles, DescribeAddon
//! and ListAddons included), AWS's error bodies
//! (`ErrorResponse` XML for IAM; `x-amzn-ErrorType` and a JSON message for EKS), lists
//! paged as AWS pages them (`MaxItems`/`Marker`, `maxResults`/`nextToken`; the tokens
//! are offsets); `GET /_sim/inventory` and `GET /_sim/calls` show the simulator's state.
//! Requests signed with [`ADMIN_ACCESS_KEY_ID`] act as the account's administrator,
//! every other one as the operator (authorized when the simulator enforces a policy).
//! Not implemented: request signing checks (any credentials are accepted), any
//! operation outside the traits (answered 400 `InvalidAction` / 404). Faults without an
//! HTTP status (timeouts) are answered 504.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AwsSim;
use crate::faults::aws_error;
use pod_identity_aws::AwsError;
use pod_identity_aws::{
    Association, AssociationSummary, CreateAssociation, CreateRole, EksApi, IamApi, Role, Tags,
    UpdateAssociation,
};

/// The routes of both services.
pub fn router(sim: Arc<AwsSim>) -> Router {
    Router::new()
        .route("/", post(iam))
        .route("/clusters/{name}", get(describe_cluster))
        .route(
            "/clusters/{name}/pod-identity-associations",
            post(create_association).get(list_associations),
        )
        .route(
            "/clusters/{name}/pod-identity-associations/{id}",
            get(describe_association)
                .post(update_association)
                .delete(delete_association),
        )
        .route("/clusters/{name}/addons", get(list_addons))
        .route("/clusters/{name}/addons/{addon}", get(describe_addon))
        .route("/tags/{*arn}", post(tag_resource).delete(untag_resource))
        .route("/_sim/inventory", get(inventory))
        .route("/_sim/calls", get(calls))
        .layer(axum::middleware::from_fn(administrator))
        .with_state(sim)
}

/// The access key ID whose requests the front serves as the account's administrator,
/// unauthorized ([`AwsSim::as_admin`]): the user running `audit` and `migrate` against
/// a simulator that holds the operator to its policy. Other requests are the operator's.
pub const ADMIN_ACCESS_KEY_ID: &str = "AKIASIMADMINISTRATOR";

async fn administrator(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let credential = format!("Credential={ADMIN_ACCESS_KEY_ID}/");
    let admin = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(&credential));
    if admin {
        AwsSim::as_admin(next.run(req)).await
    } else {
        next.run(req).await
    }
}

/// `GET /_sim/inventory`: the simulator's [`Inventory`](super::Inventory) as JSON, for
/// tests that run the simulator in another process.
async fn inventory(State(sim): State<Arc<AwsSim>>) -> Response {
    Json(sim.inventory()).into_response()
}

/// `GET /_sim/calls`: calls per operation so far.
async fn calls(State(sim): State<Arc<AwsSim>>) -> Response {
    Json(sim.knobs().calls()).into_response()
}

/// Serves the simulator on `listener` until the task is dropped.
pub async fn serve(
    sim: Arc<AwsSim>,
    listener: tokio::net::TcpListener,
) -> pod_identity_aws::Result<()> {
    axum::serve(listener, router(sim)).await?;
    Ok(())
}

// ---- IAM: query protocol ----

const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn el(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", xml_escape(text))
}

fn encode_doc(doc: &Value) -> String {
    utf8_percent_encode(&doc.to_string(), NON_ALPHANUMERIC).to_string()
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn xml_response(action: &str, result: Option<String>) -> Response {
    let result = result
        .map(|r| format!("<{action}Result>{r}</{action}Result>"))
        .unwrap_or_default();
    let body = format!(
        "<{action}Response xmlns=\"{IAM_NS}\">{result}<ResponseMetadata>{}</ResponseMetadata></{action}Response>",
        el("RequestId", &request_id())
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn status_of(e: &AwsError) -> StatusCode {
    StatusCode::from_u16(e.http_status.unwrap_or(504)).unwrap_or(StatusCode::BAD_REQUEST)
}

fn iam_error(e: &AwsError) -> Response {
    let kind = if status_of(e).is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{IAM_NS}\"><Error>{}{}{}</Error>{}</ErrorResponse>",
        el("Type", kind),
        el("Code", &e.code),
        el("Message", &e.message),
        el("RequestId", e.request_id.as_deref().unwrap_or_default())
    );
    (status_of(e), [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// Any failure as IAM or EKS would answer it.
fn failure(e: pod_identity_aws::Error, answer: fn(&AwsError) -> Response) -> Response {
    match e {
        pod_identity_aws::Error::Aws(e) => answer(&e),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()).into_response(),
    }
}

fn tags_xml(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("<member>{}{}</member>", el("Key", k), el("Value", v)))
        .collect()
}

fn role_xml(r: &Role) -> String {
    let mut x = String::from("<Role>");
    x += &el("Path", &r.path);
    x += &el("RoleName", &r.name);
    x += &el("RoleId", &r.role_id);
    x += &el("Arn", &r.arn);
    let created = r.created.unwrap_or_default();
    x += &el(
        "CreateDate",
        &created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    x += &el(
        "AssumeRolePolicyDocument",
        &encode_doc(&r.assume_role_policy),
    );
    if let Some(d) = &r.description {
        x += &el("Description", d);
    }
    x += &el("MaxSessionDuration", &r.max_session_duration.to_string());
    if let Some(b) = &r.permissions_boundary_arn {
        x += &format!(
            "<PermissionsBoundary>{}{}</PermissionsBoundary>",
            el("PermissionsBoundaryType", "PermissionsBoundaryPolicy"),
            el("PermissionsBoundaryArn", b)
        );
    }
    if !r.tags.is_empty() {
        x += &format!("<Tags>{}</Tags>", tags_xml(&r.tags));
    }
    x + "</Role>"
}

/// The query parameters of one request, with IAM's `.member.N` lists.
struct Params(BTreeMap<String, String>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn text(&self, key: &str) -> String {
        self.get(key).unwrap_or_default().to_owned()
    }

    fn list(&self, prefix: &str) -> Vec<String> {
        (1..)
            .map_while(|n| self.get(&format!("{prefix}.member.{n}")).map(str::to_owned))
            .collect()
    }

    fn tags(&self, prefix: &str) -> Tags {
        (1..)
            .map_while(|n| {
                let key = self.get(&format!("{prefix}.member.{n}.Key"))?;
                let value = self
                    .get(&format!("{prefix}.member.{n}.Value"))
                    .unwrap_or_default();
                Some((key.to_owned(), value.to_owned()))
            })
            .collect()
    }
}

/// One page of a list's `<member>`s as IAM pages them: at most `MaxItems` (default
/// 100) from `Marker` (an offset here), with `IsTruncated` and the next `Marker`.
fn iam_page(p: &Params, members: Vec<String>, wrapper: &str) -> String {
    let start = p
        .get("Marker")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(0)
        .min(members.len());
    let max = p
        .get("MaxItems")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let end = (start + max).min(members.len());
    let page = members[start..end].concat();
    let rest = if end < members.len() {
        format!(
            "<IsTruncated>true</IsTruncated>{}",
            el("Marker", &end.to_string())
        )
    } else {
        "<IsTruncated>false</IsTruncated>".to_owned()
    };
    format!("<{wrapper}>{page}</{wrapper}>{rest}")
}

/// The JSON of a policy document parameter, or IAM's answer to one that is not JSON.
fn document(action: &str, params: &Params, key: &str) -> pod_identity_aws::Result<Value> {
    serde_json::from_str(params.get(key).unwrap_or_default()).map_err(|_| {
        aws_error(
            action,
            "MalformedPolicyDocument",
            "Syntax errors in policy.",
        )
    })
}

fn session_duration(action: &str, params: &Params) -> pod_identity_aws::Result<Option<i32>> {
    params
        .get("MaxSessionDuration")
        .map(|v| {
            v.parse::<i32>().map_err(|_| {
                aws_error(
                    action,
                    "ValidationError",
                    "MaxSessionDuration must be an integer",
                )
            })
        })
        .transpose()
}

async fn iam(State(sim): State<Arc<AwsSim>>, Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let params = Params(pairs.into_iter().collect());
    let action = params.text("Action");
    match iam_action(&sim, &action, &params).await {
        Ok(result) => xml_response(&action, result),
        Err(e) => failure(e, iam_error),
    }
}

/// The `<ActionResult>` content of a successful call, `None` for calls without one.
async fn iam_action(
    sim: &AwsSim,
    action: &str,
    p: &Params,
) -> pod_identity_aws::Result<Option<String>> {
    let role = p.text("RoleName");
    match action {
        "CreateRole" => {
            let input = CreateRole {
                name: role,
                path: p.get("Path").unwrap_or("/").to_owned(),
                assume_role_policy: document(action, p, "AssumeRolePolicyDocument")?,
                description: p.get("Description").map(str::to_owned),
                max_session_duration: session_duration(action, p)?,
                permissions_boundary_arn: p.get("PermissionsBoundary").map(str::to_owned),
                tags: p.tags("Tags"),
            };
            let r = sim.create_role(&input).await?;
            Ok(Some(role_xml(&r)))
        }
        "GetRole" => match sim.get_role(&role).await? {
            Some(r) => Ok(Some(role_xml(&r))),
            None => Err(aws_error(
                action,
                "NoSuchEntity",
                &format!("The role with name {role} cannot be found."),
            )),
        },
        "UpdateRole" => {
            let secs = session_duration(action, p)?;
            sim.update_role(&role, p.get("Description"), secs).await?;
            Ok(Some(String::new()))
        }
        "UpdateAssumeRolePolicy" => {
            let doc = document(action, p, "PolicyDocument")?;
            sim.update_assume_role_policy(&role, &doc).await?;
            Ok(None)
        }
        "PutRolePermissionsBoundary" => {
            let arn = p.text("PermissionsBoundary");
            sim.put_role_permissions_boundary(&role, &arn).await?;
            Ok(None)
        }
        "DeleteRolePermissionsBoundary" => {
            sim.delete_role_permissions_boundary(&role).await?;
            Ok(None)
        }
        "AttachRolePolicy" => {
            sim.attach_role_policy(&role, &p.text("PolicyArn")).await?;
            Ok(None)
        }
        "DetachRolePolicy" => {
            sim.detach_role_policy(&role, &p.text("PolicyArn")).await?;
            Ok(None)
        }
        "ListAttachedRolePolicies" => {
            let list = sim.list_attached_role_policies(&role).await?;
            let members: Vec<String> = list
                .iter()
                .map(|a| {
                    format!(
                        "<member>{}{}</member>",
                        el("PolicyName", &a.name),
                        el("PolicyArn", &a.arn)
                    )
                })
                .collect();
            Ok(Some(iam_page(p, members, "AttachedPolicies")))
        }
        "PutRolePolicy" => {
            let doc = document(action, p, "PolicyDocument")?;
            sim.put_role_policy(&role, &p.text("PolicyName"), &doc)
                .await?;
            Ok(None)
        }
        "GetRolePolicy" => {
            let name = p.text("PolicyName");
            match sim.get_role_policy(&role, &name).await? {
                Some(doc) => Ok(Some(format!(
                    "{}{}{}",
                    el("RoleName", &role),
                    el("PolicyName", &name),
                    el("PolicyDocument", &encode_doc(&doc))
                ))),
                None => Err(aws_error(
                    action,
                    "NoSuchEntity",
                    &format!("The role policy with name {name} cannot be found."),
                )),
            }
        }
        "DeleteRolePolicy" => {
            sim.delete_role_policy(&role, &p.text("PolicyName")).await?;
            Ok(None)
        }
        "ListRolePolicies" => {
            let names = sim.list_role_policies(&role).await?;
            let members = names.iter().map(|n| el("member", n)).collect();
            Ok(Some(iam_page(p, members, "PolicyNames")))
        }
        "TagRole" => {
            sim.tag_role(&role, &p.tags("Tags")).await?;
            Ok(None)
        }
        "UntagRole" => {
            sim.untag_role(&role, &p.list("TagKeys")).await?;
            Ok(None)
        }
        "ListRoleTags" => {
            let tags = sim.list_role_tags(&role).await?;
            let members = tags
                .iter()
                .map(|(k, v)| format!("<member>{}{}</member>", el("Key", k), el("Value", v)))
                .collect();
            Ok(Some(iam_page(p, members, "Tags")))
        }
        "DeleteRole" => {
            sim.delete_role(&role).await?;
            Ok(None)
        }
        "ListInstanceProfilesForRole" => {
            let names = sim.list_instance_profiles_for_role(&role).await?;
            let account = &sim.config().account_id;
            let members: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "<member>{}{}{}{}{}<Roles/></member>",
                        el("Path", "/"),
                        el("InstanceProfileName", n),
                        el(
                            "InstanceProfileId",
                            &format!("AIPA{}", n.to_ascii_uppercase())
                        ),
                        el(
                            "Arn",
                            &format!("arn:aws:iam::{account}:instance-profile/{n}")
                        ),
                        el("CreateDate", "2020-01-01T00:00:00Z"),
                    )
                })
                .collect();
            Ok(Some(iam_page(p, members, "InstanceProfiles")))
        }
        "ListRoles" => {
            let roles = sim.list_roles(p.get("PathPrefix").unwrap_or("/")).await?;
            let members: Vec<String> = roles
                .iter()
                .map(|r| {
                    let inner = role_xml(r);
                    let inner = inner
                        .strip_prefix("<Role>")
                        .and_then(|x| x.strip_suffix("</Role>"))
                        .unwrap_or_default();
                    format!("<member>{inner}</member>")
                })
                .collect();
            Ok(Some(iam_page(p, members, "Roles")))
        }
        other => Err(aws_error(
            action,
            "InvalidAction",
            &format!("Could not find operation {other} for version 2010-05-08"),
        )),
    }
}

// ---- EKS: REST-JSON protocol ----

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
struct EksReply(pod_identity_aws::Result<Value>);

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

async fn describe_cluster(State(sim): State<Arc<AwsSim>>, Path(name): Path<String>) -> EksReply {
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
struct CreateBody {
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

async fn create_association(
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

async fn describe_association(
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
struct UpdateBody {
    role_arn: Option<String>,
    client_request_token: Option<String>,
    disable_session_tags: Option<bool>,
    target_role_arn: Option<String>,
    policy: Option<String>,
}

async fn update_association(
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

async fn delete_association(
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

async fn list_associations(
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
struct TagBody {
    tags: Tags,
}

async fn tag_resource(
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

async fn untag_resource(
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

async fn describe_addon(
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

async fn list_addons(
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

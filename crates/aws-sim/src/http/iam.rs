//! IAM's query protocol: form-encoded `Action=...` requests on `POST /`, answered in
//! XML (`<ActionResponse>`, or `<ErrorResponse>` for a failure).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::error::{failure, status_of};
use crate::AwsSim;
use crate::faults::aws_error;
use pod_identity_aws::{AwsError, CreateRole, IamApi, Role, Tags};

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

/// `POST /`: one IAM request, its `Action` served and answered in XML.
pub(super) async fn handle(
    State(sim): State<Arc<AwsSim>>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
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

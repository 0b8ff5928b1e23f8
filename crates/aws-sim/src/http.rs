//! The simulator on the wire: IAM's query protocol (form-encoded requests, XML answers)
//! and EKS's REST-JSON protocol for the calls [`IamApi`](pod_identity_aws::IamApi) and
//! [`EksApi`](pod_identity_aws::EksApi) make, on one HTTP port, so a separate process
//! (the operator binary under test) can use the simulator through the real SDK clients
//! with an endpoint override, while the test keeps the [`AwsSim`] to inspect and to
//! turn its knobs.
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
//!
//! This module holds the routes, the administrator's middleware, the `/_sim` endpoints
//! and the server; `iam` and `eks` speak the two protocols, and `error` holds the failure
//! answers both share.

mod eks;
mod error;
mod iam;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::AwsSim;

/// The routes of both services.
pub fn router(sim: Arc<AwsSim>) -> Router {
    Router::new()
        .route("/", post(iam::handle))
        .route("/clusters/{name}", get(eks::describe_cluster))
        .route(
            "/clusters/{name}/pod-identity-associations",
            post(eks::create_association).get(eks::list_associations),
        )
        .route(
            "/clusters/{name}/pod-identity-associations/{id}",
            get(eks::describe_association)
                .post(eks::update_association)
                .delete(eks::delete_association),
        )
        .route("/clusters/{name}/addons", get(eks::list_addons))
        .route("/clusters/{name}/addons/{addon}", get(eks::describe_addon))
        .route(
            "/tags/{*arn}",
            post(eks::tag_resource).delete(eks::untag_resource),
        )
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

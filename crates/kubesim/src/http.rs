//! The HTTP face: one fallback handler that parses Kubernetes API paths and query
//! parameters and calls the store, discovery, table and watch modules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::Shared;
use super::discovery;
use super::failure::Failure;
use super::faults::Verb;
use super::meta::{FieldSelector, LabelSelector};
use super::resources::{self, ResourceDef, Shape};
use super::store::{Addr, DeleteOpts, Deleted, PatchKind, Propagation, WriteOpts};
use super::table;
use super::watch::{self, WatchParams};

const MAX_BODY: usize = 16 * 1024 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let delay = shared.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return failure(&Failure::bad_request(format!("reading the body: {e}"))),
    };
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let ctx = Ctx {
        shared: &shared,
        method: &parts.method,
        headers: &parts.headers,
        query: &query,
        body: &bytes,
    };
    let path = parts.uri.path().to_owned();
    let resp = match ctx.route(&path) {
        Ok(resp) => resp,
        Err(f) => failure(&f),
    };
    tracing::debug!(method = %parts.method, uri = %parts.uri, status = resp.status().as_u16(), "kubesim request");
    resp
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_default()
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

pub fn failure(f: &Failure) -> Response {
    json_response(
        StatusCode::from_u16(f.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &f.to_status(),
    )
}

struct Ctx<'a> {
    shared: &'a Shared,
    method: &'a Method,
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
    body: &'a Bytes,
}

/// Where in the API a resource request points.
struct Target {
    /// The resource whose storage serves the request.
    def: Arc<ResourceDef>,
    /// The resource the client asked for (the same as `def` unless it is a view).
    shown: Arc<ResourceDef>,
    /// The version the client asked for.
    version: String,
    /// The version the store is asked with.
    store_version: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "1" || v == "true")
}

impl Ctx<'_> {
    fn q(&self, k: &str) -> Option<&String> {
        self.query.get(k).filter(|v| !v.is_empty())
    }

    fn wants_aggregated(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=APIGroupDiscoveryList"))
    }

    fn shape(&self) -> Shape {
        Shape::from_accept(
            self.headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        )
    }

    fn route(&self, path: &str) -> Result<Response, Failure> {
        let decoded: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let get_only = || {
            if self.method == Method::GET {
                Ok(())
            } else {
                Err(Failure::method_not_allowed(self.method.as_str()))
            }
        };
        let store = &self.shared.store;
        match segs.as_slice() {
            ["version"] => get_only().map(|_| ok(&discovery::version())),
            ["healthz" | "readyz" | "livez"] => Ok(Response::new(Body::from("ok"))),
            ["api" | "apis"] if self.wants_aggregated() => {
                get_only()?;
                let doc = discovery::aggregated(&store.lock().registry, segs[0] == "api");
                Ok(Response::builder()
                    .header(header::CONTENT_TYPE, discovery::AGGREGATED_CONTENT_TYPE)
                    .body(Body::from(doc.to_string()))
                    .unwrap_or_default())
            }
            ["api"] => get_only().map(|_| ok(&discovery::core_versions())),
            ["apis"] => get_only().map(|_| ok(&discovery::groups(&store.lock().registry))),
            ["openapi", "v3"] => {
                get_only().map(|_| ok(&discovery::openapi_root(&store.lock().registry)))
            }
            ["openapi", "v3", rest @ ..] => {
                get_only()?;
                discovery::openapi_group_version(&store.lock().registry, rest)
                    .map(|d| ok(&d))
                    .ok_or_else(|| Failure::no_route(path))
            }
            ["api", "v1", rest @ ..] => self.resource_route("", "v1", rest, path),
            ["apis", group] => {
                get_only()?;
                discovery::group(&store.lock().registry, group)
                    .map(|d| ok(&d))
                    .ok_or_else(|| Failure::no_route(path))
            }
            ["apis", group, version, rest @ ..] => self.resource_route(group, version, rest, path),
            _ => Err(Failure::no_route(path)),
        }
    }

    fn resource_route(
        &self,
        group: &str,
        version: &str,
        rest: &[&str],
        path: &str,
    ) -> Result<Response, Failure> {
        let registry_lookup = |plural: &str| {
            self.shared
                .store
                .lock()
                .registry
                .lookup(group, version, plural)
        };
        let (ns, plural, name, sub) = match rest {
            [] => {
                if self.method != Method::GET {
                    return Err(Failure::method_not_allowed(self.method.as_str()));
                }
                let doc =
                    discovery::resource_list(&self.shared.store.lock().registry, group, version);
                return doc.map(|d| ok(&d)).ok_or_else(|| Failure::no_route(path));
            }
            ["namespaces", ns, sub @ ("status" | "finalize")] => {
                (None, "namespaces", Some(*ns), Some(*sub))
            }
            ["namespaces", ns, plural, more @ ..] if more.len() <= 2 => (
                Some(*ns),
                *plural,
                more.first().copied(),
                more.get(1).copied(),
            ),
            [plural] => (None, *plural, None, None),
            [plural, name] => (None, *plural, Some(*name), None),
            [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
            _ => return Err(Failure::no_route(path)),
        };
        let def = registry_lookup(plural).ok_or_else(|| Failure::no_route(path))?;
        if ns.is_some() && !def.namespaced {
            return Err(Failure::no_route(path));
        }
        if def.namespaced && ns.is_none() && name.is_some() {
            return Err(Failure::no_route(path));
        }
        let sub = match sub {
            None => None,
            Some("status") if def.status_subresource => Some("status".to_owned()),
            Some("finalize") if plural == "namespaces" => Some("finalize".to_owned()),
            Some(_) => return Err(Failure::no_route(path)),
        };
        let (storage, store_version) = match &def.stored_as {
            Some(sa) => {
                let storage = self.shared.store.lock().registry.get(&sa.storage);
                let storage = storage.ok_or_else(|| Failure::no_route(path))?;
                let v = storage.storage_version().to_owned();
                (storage, v)
            }
            None => (def.clone(), version.to_owned()),
        };
        let target = Target {
            def: storage,
            shown: def,
            version: version.to_owned(),
            store_version,
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            sub,
        };
        match (self.method.clone(), target.name.is_some()) {
            (Method::GET, true) => self.get(&target),
            (Method::GET, false) if is_true(self.query.get("watch")) => self.watch(&target),
            (Method::GET, false) => self.list(&target),
            (Method::POST, false) => self.write(&target, Verb::Create),
            (Method::PUT, true) => self.write(&target, Verb::Update),
            (Method::PATCH, true) => self.write(&target, Verb::Patch),
            (Method::DELETE, true) => self.write(&target, Verb::Delete),
            (Method::DELETE, false) => self.write(&target, Verb::DeleteCollection),
            (m, _) => Err(Failure::method_not_allowed(m.as_str())),
        }
    }

    fn present(&self, t: &Target, obj: &Value) -> Value {
        resources::present(&t.shown, &t.version, obj)
    }

    /// A body (object, merge or strategic patch, apply configuration) in storage shape.
    fn to_store(&self, t: &Target, body: Value) -> Value {
        let Some(sa) = &t.shown.stored_as else {
            return body;
        };
        let mut out = sa.to_storage(&body);
        if let Some(m) = out.as_object_mut() {
            if m.contains_key("apiVersion") {
                m.insert("apiVersion".into(), json!(sa.storage_api_version));
            }
            if m.contains_key("kind") {
                m.insert("kind".into(), json!(t.def.kind));
            }
        }
        out
    }

    /// A JSON patch with its paths in storage shape.
    fn json_patch_to_store(&self, t: &Target, mut body: Value) -> Value {
        if let (Some(sa), Some(ops)) = (&t.shown.stored_as, body.as_array_mut()) {
            for op in ops.iter_mut().filter_map(Value::as_object_mut) {
                for key in ["path", "from"] {
                    if let Some(Value::String(p)) = op.get_mut(key) {
                        *p = sa.pointer_to_storage(p);
                    }
                }
            }
        }
        body
    }

    fn selectors(&self, t: &Target) -> Result<(LabelSelector, FieldSelector), Failure> {
        let fields = FieldSelector::parse(self.q("fieldSelector").map_or("", String::as_str))?;
        for label in fields.labels() {
            t.shown
                .check_field_label(&t.version, label)
                .map_err(Failure::bad_request)?;
        }
        let fields = match &t.shown.stored_as {
            Some(sa) => fields.map_paths(|p| sa.dotted_to_storage(p)),
            None => fields,
        };
        Ok((
            LabelSelector::parse(self.q("labelSelector").map_or("", String::as_str))?,
            fields,
        ))
    }

    fn get(&self, t: &Target) -> Result<Response, Failure> {
        if let Some(rv) = self.q("resourceVersion")
            && rv.parse::<u64>().is_err()
        {
            return Err(Failure::internal(Failure::rv_parse_detail(rv)));
        }
        let name = t.name.as_deref().unwrap_or_default();
        let obj = self
            .shared
            .store
            .lock()
            .get(&t.def, t.namespace.as_deref(), name)?;
        let obj = self.present(t, &obj);
        if self.shape() == Shape::Metadata {
            return Ok(ok(&resources::partial_metadata(&obj)));
        }
        if self.shape() == Shape::Table {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            return Ok(ok(&table::table(
                &t.shown,
                &t.version,
                &[obj],
                json!({"resourceVersion": rv}),
            )));
        }
        Ok(ok(&obj))
    }

    fn list(&self, t: &Target) -> Result<Response, Failure> {
        let (labels, fields) = self.selectors(t)?;
        if let Some(rv) = self.q("resourceVersion").filter(|rv| !rv.is_empty())
            && rv.parse::<u64>().is_err()
        {
            return Err(Failure::bad_request(format!(
                "invalid resource version: {}",
                Failure::rv_parse_detail(rv)
            )));
        }
        let limit = self.q("limit").and_then(|l| l.parse().ok());
        let page = self.shared.store.lock().list(
            &t.def,
            t.namespace.as_deref(),
            &labels,
            &fields,
            limit,
            self.q("continue").map(String::as_str),
        )?;
        let items: Vec<Value> = page.items.iter().map(|o| self.present(t, o)).collect();
        let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
        if let Some(c) = &page.continue_token {
            meta["continue"] = json!(c);
        }
        if let Some(n) = page.remaining {
            meta["remainingItemCount"] = json!(n);
        }
        match self.shape() {
            Shape::Table => return Ok(ok(&table::table(&t.shown, &t.version, &items, meta))),
            Shape::Metadata => {
                let items: Vec<Value> = items.iter().map(resources::partial_metadata).collect();
                return Ok(ok(&json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": items,
                })));
            }
            Shape::Object => {}
        }
        Ok(ok(&json!({
            "kind": t.shown.list_kind,
            "apiVersion": t.shown.api_version(&t.version),
            "metadata": meta,
            "items": items,
        })))
    }

    fn watch(&self, t: &Target) -> Result<Response, Failure> {
        let (labels, fields) = self.selectors(t)?;
        let send_initial = is_true(self.query.get("sendInitialEvents"));
        let from = match self.q("resourceVersion").map(String::as_str) {
            None | Some("0") => None,
            Some(_) if send_initial => None,
            Some(rv) => Some(
                rv.parse::<u64>()
                    .map_err(|_| Failure::internal(Failure::rv_parse_detail(rv)))?,
            ),
        };
        let params = WatchParams {
            def: t.def.clone(),
            shown: t.shown.clone(),
            version: t.version.clone(),
            namespace: t.namespace.clone(),
            labels,
            fields,
            bookmarks: is_true(self.query.get("allowWatchBookmarks")),
            initial_events_end: send_initial,
            timeout: self
                .q("timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs),
            bookmark_interval: self.shared.options.bookmark_interval,
            shape: self.shape(),
        };
        let started = self
            .shared
            .store
            .lock()
            .watch(&t.def, t.namespace.as_deref(), from);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
        match started {
            Ok(start) => {
                tokio::spawn(watch::run(params, start, self.shared.faults.drops(), tx));
            }
            Err(gone) => {
                // the real server answers an expired watch with 200 and one ERROR event
                let _ = tx.try_send(watch::error_line(&gone));
            }
        }
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
        });
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::from_stream(stream))
            .unwrap_or_default())
    }

    fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn body_value(&self, yaml: bool) -> Result<Value, Failure> {
        let ct = self.content_type();
        if ct.contains("protobuf") || ct.contains("cbor") {
            return Err(Failure::unsupported_media_type(&ct));
        }
        if yaml {
            let text =
                std::str::from_utf8(self.body).map_err(|e| Failure::bad_request(e.to_string()))?;
            serde_yaml::from_str(text)
                .map_err(|e| Failure::bad_request(format!("error decoding YAML: {e}")))
        } else {
            serde_json::from_slice(self.body).map_err(|e| {
                Failure::bad_request(format!("couldn't decode the body: json parse error: {e}"))
            })
        }
    }

    fn write_opts(&self) -> WriteOpts {
        // without fieldManager the real server names the writer after its user agent
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split('/').next())
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        WriteOpts {
            field_manager: self.q("fieldManager").cloned().or(agent),
            force: is_true(self.query.get("force")),
            dry_run: self.q("dryRun").is_some(),
            strict: self.q("fieldValidation").is_some_and(|v| v == "Strict"),
            applying: false,
            checks: None,
        }
    }

    fn write(&self, t: &Target, verb: Verb) -> Result<Response, Failure> {
        let mut resource = t.shown.group_resource().to_string();
        if t.sub.as_deref() == Some("status") {
            resource.push_str("/status");
        }
        self.shared.counters.record(&resource, verb);
        if let Some(f) = self.shared.faults.take_write_failure(&resource) {
            return Err(f);
        }
        self.check_options(verb)?;
        let ns = t.namespace.as_deref();
        let name = t.name.as_deref().unwrap_or_default();
        let sub = t.sub.as_deref().filter(|s| *s == "status");
        let opts = WriteOpts {
            checks: t.shown.checks,
            ..self.write_opts()
        };
        let at = Addr {
            def: &t.def,
            version: &t.store_version,
            ns,
            name,
            sub,
        };
        let ct = self.content_type();
        let yaml_body = ct.contains("yaml");
        match verb {
            Verb::Create => {
                let body = self.to_store(t, self.body_value(yaml_body)?);
                let obj =
                    self.shared
                        .store
                        .lock()
                        .create(&t.def, &t.store_version, ns, body, &opts)?;
                Ok(json_response(StatusCode::CREATED, &self.present(t, &obj)))
            }
            Verb::Update => {
                let body = self.to_store(t, self.body_value(yaml_body)?);
                let obj = self.shared.store.lock().update(at, body, &opts, false)?;
                Ok(ok(&self.present(t, &obj)))
            }
            Verb::Patch => {
                let kind = match ct.as_str() {
                    "application/merge-patch+json" => PatchKind::Merge,
                    "application/json-patch+json" => PatchKind::Json,
                    "application/strategic-merge-patch+json" => PatchKind::Strategic,
                    "application/apply-patch+yaml" | "application/apply-patch+json" => {
                        PatchKind::Apply
                    }
                    other => return Err(Failure::unsupported_media_type(other)),
                };
                if kind == PatchKind::Apply && self.q("fieldManager").is_none() {
                    return Err(Failure::apply_needs_manager());
                }
                if opts.force && kind != PatchKind::Apply {
                    return Err(Failure::bad_request(
                        "force is only allowed for apply patches",
                    ));
                }
                let body = self.body_value(kind == PatchKind::Apply)?;
                let body = match kind {
                    PatchKind::Json => self.json_patch_to_store(t, body),
                    _ => self.to_store(t, body),
                };
                let mut store = self.shared.store.lock();
                let existed = store.get(&t.def, ns, name).is_ok();
                let obj = store.patch(at, kind, &body, &opts)?;
                let code = if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                Ok(json_response(code, &self.present(t, &obj)))
            }
            Verb::Delete => {
                let dopts = self.delete_opts()?;
                let outcome = self.shared.store.lock().delete(&t.def, ns, name, &dopts)?;
                Ok(match outcome {
                    Deleted::Pending(obj) => ok(&self.present(t, &obj)),
                    Deleted::Removed(obj) if t.shown.return_deleted_object => {
                        ok(&self.present(t, &obj))
                    }
                    Deleted::Removed(obj) => ok(&json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": t.shown.group, "kind": t.shown.plural,
                                    "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
                    })),
                })
            }
            Verb::DeleteCollection => {
                let (labels, fields) = self.selectors(t)?;
                let dopts = self.delete_opts()?;
                let items = self
                    .shared
                    .store
                    .lock()
                    .delete_collection(&t.def, ns, &labels, &fields, &dopts)?;
                let items: Vec<Value> = items.iter().map(|o| self.present(t, o)).collect();
                Ok(ok(&json!({
                    "kind": t.shown.list_kind, "apiVersion": t.shown.api_version(&t.version),
                    "metadata": {}, "items": items,
                })))
            }
        }
    }

    /// `dryRun` and `fieldValidation` take only the values the real server knows.
    fn check_options(&self, verb: Verb) -> Result<(), Failure> {
        let kind = match verb {
            Verb::Create => "CreateOptions",
            Verb::Update => "UpdateOptions",
            Verb::Patch => "PatchOptions",
            Verb::Delete | Verb::DeleteCollection => "DeleteOptions",
        };
        if let Some(d) = self.q("dryRun").filter(|d| *d != "All") {
            return Err(Failure::unsupported_option(
                kind,
                "dryRun",
                &format!("[{d:?}]"),
                &["All"],
            ));
        }
        if let Some(v) = self.query.get("fieldValidation")
            && !matches!(verb, Verb::Delete | Verb::DeleteCollection)
            && !["", "Ignore", "Strict", "Warn"].contains(&v.as_str())
        {
            return Err(Failure::unsupported_option(
                kind,
                "fieldValidation",
                &format!("{v:?}"),
                &["", "Ignore", "Strict", "Warn"],
            ));
        }
        Ok(())
    }

    fn delete_opts(&self) -> Result<DeleteOpts, Failure> {
        let body: Value = if self.body.is_empty() {
            json!({})
        } else {
            self.body_value(false)?
        };
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.q("propagationPolicy").cloned());
        let orphan = body.get("orphanDependents") == Some(&Value::Bool(true));
        let propagation = match policy.as_deref() {
            Some("Orphan") => Propagation::Orphan,
            Some("Foreground") => Propagation::Foreground,
            Some("Background") => Propagation::Background,
            None if orphan => Propagation::Orphan,
            None => Propagation::Background,
            Some(other) => {
                return Err(Failure::unsupported_option(
                    "DeleteOptions",
                    "propagationPolicy",
                    &format!("{other:?}"),
                    &["Foreground", "Background", "Orphan", "nil"],
                ));
            }
        };
        let pre = |k: &str| {
            body.pointer(&format!("/preconditions/{k}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(DeleteOpts {
            propagation,
            uid: pre("uid"),
            resource_version: pre("resourceVersion"),
            dry_run: self.q("dryRun").is_some()
                || body
                    .get("dryRun")
                    .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty())),
        })
    }
}

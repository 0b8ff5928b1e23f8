//! Watch streams: newline-delimited JSON watch events for one resource and scope.
//!
//! Each event is checked against the watcher's namespace and selectors before and after
//! the change, so an object that moves out of a selector is seen DELETED and one that moves
//! in is seen ADDED, as the real server does. Bookmarks carry the last resourceVersion the
//! stream has passed (including changes to other resources). A watcher that falls behind
//! the broadcast buffer, or starts from a resourceVersion older than the retained history,
//! gets an ERROR event with a 410 Expired Status and the stream ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::failure::Failure;
use super::meta::{FieldSelector, LabelSelector};
use super::resources::{self, ResourceDef, Shape};
use super::store::{Event, EventType, WatchStart};
use super::table;

/// What one watch request asked for.
pub struct WatchParams {
    /// The resource whose storage is watched.
    pub def: Arc<ResourceDef>,
    /// The resource the client asked for (differs from `def` for a view, see
    /// `StoredAs` in `resources/def.rs`).
    pub shown: Arc<ResourceDef>,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: a bookmark marks the end of the initial ADDED events.
    pub initial_events_end: bool,
    pub timeout: Option<Duration>,
    pub bookmark_interval: Duration,
    /// Objects go out as they are, as one-row Tables (`kubectl get -w`), or as
    /// PartialObjectMetadata.
    pub shape: Shape,
}

impl WatchParams {
    fn matches(&self, obj: &Value) -> bool {
        let ns_ok = match (&self.namespace, self.def.namespaced) {
            (Some(ns), true) => {
                obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
            }
            _ => true,
        };
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The object as served at the requested version.
    pub fn present(&self, obj: &Value) -> Value {
        resources::present(&self.shown, &self.version, obj)
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let mut out = self.present(obj);
        if self.shape == Shape::Metadata {
            out = resources::partial_metadata(&out);
        }
        if self.shape == Shape::Table {
            let rv = out
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            out = table::table(
                &self.shown,
                &self.version,
                &[out],
                json!({"resourceVersion": rv}),
            );
        }
        let mut s = json!({"type": kind, "object": out}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.shown.kind, "apiVersion": self.shown.api_version(&self.version), "metadata": meta});
        let mut s = json!({"type": "BOOKMARK", "object": obj}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    /// The line this watcher sees for `event`, if any.
    fn translate(&self, event: &Event) -> Option<Bytes> {
        if event.gr != self.def.group_resource() {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.prev.as_ref().is_some_and(|p| self.matches(p));
        let kind = match (event.kind, before, now) {
            (EventType::Added, _, true) => "ADDED",
            (EventType::Modified, true, true) => "MODIFIED",
            (EventType::Modified, false, true) => "ADDED",
            (EventType::Modified, true, false) => "DELETED",
            (EventType::Deleted, b, n) if b || n => "DELETED",
            _ => return None,
        };
        Some(self.line(kind, &event.object))
    }
}

/// The ERROR line a watch ends with when its resourceVersion is gone.
pub fn error_line(failure: &Failure) -> Bytes {
    let mut s = json!({"type": "ERROR", "object": failure.to_status()}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Runs one watch until the client leaves, it times out, or watches are dropped; lines go
/// to `out`.
pub async fn run(
    params: WatchParams,
    start: WatchStart,
    mut drops: tokio::sync::watch::Receiver<u64>,
    out: mpsc::Sender<Bytes>,
) {
    drops.mark_unchanged();
    let WatchStart {
        initial,
        backlog,
        mut rx,
        resource_version,
    } = start;
    let mut last_rv = resource_version;
    for obj in initial.iter().filter(|o| params.matches(o)) {
        if out.send(params.line("ADDED", obj)).await.is_err() {
            return;
        }
    }
    if params.initial_events_end && out.send(params.bookmark(last_rv, true)).await.is_err() {
        return;
    }
    for event in &backlog {
        last_rv = last_rv.max(event.rv);
        if let Some(line) = params.translate(event)
            && out.send(line).await.is_err()
        {
            return;
        }
    }
    let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut ticker = tokio::time::interval(params.bookmark_interval);
    ticker.tick().await;
    loop {
        let line = tokio::select! {
            _ = out.closed() => return,
            _ = drops.changed() => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => return,
            _ = ticker.tick(), if params.bookmarks => Some(params.bookmark(last_rv, false)),
            received = rx.recv() => match received {
                Ok(event) if event.rv <= last_rv => None,
                Ok(event) => {
                    last_rv = event.rv;
                    params.translate(&event)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let gone = Failure::gone(format!(
                        "too old resource version: {last_rv} (watcher fell behind)"
                    ));
                    let _ = out.send(error_line(&gone)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Some(line) = line
            && out.send(line).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{GroupResource, Registry};

    fn params(labels: &str) -> WatchParams {
        let def = Registry::default()
            .get(&GroupResource::new("", "configmaps"))
            .unwrap();
        WatchParams {
            shown: def.clone(),
            def,
            version: "v1".into(),
            namespace: Some("default".into()),
            labels: LabelSelector::parse(labels).unwrap(),
            fields: FieldSelector::default(),
            bookmarks: false,
            initial_events_end: false,
            timeout: None,
            bookmark_interval: Duration::from_secs(1),
            shape: Shape::Object,
        }
    }

    fn event(kind: EventType, prev_label: Option<&str>, label: &str) -> Event {
        let obj = |l: &str| json!({"metadata": {"name": "a", "namespace": "default", "labels": {"app": l}}});
        Event {
            rv: 5,
            gr: GroupResource::new("", "configmaps"),
            kind,
            object: obj(label),
            prev: prev_label.map(obj),
        }
    }

    fn kind_of(line: Option<Bytes>) -> Option<String> {
        line.map(|b| {
            serde_json::from_slice::<Value>(&b).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    }

    #[test]
    fn selector_moves_become_added_and_deleted() {
        let p = params("app=web");
        assert_eq!(
            kind_of(p.translate(&event(EventType::Modified, Some("db"), "web"))).as_deref(),
            Some("ADDED")
        );
        assert_eq!(
            kind_of(p.translate(&event(EventType::Modified, Some("web"), "db"))).as_deref(),
            Some("DELETED")
        );
        assert_eq!(
            kind_of(p.translate(&event(EventType::Modified, Some("web"), "web"))).as_deref(),
            Some("MODIFIED")
        );
        assert_eq!(
            kind_of(p.translate(&event(EventType::Modified, Some("db"), "db"))),
            None
        );
        assert_eq!(
            kind_of(p.translate(&event(EventType::Deleted, Some("web"), "web"))).as_deref(),
            Some("DELETED")
        );
    }
}

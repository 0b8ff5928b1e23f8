//! Watches on kubesim and on the real API server, with the same assertions: every
//! scenario runs on kubesim in-process, over TCP, and on a real kube-apiserver
//! (`support/differential.rs`), but for what only kubesim's instrumentation can make
//! happen (dropped watches, forced compaction, a small watch buffer).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/differential.rs"]
mod differential;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use pod_identity_operator::kubesim::{KubeSim, Options};
use serde_json::json;

use differential::{WAIT, api_error, cm, on_all, on_all_with, rv};

#[tokio::test]
async fn finalizer_lifecycle_seen_by_a_watch() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let mut held = cm("held", json!({}));
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        let created = cms.create(&PostParams::default(), &held).await.unwrap();
        let wp = WatchParams::default().fields("metadata.name=held");
        let mut events = cms
            .watch(&wp, &created.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();

        let pending = cms.delete("held", &DeleteParams::default()).await.unwrap();
        let pending = pending
            .left()
            .expect("object returned while finalizers remain");
        assert!(pending.metadata.deletion_timestamp.is_some());
        assert!(cms.get("held").await.is_ok());

        // deleting again changes nothing; new finalizers are refused
        assert!(
            cms.delete("held", &DeleteParams::default())
                .await
                .unwrap()
                .is_left()
        );
        let (code, _, msg) = api_error(
            cms.patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "new"]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(code, 422);
        assert!(
            msg.contains("no new finalizers can be added if the object is being deleted"),
            "{msg}"
        );

        // removing the last finalizer (JSON patch with test, like kube-rs's finalizer helper)
        let jp: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]))
        .unwrap();
        cms.patch("held", &PatchParams::default(), &Patch::Json::<()>(jp))
            .await
            .unwrap();
        assert_eq!(api_error(cms.get("held").await.unwrap_err()).0, 404);

        let mut seen = Vec::new();
        while seen.len() < 2 {
            match tokio::time::timeout(WAIT, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                WatchEvent::Modified(o) => {
                    seen.push(("MODIFIED", o.metadata.deletion_timestamp.is_some()))
                }
                WatchEvent::Deleted(o) => {
                    seen.push(("DELETED", o.metadata.deletion_timestamp.is_some()))
                }
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, vec![("MODIFIED", true), ("DELETED", true)]);
    })
    .await;
}

#[tokio::test]
async fn watcher_survives_disconnects_and_expired_versions() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        for i in 0..5 {
            cms.create(
                &PostParams::default(),
                &cm(&format!("w{i}"), json!({"w": "yes"})),
            )
            .await
            .unwrap();
        }
        // one list-then-watch watcher, one streaming-list watcher (sendInitialEvents)
        let mut readers = Vec::new();
        let mut drivers = Vec::new();
        for streaming in [false, true] {
            let (reader, writer) = reflector::store::<ConfigMap>();
            let mut config = watcher::Config::default().labels("w=yes");
            config.bookmarks = true;
            if streaming {
                config = config.streaming_lists();
            }
            let stream = watcher(cms.clone(), config)
                .default_backoff()
                .reflect(writer)
                .applied_objects()
                .for_each(|_| async {});
            drivers.push(tokio::spawn(stream));
            readers.push(reader);
        }

        let names = |r: &reflector::Store<ConfigMap>| -> BTreeSet<String> {
            r.state().iter().map(|c| c.name_any()).collect()
        };
        let wait_for = |want: BTreeSet<String>| {
            let readers = readers.clone();
            async move {
                let deadline = tokio::time::Instant::now() + WAIT;
                for reader in &readers {
                    loop {
                        if names(reader) == want {
                            break;
                        }
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "store is {:?}, want {want:?}",
                            names(reader)
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        };
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        wait_for(set(&["w0", "w1", "w2", "w3", "w4"])).await;

        // changes while watching
        cms.delete("w0", &DeleteParams::default()).await.unwrap();
        cms.create(&PostParams::default(), &cm("w5", json!({"w": "yes"})))
            .await
            .unwrap();
        wait_for(set(&["w1", "w2", "w3", "w4", "w5"])).await;

        // kubesim only (its instrumentation): a forced disconnect, then changes
        let Some(sim) = s.sim() else {
            for d in drivers {
                d.abort();
            }
            return;
        };
        sim.faults().drop_watches();
        cms.delete("w1", &DeleteParams::default()).await.unwrap();
        wait_for(set(&["w2", "w3", "w4", "w5"])).await;

        // history gone and watch dropped: the watcher must get 410 and relist
        sim.compact_history();
        sim.faults().drop_watches();
        cms.patch(
            "w2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"w": "no"}}})),
        )
        .await
        .unwrap();
        cms.create(&PostParams::default(), &cm("w6", json!({"w": "yes"})))
            .await
            .unwrap();
        cms.create(
            &PostParams::default(),
            &cm("not-watched", json!({"w": "no"})),
        )
        .await
        .unwrap();
        sim.compact_history();
        sim.faults().drop_watches();
        wait_for(set(&["w3", "w4", "w5", "w6"])).await;
        for d in drivers {
            d.abort();
        }
    })
    .await;
}

#[tokio::test]
async fn a_watcher_that_falls_behind_gets_410() {
    // in-process only: over TCP the socket buffers absorb the backlog
    let sim = KubeSim::with_options(Options {
        watch_buffer: 64,
        ..Options::default()
    });
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let start = sim.resource_version().to_string();
    let mut events = cms
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    for i in 0..1000 {
        cms.create(&PostParams::default(), &cm(&format!("lag{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut added = 0;
    let status = tokio::time::timeout(WAIT, async {
        loop {
            match events
                .try_next()
                .await
                .unwrap()
                .expect("stream ended without an error")
            {
                WatchEvent::Added(_) => added += 1,
                WatchEvent::Error(e) => return e,
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(
        added < 1000,
        "all {added} events arrived, the watcher never fell behind"
    );
}

#[tokio::test]
async fn a_watch_resumes_from_a_resource_version() {
    on_all(|s| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
        let first = cms
            .create(&PostParams::default(), &cm("e", json!({})))
            .await
            .unwrap();
        cms.patch(
            "e",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
        cms.create(&PostParams::default(), &cm("f", json!({})))
            .await
            .unwrap();
        let mut events = cms
            .watch(&WatchParams::default(), &first.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match tokio::time::timeout(WAIT, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                WatchEvent::Modified(o) => seen.push(("MODIFIED", o.name_any())),
                WatchEvent::Added(o) => seen.push(("ADDED", o.name_any())),
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, [("MODIFIED", "e".into()), ("ADDED", "f".into())]);

        // kubesim only: its history forgotten when told to (the real server compacts on
        // its own schedule, and its watch cache keeps recent events after that), a watch
        // from before answers one ERROR event, 410 Expired
        let Some(sim) = s.sim() else { return };
        sim.compact_history();
        let mut events = cms
            .watch(&WatchParams::default(), &first.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
            other => panic!("expected 410, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn watch_bookmarks_and_timeouts() {
    let options = Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    };
    on_all_with(options, |s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let first = cms
            .create(&PostParams::default(), &cm("b", json!({})))
            .await
            .unwrap();
        // a write to another resource moves the bookmark too
        let nss: Api<Namespace> = Api::all(client.clone());
        let ns = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).unwrap(),
            )
            .await
            .unwrap();
        let ns_rv = rv(&ns);
        // a consistent list: the real server's watch cache has caught up with every
        // write when it answers (kubesim's bookmarks are always at the latest write)
        cms.list(&ListParams::default()).await.unwrap();
        // the real server sends a bookmark 2s before the watch ends; kubesim sends one
        // every bookmark_interval
        let wp = WatchParams::default().timeout(3);
        assert!(wp.bookmarks);
        let mut events = cms
            .watch(&wp, &first.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        let mut bookmark_rv = 0;
        let mut bookmarks = 0;
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(ev) = events.try_next().await.unwrap() {
                match ev {
                    WatchEvent::Bookmark(b) => {
                        bookmark_rv = b.metadata.resource_version.parse().unwrap();
                        bookmarks += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "timeoutSeconds did not end the watch");
        assert!(
            bookmark_rv >= ns_rv,
            "bookmark at {bookmark_rv}, expected at least {ns_rv}"
        );
        // the real server's schedule is its own (before the timeout, then about every
        // minute); kubesim's is bookmark_interval
        if s.is_real() {
            assert!(bookmarks >= 1);
        } else {
            assert!(bookmarks > 5, "one every 100ms, got {bookmarks}");
        }

        // deletecollection with a selector, and dry runs that change nothing
        cms.create(&PostParams::default(), &cm("x1", json!({"g": "x"})))
            .await
            .unwrap();
        cms.create(&PostParams::default(), &cm("x2", json!({"g": "x"})))
            .await
            .unwrap();
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let would = cms
            .create(&dry, &cm("x3", json!({"g": "x"})))
            .await
            .unwrap();
        assert_eq!(would.name_any(), "x3");
        assert!(cms.get_opt("x3").await.unwrap().is_none());
        let deleted = cms
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels("g=x"),
            )
            .await
            .unwrap();
        assert_eq!(deleted.left().unwrap().items.len(), 2);
        assert_eq!(
            cms.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_lose_nothing_and_versions_only_grow() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let start = cms
            .create(&PostParams::default(), &cm("counter", json!({})))
            .await
            .unwrap();
        let mut watch = cms
            .watch(
                &WatchParams::default().fields("metadata.name=counter"),
                &start.resource_version().unwrap(),
            )
            .await
            .unwrap()
            .boxed();
        let tasks = 16;
        let per_task = 10;
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let cms = cms.clone();
                tokio::spawn(async move {
                    let mut last_rv = 0u64;
                    for _ in 0..per_task {
                        loop {
                            let mut cur = cms.get("counter").await.unwrap();
                            let rv: u64 = cur.resource_version().unwrap().parse().unwrap();
                            assert!(rv >= last_rv, "resourceVersion went backwards");
                            last_rv = rv;
                            let n: u64 = cur
                                .data
                                .as_ref()
                                .and_then(|d| d.get("n"))
                                .map_or(0, |s| s.parse().unwrap());
                            cur.data = Some(
                                [
                                    ("n".to_string(), (n + 1).to_string()),
                                    (format!("t{t}"), "1".into()),
                                ]
                                .into(),
                            );
                            match cms.replace("counter", &PostParams::default(), &cur).await {
                                Ok(done) => {
                                    let rv: u64 = done.resource_version().unwrap().parse().unwrap();
                                    assert!(rv > last_rv);
                                    last_rv = rv;
                                    break;
                                }
                                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let end = cms.get("counter").await.unwrap();
        assert_eq!(end.data.unwrap()["n"], (tasks * per_task).to_string());

        let mut last = start.resource_version().unwrap().parse::<u64>().unwrap();
        let mut modified = 0;
        while modified < tasks * per_task {
            let ev = tokio::time::timeout(WAIT, watch.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let WatchEvent::Modified(o) = ev {
                let rv: u64 = o.resource_version().unwrap().parse().unwrap();
                assert!(rv > last, "watch resourceVersion went backwards");
                last = rv;
                modified += 1;
            }
        }
    })
    .await;
}

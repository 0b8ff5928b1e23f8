//! Metadata-only clients: lists, gets and watches of `PartialObjectMeta`.

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::differential::{WAIT, cm, on_all};

#[tokio::test]
async fn metadata_only_clients() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        cms.create(&PostParams::default(), &cm("m1", json!({"m": "yes"})))
            .await
            .unwrap();
        let list = cms
            .list_metadata(&ListParams::default().labels("m=yes"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(
            list.items[0].types.as_ref().unwrap().kind,
            "PartialObjectMetadata"
        );
        let one = cms.get_metadata("m1").await.unwrap();
        assert_eq!(one.metadata.labels.unwrap()["m"], "yes");

        let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> =
            Api::default_namespaced(client.clone());
        let stream = watcher(metas, watcher::Config::default().labels("m=yes"))
            .applied_objects()
            .boxed();
        let creator = {
            let cms = cms.clone();
            tokio::spawn(async move {
                cms.create(&PostParams::default(), &cm("m2", json!({"m": "yes"})))
                    .await
                    .unwrap();
            })
        };
        let seen: BTreeSet<String> = tokio::time::timeout(
            WAIT,
            stream
                .take(2)
                .map(|o| o.unwrap().name_any())
                .collect::<BTreeSet<_>>(),
        )
        .await
        .unwrap();
        creator.await.unwrap();
        assert_eq!(seen, ["m1".to_string(), "m2".to_string()].into());
    })
    .await;
}

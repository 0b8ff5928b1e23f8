//! kubesim's own instrumentation: injected faults and the write counters (kubesim only).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pod_identity_operator::kubesim::Verb;
use serde_json::json;

use crate::differential::{api_error, cm, on_kubesim};

#[tokio::test]
async fn faults_and_write_counters() {
    // kubesim's instrumentation: the real server has neither
    on_kubesim(|s| async move {
        let sim = s.sim().unwrap();
        let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
        sim.reset_write_counts();
        sim.faults().fail_next_writes("configmaps", 2, 500);
        for _ in 0..2 {
            let (code, _, _) = api_error(
                cms.create(&PostParams::default(), &cm("f", json!({})))
                    .await
                    .unwrap_err(),
            );
            assert_eq!(code, 500);
        }
        assert!(
            cms.get_opt("f").await.unwrap().is_none(),
            "a failed write changes nothing"
        );
        cms.create(&PostParams::default(), &cm("f", json!({})))
            .await
            .unwrap();
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await
        .unwrap();
        cms.list(&ListParams::default()).await.unwrap();
        let counts = sim.write_counts();
        assert_eq!(counts.get("configmaps", Verb::Create), 3);
        assert_eq!(counts.get("configmaps", Verb::Patch), 1);
        assert_eq!(counts.total(), 4);

        sim.faults().set_delay(std::time::Duration::from_millis(50));
        let t = std::time::Instant::now();
        cms.get("f").await.unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(50));
        sim.faults().clear();
    })
    .await;
}

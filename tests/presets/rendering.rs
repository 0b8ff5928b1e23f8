//! Each preset renders for a sample cluster, and its variants cover the whole file.

use super::*;

// ---------------------------------------------------------------------------------------
// Rendering

#[test]
fn every_preset_renders_for_a_sample_cluster_and_its_variants_cover_the_whole_file() {
    let all = variants();
    assert!(presets::all().len() >= 20);
    for ctx in [
        sample(),
        Context {
            partition: "aws-cn".into(),
            ..sample()
        },
    ] {
        for v in &all {
            let r = v.render(&ctx);
            assert_eq!(r.name, v.preset.name);
            let mut texts = r.managed_policy_arns.clone();
            if let Some((name, doc)) = &r.inline_policy {
                assert_eq!(name, &format!("preset-{}", v.preset.name));
                assert_eq!(doc["Version"], "2012-10-17", "{}", v.id());
                assert!(!statements(doc).is_empty(), "{}", v.id());
                for st in statements(doc) {
                    assert_eq!(st["Effect"], "Allow", "{}: {st}", v.id());
                    assert!(st.get("when").is_none(), "{}: {st}", v.id());
                    assert!(!strings(st.get("Action")).is_empty(), "{}: {st}", v.id());
                    assert!(!strings(st.get("Resource")).is_empty(), "{}: {st}", v.id());
                }
                all_strings(doc, &mut texts);
            }
            // ARNs made of a parameter value (a list item) keep the value's partition,
            // region and account.
            let given: BTreeSet<String> = v
                .parameters
                .values()
                .flat_map(|s| s.split(',').map(|i| i.trim().to_owned()))
                .filter(|i| i.starts_with("arn:"))
                .collect();
            for t in &texts {
                assert!(!t.contains("${"), "{}: {t} keeps a placeholder", v.id());
                if t.starts_with("arn:") && !given.iter().any(|g| t.starts_with(g.as_str())) {
                    assert!(
                        t.starts_with(&format!("arn:{}:", ctx.partition)),
                        "{}: {t} is not in partition {}",
                        v.id(),
                        ctx.partition
                    );
                    let region = t.split(':').nth(3).unwrap_or_default();
                    assert!(
                        ["", "*", ctx.region.as_str()].contains(&region),
                        "{}: {t} names region {region}",
                        v.id()
                    );
                    let account = t.split(':').nth(4).unwrap_or_default();
                    assert!(
                        ["", "*", "aws", ctx.account_id.as_str()].contains(&account),
                        "{}: {t} names account {account}",
                        v.id()
                    );
                }
            }
        }
    }

    // Together the variants of a preset grant every action its file names and every
    // managed policy it can attach.
    for preset in presets::all() {
        let mine: Vec<&Variant> = all
            .iter()
            .filter(|v| v.preset.name == preset.name)
            .collect();
        let rendered: Vec<Rendered> = mine.iter().map(|v| v.render(&sample())).collect();
        let in_file: BTreeSet<String> = preset
            .statements
            .iter()
            .flat_map(|st| strings(st.body.get("Action")))
            .collect();
        let granted: BTreeSet<String> = rendered
            .iter()
            .filter_map(|r| r.inline_policy.as_ref())
            .flat_map(|(_, doc)| actions_of(doc))
            .collect();
        assert_eq!(
            granted, in_file,
            "{}: actions no variant renders",
            preset.name
        );
        let statements_in_file = preset.statements.len();
        let most = rendered
            .iter()
            .filter_map(|r| r.inline_policy.as_ref())
            .map(|(_, doc)| statements(doc).len())
            .max()
            .unwrap_or(0);
        assert!(
            most <= statements_in_file,
            "{}: more statements than the file",
            preset.name
        );
        let attached: BTreeSet<String> = rendered
            .iter()
            .flat_map(|r| r.managed_policy_arns.iter().cloned())
            .collect();
        let possible: BTreeSet<String> = presets::possible_managed_policy_arns(preset, "aws")
            .into_iter()
            .collect();
        assert_eq!(attached, possible, "{}: managed policies", preset.name);
    }

    // Parameters reach the documents: cluster-autoscaler's tag names the cluster given,
    // karpenter passes the node role named, velero's bucket is the one given.
    let render = |name: &str, params: &[(&str, &str)]| {
        let p = presets::get(name).expect("preset");
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        presets::render(p, &params, &sample(), "f")
            .expect("renders")
            .inline_policy
            .expect("an inline document")
            .1
            .to_string()
    };
    assert!(
        render("cluster-autoscaler", &[]).contains("k8s.io/cluster-autoscaler/prod-eu"),
        "the default names the sample cluster"
    );
    assert!(
        render("cluster-autoscaler", &[("clusterName", "blue")])
            .contains("cluster-autoscaler/blue\"")
    );
    assert!(
        render("karpenter", &[("nodeRoleName", "KarpenterNodeRole-x")])
            .contains("arn:aws:iam::444455556666:role/KarpenterNodeRole-x")
    );
    assert!(render("velero", &[("bucket", "backups-1")]).contains("arn:aws:s3:::backups-1/*"));
}

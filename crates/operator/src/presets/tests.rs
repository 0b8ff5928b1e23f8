use super::*;
use serde_json::json;

fn ctx() -> Context {
    Context::of_cluster_arn("arn:aws:eks:eu-west-1:111122223333:cluster/prod").expect("ARN")
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_file_parses_is_named_after_itself_and_the_folder_holds_no_other() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/presets");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("presets/ reads")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = FILES.iter().map(|(n, _)| format!("{n}.yaml")).collect();
    assert_eq!(on_disk, embedded);
    assert!(all().len() >= 20);
    for ((file, _), p) in FILES.iter().zip(all()) {
        assert_eq!(*file, p.name);
        assert!(chrono::NaiveDate::parse_from_str(&p.checked, "%Y-%m-%d").is_ok());
        assert!(!p.source.repository.is_empty() && !p.source.release.is_empty());
        for param in &p.parameters {
            if let Some(pattern) = &param.pattern {
                regex::Regex::new(pattern).expect("pattern compiles");
            }
            assert!(
                param.example.is_some() || !param.required(),
                "{}: {}",
                p.name,
                param.name
            );
            if let Some(example) = &param.example {
                let checked = check_value(param, "f", example);
                assert!(checked.is_ok(), "{}: example {checked:?}", p.name);
            }
        }
    }
}

#[test]
fn list_parameters_expand_and_defaults_name_built_ins() {
    let p = get("external-dns").expect("preset");
    let r = render(
        p,
        &params(&[("hostedZoneIds", "Z1, Z2")]),
        &ctx(),
        "role.presets[0]",
    )
    .expect("renders");
    let (name, doc) = r.inline_policy.expect("inline");
    assert_eq!(name, "preset-external-dns");
    assert_eq!(
        doc["Statement"][0]["Resource"],
        json!([
            "arn:aws:route53:::hostedzone/Z1",
            "arn:aws:route53:::hostedzone/Z2"
        ])
    );
    let all = render(p, &BTreeMap::new(), &ctx(), "f").expect("renders");
    assert_eq!(
        all.inline_policy.expect("inline").1["Statement"][0]["Resource"],
        json!(["arn:aws:route53:::hostedzone/*"])
    );
    let ca = render(
        get("cluster-autoscaler").expect("preset"),
        &BTreeMap::new(),
        &ctx(),
        "f",
    )
    .expect("renders");
    let doc = ca.inline_policy.expect("inline").1;
    assert_eq!(
        doc["Statement"][0]["Condition"]["StringEquals"]["aws:ResourceTag/k8s.io/cluster-autoscaler/prod"],
        "owned"
    );
}

#[test]
fn when_selects_managed_policies_and_statements() {
    let ebs = get("aws-ebs-csi-driver").expect("preset");
    let plain = render(ebs, &BTreeMap::new(), &ctx(), "f").expect("renders");
    assert_eq!(
        plain.managed_policy_arns,
        ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"]
    );
    assert_eq!(plain.inline_policy, None);
    let kms = "arn:aws:kms:eu-west-1:111122223333:key/abc";
    let with = render(ebs, &params(&[("kmsKeyArns", kms)]), &ctx(), "f").expect("renders");
    assert_eq!(
        with.inline_policy.expect("kms").1["Statement"][0]["Resource"],
        json!([kms])
    );
    let cni = get("aws-vpc-cni").expect("preset");
    let v6 = render(cni, &params(&[("ipFamily", "ipv6")]), &ctx(), "f").expect("renders");
    assert!(v6.managed_policy_arns.is_empty());
    assert!(v6.inline_policy.is_some());
    assert_eq!(
        possible_managed_policy_arns(ebs, "aws-cn"),
        [
            "arn:aws-cn:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
            "arn:aws-cn:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicyV2"
        ]
    );
}

struct R(&'static str, BTreeMap<String, String>);
impl PresetRef for R {
    fn preset_name(&self) -> &str {
        self.0
    }
    fn preset_parameters(&self) -> &BTreeMap<String, String> {
        &self.1
    }
}

fn field_of(refs: Vec<R>) -> String {
    match resolve(&refs, &ctx()) {
        Err(Error::InvalidSpec { field, .. }) => field,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn bad_references_name_their_field() {
    assert_eq!(
        field_of(vec![R("nope", BTreeMap::new())]),
        "role.presets[0].name"
    );
    assert_eq!(
        field_of(vec![
            R("velero", params(&[("bucket", "b-1")])),
            R("external-dns", params(&[("hostedZones", "Z1")]))
        ]),
        "role.presets[1].parameters.hostedZones"
    );
    assert_eq!(
        field_of(vec![R(
            "external-dns",
            params(&[("hostedZoneIds", "Z1,arn:x")])
        )]),
        "role.presets[0].parameters.hostedZoneIds"
    );
    assert_eq!(
        field_of(vec![R("velero", BTreeMap::new())]),
        "role.presets[0].parameters.bucket"
    );
    assert_eq!(
        field_of(vec![R("aws-vpc-cni", params(&[("ipFamily", "ipv5")]))]),
        "role.presets[0].parameters.ipFamily"
    );
    assert_eq!(
        field_of(vec![
            R("prometheus", BTreeMap::new()),
            R("prometheus", BTreeMap::new())
        ]),
        "role.presets[1].name"
    );
}

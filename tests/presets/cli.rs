//! `presets` and `presets show`, and the docs' presets table.

use super::*;

// ---------------------------------------------------------------------------------------
// The command line

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn presets_lists_every_preset_with_its_policies_parameters_and_source() {
    let table = stdout_of(&["presets"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["NAME", "POLICIES", "PARAMETERS", "SOURCE"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), presets::all().len(), "{table}");
    for (row, p) in rows.iter().zip(presets::all()) {
        assert!(row.starts_with(&format!("{} ", p.name)), "{row}");
        assert!(
            row.contains(&format!("{}@{}", p.source.repository, p.source.release)),
            "{row}"
        );
        for param in &p.parameters {
            assert!(row.contains(&param.name), "{row}: {}", param.name);
        }
    }
    let ebs = rows
        .iter()
        .find(|r| r.starts_with("aws-ebs-csi-driver "))
        .expect("ebs row");
    assert!(
        ebs.contains("AmazonEBSCSIDriverPolicy|AmazonEBSCSIDriverPolicyV2, inline"),
        "{ebs}"
    );
    let velero = rows.iter().find(|r| r.starts_with("velero ")).expect("row");
    assert!(velero.contains("bucket (required)"), "{velero}");

    let listed: Value = serde_json::from_str(&stdout_of(&["presets", "-o", "json"])).expect("JSON");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), presets::all().len());
    for (item, p) in listed.iter().zip(presets::all()) {
        assert_eq!(item["name"], json!(p.name));
        assert_eq!(item["source"]["release"], json!(p.source.release));
        assert_eq!(item["source"]["repository"], json!(p.source.repository));
        assert_eq!(item["checked"], json!(p.checked));
        assert_eq!(
            item["possibleManagedPolicyArns"],
            json!(presets::possible_managed_policy_arns(p, "aws"))
        );
        assert_eq!(item["inline"], json!(!p.statements.is_empty()));
        let names: Vec<&str> = item["parameters"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        let expected: Vec<&str> = p.parameters.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, expected, "{}", p.name);
    }
}

#[test]
fn presets_show_prints_what_the_operator_renders_for_the_cluster_and_parameters() {
    let cluster_arn = "arn:aws:eks:eu-west-1:444455556666:cluster/prod-eu";
    assert_eq!(Context::of_cluster_arn(cluster_arn), Some(sample()));
    for v in variants() {
        let mut args = vec![
            "presets".to_owned(),
            "show".to_owned(),
            v.preset.name.clone(),
            "--cluster-arn".to_owned(),
            cluster_arn.to_owned(),
        ];
        for (k, value) in &v.parameters {
            args.push("--param".into());
            args.push(format!("{k}={value}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown: Value = serde_json::from_str(&stdout_of(&args)).expect("JSON");
        let r = v.render(&sample());
        assert_eq!(shown["name"], json!(v.preset.name));
        assert_eq!(
            shown["managedPolicyArns"],
            json!(r.managed_policy_arns),
            "{}",
            v.id()
        );
        let (name, doc) = r
            .inline_policy
            .map_or((Value::Null, Value::Null), |(n, d)| (json!(n), d));
        assert_eq!(shown["inlinePolicyName"], name, "{}", v.id());
        assert_eq!(shown["inlinePolicy"], doc, "{}", v.id());
        assert_eq!(shown["cluster"]["accountId"], "444455556666");
    }

    // Without a cluster: region, account and cluster name are `*`.
    let any: Value = serde_json::from_str(&stdout_of(&[
        "presets",
        "show",
        "karpenter",
        "--param",
        "nodeRoleName=KarpenterNodeRole-x",
    ]))
    .expect("JSON");
    assert!(
        any["inlinePolicy"]
            .to_string()
            .contains("arn:aws:iam::*:role/KarpenterNodeRole-x"),
        "{any}"
    );
    let ebs: Value =
        serde_json::from_str(&stdout_of(&["presets", "show", "aws-ebs-csi-driver"])).expect("JSON");
    assert_eq!(
        ebs["managedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"])
    );
    assert_eq!(ebs["inlinePolicy"], Value::Null);

    // Refusals: exit status 1 (2 for a malformed flag) and a message naming the problem.
    for (args, status, says) in [
        (
            &["presets", "show", "velero"][..],
            1,
            "needs parameter bucket",
        ),
        (&["presets", "show", "nope"][..], 1, "no such preset"),
        (
            &[
                "presets",
                "show",
                "velero",
                "--param",
                "bucket=b-1",
                "--param",
                "region=x",
            ][..],
            1,
            "parameters.region",
        ),
        (
            &[
                "presets",
                "show",
                "velero",
                "--param",
                "bucket=b-1",
                "--param",
                "bucket=b-2",
            ][..],
            1,
            "given twice",
        ),
        (
            &["presets", "show", "velero", "--param", "bucket"][..],
            2,
            "KEY=VALUE",
        ),
        (
            &["presets", "show", "velero", "--cluster-arn", "prod"][..],
            1,
            "not an EKS cluster ARN",
        ),
    ] {
        let out = cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn the_docs_table_lists_every_preset_with_its_parameters_and_release() {
    let page = include_str!("../../docs/presets.md");
    let section = page
        .split("\n## The presets\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/presets.md has a section The presets");
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    assert_eq!(rows.len(), presets::all().len(), "{rows:#?}");
    for (row, p) in rows.iter().zip(presets::all()) {
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cells[0], format!("| `{}`", p.name), "{row}");
        assert!(row.contains(&p.source.release), "{row}");
        assert!(row.contains(&p.source.repository), "{row}");
        for param in &p.parameters {
            assert!(
                cells[2].contains(&format!("`{}`", param.name)),
                "{row}: {}",
                param.name
            );
            assert_eq!(
                cells[2].contains(&format!("`{}` (required)", param.name)),
                param.required(),
                "{row}: {}",
                param.name
            );
        }
        for arn in presets::possible_managed_policy_arns(p, "aws") {
            let name = arn.rsplit('/').next().unwrap_or(&arn);
            assert!(cells[1].contains(&format!("`{name}`")), "{row}: {name}");
        }
        assert_eq!(
            cells[1].contains("inline"),
            !p.statements.is_empty(),
            "{row}"
        );
    }
}

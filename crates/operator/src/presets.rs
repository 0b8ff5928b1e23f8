//! Policy presets: the permissions of add-ons most clusters run, kept as data
//! (`presets/<name>.yaml`, one file per add-on, embedded in the binary) and rendered
//! into AWS managed policy ARNs and one inline policy document per preset.
//!
//! Each file states the upstream source it was written from (repository, path,
//! release) and the date it was checked, its parameters (with defaults, value patterns
//! or allowed values), the AWS managed policies it attaches and the statements of its
//! inline document. Strings may name `${parameter}` and the built-ins `${partition}`,
//! `${region}`, `${accountId}` and `${cluster}` (the cluster's name), taken from the
//! cluster the binding is reconciled in. A list parameter (`list: true`) is a
//! comma-separated value: a string naming it becomes one string per item. A statement
//! or managed policy with `when: p` is kept only when parameter `p` is not empty,
//! `when: p=v` only when `p` is `v`.
//!
//! Everything here is pure: [`render`] and [`resolve`] turn a preset reference into
//! policies or an [`Error::InvalidSpec`] naming the field.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cli::presets::{ListFormat, PresetsArgs, PresetsCommand};
use crate::guardrails::escalation::Escalation;
use crate::{Error, Result};

/// The preset files, by name.
const FILES: &[(&str, &str)] = &[
    (
        "adot-collector",
        include_str!("../presets/adot-collector.yaml"),
    ),
    (
        "amazon-cloudwatch-observability",
        include_str!("../presets/amazon-cloudwatch-observability.yaml"),
    ),
    (
        "aws-ebs-csi-driver",
        include_str!("../presets/aws-ebs-csi-driver.yaml"),
    ),
    (
        "aws-efs-csi-driver",
        include_str!("../presets/aws-efs-csi-driver.yaml"),
    ),
    (
        "aws-for-fluent-bit",
        include_str!("../presets/aws-for-fluent-bit.yaml"),
    ),
    (
        "aws-fsx-csi-driver",
        include_str!("../presets/aws-fsx-csi-driver.yaml"),
    ),
    (
        "aws-gateway-api-controller",
        include_str!("../presets/aws-gateway-api-controller.yaml"),
    ),
    (
        "aws-load-balancer-controller",
        include_str!("../presets/aws-load-balancer-controller.yaml"),
    ),
    (
        "aws-mountpoint-s3-csi-driver",
        include_str!("../presets/aws-mountpoint-s3-csi-driver.yaml"),
    ),
    (
        "aws-node-termination-handler",
        include_str!("../presets/aws-node-termination-handler.yaml"),
    ),
    (
        "aws-privateca-issuer",
        include_str!("../presets/aws-privateca-issuer.yaml"),
    ),
    ("aws-vpc-cni", include_str!("../presets/aws-vpc-cni.yaml")),
    ("cert-manager", include_str!("../presets/cert-manager.yaml")),
    (
        "cluster-autoscaler",
        include_str!("../presets/cluster-autoscaler.yaml"),
    ),
    ("external-dns", include_str!("../presets/external-dns.yaml")),
    (
        "external-secrets",
        include_str!("../presets/external-secrets.yaml"),
    ),
    ("karpenter", include_str!("../presets/karpenter.yaml")),
    ("prometheus", include_str!("../presets/prometheus.yaml")),
    (
        "secrets-store-csi-driver-provider-aws",
        include_str!("../presets/secrets-store-csi-driver-provider-aws.yaml"),
    ),
    ("velero", include_str!("../presets/velero.yaml")),
];

/// The prefix of the inline policy a preset adds to the role (`preset-<name>`).
pub const INLINE_POLICY_PREFIX: &str = "preset-";

/// The built-in names every preset may use.
pub const BUILT_INS: [&str; 4] = ["partition", "region", "accountId", "cluster"];

/// One preset file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub source: Source,
    /// The date (YYYY-MM-DD) the preset was last compared with its source.
    pub checked: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policies: Vec<ManagedPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<Statement>,
    /// Escalating grants the inline document holds on purpose; a guardrail rule must
    /// allow them besides the preset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
}

/// Where a preset was written from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    pub repository: String,
    pub path: String,
    pub release: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    pub description: String,
    /// Absent: the parameter is required. May name built-ins (`${cluster}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A comma-separated list of items.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub list: bool,
    /// A regular expression every value (every item of a list) must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values allowed, when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// A value for documentation and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

impl Parameter {
    pub fn required(&self) -> bool {
        self.default.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedPolicy {
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A statement of the inline document, kept when `when` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

/// Where a preset is rendered: the cluster's partition, region, account and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub cluster: String,
}

impl Context {
    /// The context of an EKS cluster ARN (`arn:<partition>:eks:<region>:<account>:cluster/<name>`).
    pub fn of_cluster_arn(arn: &str) -> Option<Context> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, partition, "eks", region, account, resource] = parts.as_slice() else {
            return None;
        };
        let cluster = resource.strip_prefix("cluster/")?;
        Some(Context {
            partition: (*partition).to_owned(),
            region: (*region).to_owned(),
            account_id: (*account).to_owned(),
            cluster: cluster.to_owned(),
        })
    }

    /// Any cluster: region, account and cluster name are `*`. Documents rendered here
    /// reach at least as far as those rendered for a real cluster; the guardrails
    /// analyse them (they are evaluated before the cluster is known).
    pub fn any() -> Context {
        Context {
            partition: "aws".into(),
            region: "*".into(),
            account_id: "*".into(),
            cluster: "*".into(),
        }
    }

    fn built_in(&self, name: &str) -> Option<&str> {
        match name {
            "partition" => Some(&self.partition),
            "region" => Some(&self.region),
            "accountId" => Some(&self.account_id),
            "cluster" => Some(&self.cluster),
            _ => None,
        }
    }
}

/// A preset rendered for a cluster and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub name: String,
    pub managed_policy_arns: Vec<String>,
    /// `preset-<name>` and its document, when the preset has statements that apply.
    pub inline_policy: Option<(String, Value)>,
}

/// Every preset, parsed once, sorted by name.
pub fn all() -> &'static [Preset] {
    static ALL: OnceLock<Vec<Preset>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, text)| match serde_yaml::from_str::<Preset>(text) {
                Ok(p) => p,
                // The files are part of the binary and parsed by the unit tests: a
                // broken one never ships.
                Err(e) => panic!("presets/{name}.yaml does not parse: {e}"),
            })
            .collect()
    })
}

/// The preset of this name.
pub fn get(name: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.name == name)
}

/// The names of all presets.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name.as_str()).collect()
}

fn invalid(field: String, message: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field,
        message: message.into(),
    }
}

/// A resolved parameter: its items (one for a scalar).
type Values = BTreeMap<String, Vec<String>>;

fn split(p: &Parameter, value: &str) -> Vec<String> {
    if p.list {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        vec![value.to_owned()]
    }
}

/// Substitutes built-ins in a default.
fn built_ins_in(text: &str, ctx: &Context) -> String {
    let mut out = text.to_owned();
    for b in BUILT_INS {
        if let Some(v) = ctx.built_in(b) {
            out = out.replace(&format!("${{{b}}}"), v);
        }
    }
    out
}

fn check_value(p: &Parameter, field: &str, value: &str) -> Result<()> {
    if !p.values.is_empty() && !p.values.iter().any(|v| v == value) {
        return Err(invalid(
            field.to_owned(),
            format!("{value:?} is not one of {}", p.values.join(", ")),
        ));
    }
    if let Some(pattern) = &p.pattern {
        let re = regex::Regex::new(pattern).map_err(|e| {
            invalid(
                field.to_owned(),
                format!("the preset's pattern does not compile: {e}"),
            )
        })?;
        for item in split(p, value) {
            if !re.is_match(&item) {
                return Err(invalid(
                    field.to_owned(),
                    format!("{item:?} does not match {pattern}"),
                ));
            }
        }
    }
    Ok(())
}

fn resolve_parameters(
    preset: &Preset,
    given: &BTreeMap<String, String>,
    ctx: &Context,
    field: &str,
) -> Result<Values> {
    for key in given.keys() {
        if !preset.parameters.iter().any(|p| &p.name == key) {
            let known: Vec<&str> = preset.parameters.iter().map(|p| p.name.as_str()).collect();
            return Err(invalid(
                format!("{field}.parameters.{key}"),
                if known.is_empty() {
                    format!("preset {} takes no parameters", preset.name)
                } else {
                    format!(
                        "preset {} has no parameter {key:?}; it takes {}",
                        preset.name,
                        known.join(", ")
                    )
                },
            ));
        }
    }
    let mut values = Values::new();
    for p in &preset.parameters {
        let pfield = format!("{field}.parameters.{}", p.name);
        let value = match (given.get(&p.name), &p.default) {
            (Some(v), _) => {
                check_value(p, &pfield, v)?;
                v.clone()
            }
            (None, Some(d)) => built_ins_in(d, ctx),
            (None, None) => {
                return Err(invalid(
                    pfield,
                    format!(
                        "preset {} needs parameter {}: {}",
                        preset.name, p.name, p.description
                    ),
                ));
            }
        };
        if p.list && given.contains_key(&p.name) && split(p, &value).is_empty() {
            // An explicit empty list is the same as leaving an optional one out.
            if p.required() {
                return Err(invalid(pfield, "give at least one item"));
            }
        }
        values.insert(p.name.clone(), split(p, &value));
    }
    Ok(values)
}

fn holds(when: Option<&str>, values: &Values) -> bool {
    let Some(when) = when else { return true };
    match when.split_once('=') {
        Some((p, v)) => values
            .get(p)
            .is_some_and(|items| items.len() == 1 && items[0] == v),
        None => values.get(when).is_some_and(|items| !items.is_empty()),
    }
}

/// Every expansion of `text`: one string per combination of list items it names.
fn expand(text: &str, values: &Values, ctx: &Context) -> std::result::Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("unclosed ${{ in {text:?}"));
        };
        let name = &rest[start + 2..start + len];
        let items: Vec<String> = match (ctx.built_in(name), values.get(name)) {
            (Some(b), _) => vec![b.to_owned()],
            (None, Some(items)) => items.clone(),
            (None, None) => return Err(format!("{text:?} names no parameter {name:?}")),
        };
        let prefix = &rest[..start];
        out = out
            .iter()
            .flat_map(|o| items.iter().map(move |i| format!("{o}{prefix}{i}")))
            .collect();
        rest = &rest[start + len + 1..];
    }
    Ok(out.into_iter().map(|o| o + rest).collect())
}

fn substitute(v: &Value, values: &Values, ctx: &Context) -> std::result::Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let mut items = expand(s, values, ctx)?;
            if items.len() == 1 {
                Value::String(items.remove(0))
            } else {
                Value::from(items)
            }
        }
        Value::Array(a) => {
            let mut out = Vec::new();
            for x in a {
                match x {
                    Value::String(s) => {
                        out.extend(expand(s, values, ctx)?.into_iter().map(Value::from))
                    }
                    other => out.push(substitute(other, values, ctx)?),
                }
            }
            Value::Array(out)
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let mut keys = expand(k, values, ctx)?;
                if keys.len() != 1 {
                    return Err(format!("key {k:?} must name no list parameter"));
                }
                out.insert(keys.remove(0), substitute(x, values, ctx)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Renders `preset` with `parameters` for `ctx`; `field` names the preset reference in
/// errors (`role.presets[0]`).
pub fn render(
    preset: &Preset,
    parameters: &BTreeMap<String, String>,
    ctx: &Context,
    field: &str,
) -> Result<Rendered> {
    let values = resolve_parameters(preset, parameters, ctx, field)?;
    let broken = |m: String| invalid(field.to_owned(), format!("preset {}: {m}", preset.name));
    let mut arns = Vec::new();
    for m in &preset.managed_policies {
        if holds(m.when.as_deref(), &values) {
            arns.extend(expand(&m.arn, &values, ctx).map_err(broken)?);
        }
    }
    let mut statements = Vec::new();
    for st in &preset.statements {
        if holds(st.when.as_deref(), &values) {
            statements
                .push(substitute(&Value::Object(st.body.clone()), &values, ctx).map_err(broken)?);
        }
    }
    let inline_policy = (!statements.is_empty()).then(|| {
        (
            format!("{INLINE_POLICY_PREFIX}{}", preset.name),
            serde_json::json!({"Version": "2012-10-17", "Statement": statements}),
        )
    });
    if arns.is_empty() && inline_policy.is_none() {
        return Err(invalid(
            field.to_owned(),
            format!(
                "preset {} grants nothing with these parameters",
                preset.name
            ),
        ));
    }
    Ok(Rendered {
        name: preset.name.clone(),
        managed_policy_arns: arns,
        inline_policy,
    })
}

/// Each parameter at each of its allowed values, `*` for one without.
fn every_value(preset: &Preset) -> Values {
    let mut values = Values::new();
    for p in &preset.parameters {
        let items = if p.values.is_empty() {
            vec!["*".to_owned()]
        } else {
            p.values.clone()
        };
        values.insert(p.name.clone(), items);
    }
    values
}

/// Every managed policy ARN `preset` can attach in `partition`, whatever its
/// parameters (a parameter with allowed values is expanded to each): what a guardrail
/// rule allowing the preset lets the operator attach.
pub fn possible_managed_policy_arns(preset: &Preset, partition: &str) -> Vec<String> {
    let values = every_value(preset);
    let ctx = Context {
        partition: partition.to_owned(),
        ..Context::any()
    };
    let mut out: Vec<String> = preset
        .managed_policies
        .iter()
        .flat_map(|m| expand(&m.arn, &values, &ctx).unwrap_or_default())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A binding's reference to a preset, as `spec.role.presets[i]` holds it.
pub trait PresetRef {
    fn preset_name(&self) -> &str;
    fn preset_parameters(&self) -> &BTreeMap<String, String>;
}

/// Renders each reference; errors name `role.presets[i]...`. A name given twice is
/// refused.
pub fn resolve<R: PresetRef>(refs: &[R], ctx: &Context) -> Result<Vec<Rendered>> {
    let mut out: Vec<Rendered> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let field = format!("role.presets[{i}]");
        let name = r.preset_name();
        let Some(preset) = get(name) else {
            return Err(invalid(
                format!("{field}.name"),
                format!("no preset is named {name:?}; `pod-identity-operator presets` lists them"),
            ));
        };
        if out.iter().any(|o| o.name == name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("preset {name} is named twice"),
            ));
        }
        out.push(render(preset, r.preset_parameters(), ctx, &field)?);
    }
    Ok(out)
}

/// A preset as `pod-identity-operator presets -o json` lists it: its file, and the
/// managed policies it can attach in the `aws` partition.
pub fn listing() -> Value {
    Value::Array(
        all()
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert(
                        "possibleManagedPolicyArns".into(),
                        Value::from(possible_managed_policy_arns(p, "aws")),
                    );
                    m.insert("inline".into(), Value::from(!p.statements.is_empty()));
                }
                v
            })
            .collect(),
    )
}

/// The managed policies of a preset by name (the ARN after `policy/`), `inline` when it
/// has an inline document: what the listing's POLICIES column shows.
pub fn grants_summary(p: &Preset) -> String {
    let values = every_value(p);
    let ctx = Context::any();
    let mut parts: Vec<String> = p
        .managed_policies
        .iter()
        .map(|m| {
            let names: Vec<String> = expand(&m.arn, &values, &ctx)
                .unwrap_or_else(|_| vec![m.arn.clone()])
                .iter()
                .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_owned())
                .collect();
            let name = names.join("|");
            match &m.when {
                Some(w) => format!("{name} (when {w})"),
                None => name,
            }
        })
        .collect();
    if !p.statements.is_empty() {
        parts.push("inline".into());
    }
    parts.join(", ")
}

/// A preset's parameters for the listing: `name` when required, `name=default`
/// otherwise (`name=` for an empty default), `-` when it takes none.
pub fn parameters_summary(p: &Preset) -> String {
    if p.parameters.is_empty() {
        return "-".into();
    }
    p.parameters
        .iter()
        .map(|x| match &x.default {
            None => format!("{} (required)", x.name),
            Some(d) => format!("{}={d}", x.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The presets as a table: name, what they grant, parameters, upstream release.
pub fn table() -> String {
    let rows: Vec<[String; 4]> = all()
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                grants_summary(p),
                parameters_summary(p),
                format!("{}@{}", p.source.repository, p.source.release),
            ]
        })
        .collect();
    let header = [
        "NAME".to_owned(),
        "POLICIES".to_owned(),
        "PARAMETERS".to_owned(),
        "SOURCE".to_owned(),
    ];
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// What `pod-identity-operator presets` prints: the list, as a table or JSON, or with
/// `show` one preset rendered ([`show`]) as JSON.
pub fn command(args: &PresetsArgs) -> Result<String> {
    match &args.command {
        None => Ok(match args.output {
            ListFormat::Table => table(),
            ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&listing())?),
        }),
        Some(PresetsCommand::Show {
            name,
            params,
            cluster_arn,
        }) => {
            let ctx = match cluster_arn {
                Some(arn) => Context::of_cluster_arn(arn).ok_or_else(|| {
                    Error::Usage(format!(
                        "--cluster-arn {arn:?} is not an EKS cluster ARN (arn:aws:eks:REGION:ACCOUNT:cluster/NAME)"
                    ))
                })?,
                None => Context::any(),
            };
            let mut parameters = BTreeMap::new();
            for (k, v) in params {
                if parameters.insert(k.clone(), v.clone()).is_some() {
                    return Err(Error::Usage(format!("--param {k} is given twice")));
                }
            }
            let shown = show(name, &parameters, &ctx)?;
            Ok(format!("{}\n", serde_json::to_string_pretty(&shown)?))
        }
    }
}

/// What `pod-identity-operator presets show` prints: the preset rendered for `ctx` with
/// `parameters`, its managed policy ARNs and its inline document.
pub fn show(name: &str, parameters: &BTreeMap<String, String>, ctx: &Context) -> Result<Value> {
    let Some(preset) = get(name) else {
        return Err(Error::Preset {
            name: name.to_owned(),
            message: format!("no such preset; there are {}", names().join(", ")),
        });
    };
    let r = render(preset, parameters, ctx, "").map_err(|e| match e {
        Error::InvalidSpec { field, message } => Error::Preset {
            name: name.to_owned(),
            message: match field.trim_start_matches('.') {
                "" => message,
                field => format!("{field}: {message}"),
            },
        },
        other => other,
    })?;
    let (inline_name, document) = match r.inline_policy {
        Some((n, d)) => (Value::from(n), d),
        None => (Value::Null, Value::Null),
    };
    Ok(serde_json::json!({
        "name": r.name,
        "cluster": {
            "partition": ctx.partition,
            "region": ctx.region,
            "accountId": ctx.account_id,
            "name": ctx.cluster,
        },
        "parameters": parameters,
        "managedPolicyArns": r.managed_policy_arns,
        "inlinePolicyName": inline_name,
        "inlinePolicy": document,
    }))
}

#[cfg(test)]
mod tests;

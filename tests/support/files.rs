//! The repository's files as the packaging suites read them: a path under the crate,
//! YAML streams parsed into JSON values, `kubectl kustomize` of a `config/` base, and
//! the lookups and comparisons on the objects they hold.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use super::kubectl::kubectl_path;

/// The crate's folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The file at `rel` under the crate; panics naming it when it cannot be read.
pub fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Replaces the file at `path` with `text` whose modification time is `mtime_secs`
/// after the epoch, the way the kubelet updates a mounted ConfigMap: written aside,
/// then renamed over, so a reader sees the old content or the new, never a half.
pub fn replace_file(path: &std::path::Path, text: &str, mtime_secs: u64) {
    let aside = path.with_extension("next");
    std::fs::write(&aside, text).unwrap_or_else(|e| panic!("writing {}: {e}", aside.display()));
    std::fs::File::options()
        .write(true)
        .open(&aside)
        .and_then(|f| {
            f.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime_secs),
            )
        })
        .unwrap_or_else(|e| panic!("setting the mtime of {}: {e}", aside.display()));
    std::fs::rename(&aside, path)
        .unwrap_or_else(|e| panic!("renaming onto {}: {e}", path.display()));
}

/// Parses a multi-document YAML stream into JSON values (empty documents dropped).
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// One YAML document as a JSON value.
pub fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}"))
}

/// `kubectl kustomize config/<base>`, as text.
pub fn kustomize_text(base: &str) -> String {
    let dir = root().join("config").join(base);
    let out = Command::new(kubectl_path())
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl kustomize {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

/// `kubectl kustomize config/<base>`, as objects.
pub fn kustomize(base: &str) -> Vec<Value> {
    yaml_docs(&kustomize_text(base))
}

/// (kind, namespace, name) of an object.
pub fn key(o: &Value) -> (String, String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

/// The object of `kind` named `name`; panics listing the objects when there is none.
pub fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {kind} {name} in {:?}",
                objs.iter().map(key).collect::<Vec<_>>()
            )
        })
}

/// The one object of `kind`; panics when there are none or several.
pub fn only<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

/// Every value of `want` is in `got` (objects compared key by key, lists item by item).
pub fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        (Value::Number(g), Value::Number(w)) => g.as_f64() == w.as_f64(),
        (g, w) => g == w,
    }
}

/// Equal as JSON values, numbers compared by value (kustomize writes `43200` where a
/// YAML parser may read `43200.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (x, y) => x == y,
    }
}

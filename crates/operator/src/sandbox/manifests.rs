//! Applying a directory (or file) of YAML manifests, as `kubectl apply -f DIR` does:
//! every `.yaml`/`.yml` file in name order (not recursively; `kustomization.yaml` is
//! skipped, it describes the others), every document in it, Namespaces first, each by
//! server-side apply after resolving its kind through discovery.
//!
//! Not implemented: kustomize transformations (the files are applied as they are),
//! pruning, waiting for CRDs applied in the same run to be established.

use std::path::{Path, PathBuf};

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

use crate::{Error, Result};

/// Field manager of the sandbox's applies.
pub const FIELD_MANAGER: &str = "pod-identity-sandbox";

/// One document read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub file: PathBuf,
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    fn describe(&self) -> String {
        let meta = &self.object["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        match meta["namespace"].as_str() {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }
}

fn manifest_error(file: &Path, message: impl Into<String>) -> Error {
    Error::Manifest {
        path: file.display().to_string(),
        message: message.into(),
    }
}

/// The files `path` stands for: itself, or the YAML files of a directory in name order.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let file = entry?.path();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with("kustomization.") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// The documents of one YAML text (empty documents skipped), each with `apiVersion`,
/// `kind` and `metadata.name`.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let object: Value = serde::Deserialize::deserialize(doc)?;
        if object.is_null() {
            continue;
        }
        for field in ["apiVersion", "kind"] {
            if !object[field].is_string() {
                return Err(manifest_error(file, format!("a document has no {field}")));
            }
        }
        if !object["metadata"]["name"].is_string() {
            return Err(manifest_error(file, "a document has no metadata.name"));
        }
        out.push(Manifest {
            file: file.to_path_buf(),
            object,
        });
    }
    Ok(out)
}

/// Every manifest under `path`, in the order they are applied: Namespaces first, the
/// rest in file and document order.
pub fn read_manifests(path: &Path) -> Result<Vec<Manifest>> {
    let mut all = Vec::new();
    for file in manifest_files(path)? {
        let text = std::fs::read_to_string(&file)?;
        all.extend(parse_documents(&file, &text)?);
    }
    all.sort_by_key(|m| m.kind() != "Namespace");
    Ok(all)
}

/// Applies every manifest under `path`; returns what was applied (`Kind ns/name`).
pub async fn apply_path(client: &kube::Client, path: &Path) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    for manifest in read_manifests(path)? {
        let api_version = manifest.object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, manifest.kind());
        let (resource, caps) = pinned_kind(client, &gvk).await?;
        let object: DynamicObject = serde_json::from_value(manifest.object.clone())?;
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = object.metadata.namespace.as_deref().unwrap_or("default");
                Api::namespaced_with(client.clone(), ns, &resource)
            }
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| {
            manifest_error(
                &manifest.file,
                format!("{} refused: {e}", manifest.describe()),
            )
        })?;
        applied.push(manifest.describe());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_and_checked() {
        let file = Path::new("x.yaml");
        let docs = parse_documents(
            file,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s, namespace: a}\n",
        )
        .expect("two documents");
        assert_eq!(
            docs.iter().map(Manifest::kind).collect::<Vec<_>>(),
            ["Namespace", "ServiceAccount"]
        );
        let err = parse_documents(file, "kind: Namespace\nmetadata: {name: a}\n")
            .expect_err("no apiVersion");
        assert!(err.to_string().contains("apiVersion"), "{err}");
        let err = parse_documents(file, "apiVersion: v1\nkind: Namespace\n").expect_err("no name");
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }

    #[test]
    fn a_directory_is_read_in_name_order_with_namespaces_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write(
            "a.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: first, namespace: n}\n",
        );
        write(
            "b.yml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: second, namespace: n}\n",
        );
        write(
            "z.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
        );
        write("kustomization.yaml", "resources: [a.yaml]\n");
        write("notes.txt", "not a manifest");
        let names: Vec<String> = read_manifests(dir.path())
            .expect("read")
            .iter()
            .map(Manifest::describe)
            .collect();
        assert_eq!(
            names,
            [
                "Namespace n",
                "ServiceAccount n/first",
                "ServiceAccount n/second"
            ]
        );
    }
}

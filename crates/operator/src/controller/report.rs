//! Writes a pass's outcome to the binding: its status, when it changed, and a Warning
//! Event for each newly reported problem and warning.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::Result;
use crate::crd::{PodIdentityBinding, PodIdentityBindingStatus};

use super::context::Context;
use super::notices;
use super::status::{self, Problem, Reason};

/// Patches the status when it changed; publishes a Warning Event when the binding
/// newly reports a problem (so a resync of a stuck binding does not repeat it), except
/// throttling, which is a normal step under load.
pub async fn write_status(
    ctx: &Context,
    binding: &PodIdentityBinding,
    new: PodIdentityBindingStatus,
    problem: Option<&Problem>,
) -> Result<()> {
    if let Some(ready) = status::ready_of(Some(&new)) {
        crate::runtime::metrics::note_reason(&ready.reason);
    }
    let old = binding.status.as_ref();
    if status::unchanged(old, &new) {
        return Ok(());
    }
    let old_warnings = old.map(|s| s.warnings.as_slice()).unwrap_or_default();
    for w in &new.warnings {
        // The association's move is announced by the pass that made it.
        if w.reason != notices::OLD_ROLE_CREDENTIALS
            && !old_warnings.iter().any(|o| o.reason == w.reason)
        {
            ctx.publish(binding, EventType::Warning, &w.reason, w.message.clone())
                .await;
        }
    }
    if let Some(p) = problem.filter(|p| p.reason != Reason::Throttled) {
        let was = status::ready_of(old).map(|c| c.reason.as_str());
        if was != Some(p.reason.as_str()) {
            ctx.publish(
                binding,
                EventType::Warning,
                p.reason.as_str(),
                p.message.clone(),
            )
            .await;
        }
    }
    let mut value = serde_json::to_value(&new)?;
    // Merge patch: fields the new status lacks are cleared explicitly.
    if let Value::Object(map) = &mut value {
        for key in [
            "observedGeneration",
            "roleArn",
            "associationArn",
            "associationId",
            "externalId",
            "serviceAccount",
            "conditions",
            "warnings",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    let api: Api<PodIdentityBinding> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    api.patch_status(
        &binding.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": value })),
    )
    .await?;
    Ok(())
}

//! A pass's outcome on the binding: the status it ends with (conditions, the
//! resources' names, warnings), written when it changed, with a Warning Event for each
//! newly reported problem and warning. The status vocabulary (reasons, conditions, their
//! merge) is [`super::status`]'s. This is the one writer of a binding's status, one that
//! cannot be read included ([`write_unreadable`]).

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::crd::{
    Condition, PodIdentityBinding, PodIdentityBindingStatus, ServiceAccountStatus, StatusWarning,
};
use crate::{Error, Result};

use super::apply::{Applied, Component};
use super::context::Context;
use super::desired::{Desired, DesiredRole};
use super::notices;
use super::observe::{Observed, ObservedServiceAccount};
use super::plan::{Action, Blocked, Plan};
use super::status::{self, Conditions, Problem, Reason, Retry, State};
use super::typed;

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

/// The status of a pass stopped before any resource was looked at: `Ready` says why.
pub fn not_ready(binding: &PodIdentityBinding, problem: &Problem) -> PodIdentityBindingStatus {
    let mut st = binding.status.clone().unwrap_or_default();
    let conditions = Conditions::not_ready(problem.reason, problem.message.clone());
    set_conditions(binding, &mut st, &conditions);
    st
}

/// The status of a pass the plan stopped, with the problem it reports: a role that
/// cannot be used fails the role condition, anything else the association's.
pub fn blocked(binding: &PodIdentityBinding, b: &Blocked) -> (PodIdentityBindingStatus, Problem) {
    let failed = State::failed(b.reason, b.message.clone());
    let role_problem = matches!(
        b.reason,
        Reason::RoleConflict | Reason::RoleNotFound | Reason::RoleTrustMissing
    );
    let conditions = Conditions {
        ready: failed.clone(),
        role: if role_problem {
            failed.clone()
        } else {
            State::unknown()
        },
        service_account: State::unknown(),
        association: if role_problem {
            State::unknown()
        } else {
            failed
        },
    };
    let mut st = binding.status.clone().unwrap_or_default();
    set_conditions(binding, &mut st, &conditions);
    let problem = Problem {
        reason: b.reason,
        message: b.message.clone(),
        retry: Retry::Slow,
    };
    (st, problem)
}

/// The warnings a full pass leaves on the status; `done` are the actions it carried out.
pub async fn warnings(
    binding: &PodIdentityBinding,
    ctx: &Context,
    desired: &Desired,
    observed: &Observed,
    done: &[Action],
) -> Vec<StatusWarning> {
    let old = binding
        .status
        .as_ref()
        .map(|s| s.warnings.as_slice())
        .unwrap_or_default();
    let kept = |reason: &str| old.iter().find(|w| w.reason == reason).cloned();
    let ns = &desired.namespace;
    let sa = &desired.service_account.name;
    let mut warnings = Vec::new();
    match ctx.agent_running().await {
        Some(true) => {}
        Some(false) => warnings.push(notices::agent_missing()),
        None => warnings.extend(kept(notices::AGENT_MISSING)),
    }
    let mut annotations = observed
        .service_account
        .as_ref()
        .map(|s| s.annotations.clone())
        .unwrap_or_default();
    annotations.extend(desired.service_account.annotations.clone());
    warnings.extend(notices::irsa(ns, sa, &annotations));

    let moved_now = done.iter().find_map(|a| match a {
        Action::UpdateAssociation(u) => u.role_arn.clone(),
        _ => None,
    });
    let from_now = observed.association.as_ref().map(|a| a.role_arn.clone());
    let moved = match (moved_now, from_now) {
        (Some(to), Some(from)) if to != from => Some((Utc::now(), from, to, true)),
        _ => notices::moved_at(old).and_then(|(since, w)| {
            notices::moved_roles(w).map(|(from, to)| (since, from, to, false))
        }),
    };
    if let Some((since, from, to, now)) = moved {
        match notices::pods_started_before(&ctx.client, ns, sa, since).await {
            Ok(pods) => {
                let warning = notices::old_role_credentials(ns, sa, &from, &to, &pods, since);
                if now {
                    ctx.publish(
                        binding,
                        EventType::Warning,
                        "AssociationRoleChanged",
                        warning.message.clone(),
                    )
                    .await;
                }
                if !pods.is_empty() {
                    warnings.push(warning);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the pods of the ServiceAccount");
                warnings.extend(kept(notices::OLD_ROLE_CREDENTIALS));
            }
        }
    }
    warnings
}

/// The status a full pass ends with: each condition says how its resource stands, and
/// one the failed action would have touched, or a later one would, waits on it.
pub fn outcome(
    binding: &PodIdentityBinding,
    desired: &Desired,
    observed: &Observed,
    plan: &Plan,
    applied: &Applied,
    problem: Option<&(usize, Problem)>,
) -> PodIdentityBindingStatus {
    let state_of = |component: Component, ok: State| -> State {
        if let Some((i, p)) = problem {
            if plan.actions[*i].component() == component {
                return State::failed(p.reason, p.message.clone());
            }
            if plan.actions[*i..]
                .iter()
                .any(|a| a.component() == component)
            {
                return State::unknown();
            }
        }
        ok
    };
    let role_ok = match &desired.role {
        DesiredRole::Existing { arn, .. } => match &desired.association.target_role_arn {
            // The operator may only GetRole an existing role, so it cannot see whether the
            // role may chain into the target: the condition says what it must allow.
            Some(target) => State::ok(
                Reason::RoleExisting,
                format!(
                    "using existing role {arn}; it must allow sts:AssumeRole and sts:TagSession on the target role {target}, which the operator cannot check (it only reads the role with GetRole)"
                ),
            ),
            None => State::ok(Reason::RoleExisting, format!("using existing role {arn}")),
        },
        DesiredRole::Managed(m) if desired.association.disable_session_tags => State::ok(
            Reason::RoleCreated,
            format!(
                "role {} is in place; its trust policy is scoped to cluster {} but not to this ServiceAccount because session tags are disabled: any Pod Identity association of that cluster may use it",
                m.arn, desired.cluster_name
            ),
        ),
        DesiredRole::Managed(m) => State::ok(
            Reason::RoleCreated,
            format!(
                "role {} is in place, trusted only by ServiceAccount {}/{} of cluster {}",
                m.arn, desired.namespace, desired.service_account.name, desired.cluster_name
            ),
        ),
    };
    let sa_name = &desired.service_account.name;
    // One taken over from an earlier binding of the same name was made by the operator.
    let ours = |s: &ObservedServiceAccount| s.owned || s.left_by_previous;
    let sa_created = observed.service_account.as_ref().is_some_and(ours)
        || (observed.service_account.is_none() && desired.service_account.create);
    let sa_ok = match &observed.service_account {
        None if !desired.service_account.create => State::failed(
            Reason::ServiceAccountNotFound,
            format!(
                "ServiceAccount {sa_name} does not exist and serviceAccount.create is false: create it, or set serviceAccount.create: true"
            ),
        ),
        Some(s) if !ours(s) => State::ok(
            Reason::ServiceAccountFound,
            format!("using existing ServiceAccount {sa_name}"),
        ),
        _ => State::ok(
            Reason::ServiceAccountCreated,
            format!("ServiceAccount {sa_name} created by the operator"),
        ),
    };
    let assoc_ok = if plan.adopting {
        State::ok(Reason::AssociationAdopted, "association adopted")
    } else {
        State::ok(Reason::AssociationCreated, "association is in place")
    };
    let role = state_of(Component::Role, role_ok);
    let service_account = state_of(Component::ServiceAccount, sa_ok);
    let association = state_of(Component::Association, assoc_ok);
    let ready = match problem {
        Some((_, p)) => State::failed(p.reason, p.message.clone()),
        None if service_account.status != "True" => service_account.clone(),
        None => State::ok(
            Reason::Reconciled,
            "role, ServiceAccount and association are in place",
        ),
    };

    let mut st = binding.status.clone().unwrap_or_default();
    if role.status == "True" {
        st.role_arn = Some(desired.role.arn().to_owned());
    }
    let association_now = applied
        .association
        .clone()
        .or_else(|| observed.association.clone());
    if association.status == "True" {
        st.association_arn = association_now.as_ref().map(|a| a.association_arn.clone());
        st.association_id = association_now.as_ref().map(|a| a.association_id.clone());
        st.external_id = association_now
            .as_ref()
            .filter(|a| a.target_role_arn.is_some())
            .and_then(|a| a.external_id.clone());
    }
    if service_account.status == "True" || problem.is_none() {
        st.service_account = Some(ServiceAccountStatus {
            name: sa_name.clone(),
            created: sa_created,
        });
    }
    set_conditions(
        binding,
        &mut st,
        &Conditions {
            ready,
            role,
            service_account,
            association,
        },
    );
    st
}

/// Sets the conditions, observed at the binding's generation.
pub fn set_conditions(
    binding: &PodIdentityBinding,
    st: &mut PodIdentityBindingStatus,
    c: &Conditions,
) {
    let generation = binding.metadata.generation;
    st.conditions = status::merge(&st.conditions, c, generation);
    st.observed_generation = generation;
}

/// Sets `Ready=False` with this reason and message on a binding that cannot be read
/// (its conditions and observed generation only) and publishes a Warning Event, unless
/// the status already says exactly that for this generation.
pub async fn write_unreadable(
    ctx: &Context,
    obj: &DynamicObject,
    reason: Reason,
    message: String,
) -> Result<()> {
    let old: Vec<Condition> = obj
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let generation = obj.metadata.generation;
    let was = old.iter().find(|c| c.type_ == "Ready");
    if was.is_some_and(|c| {
        c.reason == reason.as_str() && c.message == message && c.observed_generation == generation
    }) {
        return Ok(());
    }
    let conditions = status::merge(
        &old,
        &Conditions::not_ready(reason, message.clone()),
        generation,
    );
    ctx.publish(
        &typed::shell(obj),
        EventType::Warning,
        reason.as_str(),
        message,
    )
    .await;
    typed::raw_api(ctx.client.clone(), obj)
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": generation,
                "conditions": serde_json::to_value(&conditions).map_err(Error::from)?,
            }})),
        )
        .await?;
    Ok(())
}

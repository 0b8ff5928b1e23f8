//! Random specs, from any earlier state of the binding (or nothing): carrying out the
//! plan leaves nothing to do.

use super::*;

/// Carries out an action on the observed state, as AWS and Kubernetes would.
fn act(o: &mut Observed, a: &Action) {
    fn role_named<'a>(o: &'a mut Observed, name: &str) -> &'a mut ObservedRole {
        [o.role.as_mut(), o.previous_role.as_mut()]
            .into_iter()
            .flatten()
            .find(|r| r.role.name == name)
            .expect("the role acted on exists")
    }
    match a {
        Action::CreateServiceAccount {
            name,
            labels,
            annotations,
        } => {
            o.service_account = Some(ObservedServiceAccount {
                name: name.clone(),
                owned: true,
                left_by_previous: false,
                labels: labels.clone(),
                annotations: annotations.clone(),
            })
        }
        Action::PatchServiceAccount {
            labels,
            annotations,
            ..
        } => {
            let sa = o.service_account.as_mut().expect("sa");
            sa.labels.extend(labels.clone());
            sa.annotations.extend(annotations.clone());
        }
        Action::DeleteServiceAccount { .. } => o.previous_service_account = None,
        Action::AdoptServiceAccount { .. } => {
            let sa = o.service_account.as_mut().expect("sa");
            sa.owned = true;
            sa.left_by_previous = false;
        }
        Action::ReleaseServiceAccount { name } => {
            for sa in [
                o.service_account.as_mut(),
                o.previous_service_account.as_mut(),
            ]
            .into_iter()
            .flatten()
            .filter(|sa| &sa.name == name)
            {
                sa.owned = false;
            }
        }
        Action::CreateRole(c) => {
            o.role = Some(ObservedRole {
                role: Role {
                    name: c.name.clone(),
                    arn: format!("arn:aws:iam::{ACCOUNT}:role{}{}", c.path, c.name),
                    role_id: "AROA".into(),
                    path: c.path.clone(),
                    description: c.description.clone(),
                    max_session_duration: c.max_session_duration.unwrap_or(3600),
                    assume_role_policy: c.assume_role_policy.clone(),
                    permissions_boundary_arn: c.permissions_boundary_arn.clone(),
                    tags: c.tags.clone(),
                    created: None,
                },
                attached: Default::default(),
                inline: Default::default(),
            })
        }
        Action::UpdateAssumeRolePolicy { role, document } => {
            role_named(o, role).role.assume_role_policy = document.clone()
        }
        Action::UpdateRole {
            role,
            description,
            max_session_duration,
        } => {
            let r = role_named(o, role);
            if let Some(d) = description {
                r.role.description = Some(d.clone());
            }
            if let Some(m) = max_session_duration {
                r.role.max_session_duration = *m;
            }
        }
        Action::PutPermissionsBoundary { role, policy_arn } => {
            role_named(o, role).role.permissions_boundary_arn = Some(policy_arn.clone())
        }
        Action::DeletePermissionsBoundary { role } => {
            role_named(o, role).role.permissions_boundary_arn = None
        }
        Action::AttachPolicy { role, policy_arn } => {
            role_named(o, role).attached.insert(policy_arn.clone());
        }
        Action::DetachPolicy { role, policy_arn } => {
            role_named(o, role).attached.remove(policy_arn);
        }
        Action::PutInlinePolicy {
            role,
            name,
            document,
        } => {
            role_named(o, role)
                .inline
                .insert(name.clone(), document.clone());
        }
        Action::DeleteInlinePolicy { role, name } => {
            role_named(o, role).inline.remove(name);
        }
        Action::TagRole { role, tags } => role_named(o, role).role.tags.extend(tags.clone()),
        Action::UntagRole { role, keys } => {
            let r = role_named(o, role);
            keys.iter().for_each(|k| {
                r.role.tags.remove(k);
            });
        }
        Action::DeleteRole { role } => {
            if o.previous_role
                .as_ref()
                .is_some_and(|r| &r.role.name == role)
            {
                o.previous_role = None;
            } else {
                o.role = None;
            }
        }
        Action::CreateAssociation(c) => {
            let d_tags = c.tags.clone();
            o.association = Some(Association {
                cluster_name: c.cluster_name.clone(),
                association_id: "a-new".into(),
                association_arn: "arn:new".into(),
                namespace: c.namespace.clone(),
                service_account: c.service_account.clone(),
                role_arn: c.role_arn.clone(),
                target_role_arn: c.target_role_arn.clone(),
                disable_session_tags: c.disable_session_tags,
                session_policy: c.session_policy.clone(),
                external_id: None,
                owner_arn: None,
                tags: d_tags,
                created_at: None,
                modified_at: None,
            })
        }
        Action::UpdateAssociation(u) => {
            let a = o.association.as_mut().expect("association");
            if let Some(r) = &u.role_arn {
                a.role_arn = r.clone();
            }
            if let Some(t) = &u.target_role_arn {
                a.target_role_arn = t.clone();
            }
            if let Some(x) = u.disable_session_tags {
                a.disable_session_tags = x;
            }
            if let Some(p) = &u.session_policy {
                a.session_policy = p.clone();
            }
        }
        Action::TagAssociation { tags, .. } => o
            .association
            .as_mut()
            .expect("association")
            .tags
            .extend(tags.clone()),
        Action::UntagAssociation { keys, .. } => {
            let a = o.association.as_mut().expect("association");
            keys.iter().for_each(|k| {
                a.tags.remove(k);
            });
        }
        Action::DeleteAssociation { .. } => o.previous_association = None,
    }
}

fn spec_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let policies = proptest::sample::subsequence(
        vec![
            READ_ONLY,
            S3_READ,
            "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
        ],
        0..=3,
    );
    let inline = proptest::sample::subsequence(vec!["a", "b"], 0..=2);
    let tags = proptest::sample::subsequence(vec!["team", "env"], 0..=2);
    (
        policies,
        inline,
        tags,
        proptest::option::of("[a-z]{1,8}"),
        prop_oneof![Just(3600), Just(7200)],
        proptest::option::of(Just(READ_ONLY)),
        any::<bool>(),
        proptest::option::of(Just("arn:aws:iam::444455556666:role/t")),
    )
        .prop_map(|(p, i, t, desc, dur, boundary, no_tags, target)| {
            let mut role = json!({"managedPolicyArns": p, "maxSessionDuration": dur,
                "inlinePolicies": i.iter().map(|n| (n.to_string(), doc(&format!("s3:{n}*")))).collect::<serde_json::Map<_, _>>()});
            if let Some(d) = desc {
                role["description"] = json!(d);
            }
            if let Some(b) = boundary {
                role["permissionsBoundaryArn"] = json!(b);
            }
            let mut spec = json!({"role": role,
                "tags": t.iter().map(|k| (k.to_string(), json!(format!("{k}-v")))).collect::<serde_json::Map<_, _>>()});
            if no_tags {
                spec["disableSessionTags"] = json!(true);
                spec["sessionPolicy"] = doc("s3:GetObject");
            }
            if let Some(t) = target {
                spec["targetRoleArn"] = json!(t);
            }
            spec
        })
}

proptest::proptest! {
    /// From any earlier state of the binding (or nothing), carrying out the plan
    /// leaves nothing to do.
    #[test]
    fn carrying_out_a_plan_converges_in_one_pass(
        before in spec_strategy(),
        after in spec_strategy(),
        has_role in proptest::bool::ANY,
        has_association in proptest::bool::ANY,
        has_sa in proptest::bool::ANY,
    ) {
        let old = want(before);
        let d = want(after);
        let mut o = converged(&old);
        if !has_role { o.role = None; }
        if !has_association { o.association = None; }
        if !has_sa { o.service_account = None; }
        let first = plan(&d, &o);
        proptest::prop_assert!(first.blocked.is_none());
        for a in &first.actions {
            act(&mut o, a);
        }
        let second = plan(&d, &o);
        proptest::prop_assert_eq!(second.actions, vec![]);
    }
}

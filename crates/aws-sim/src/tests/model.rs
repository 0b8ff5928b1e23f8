//! Random sequences of calls against the simulator, checked against a plain model:
//! at most one association per ServiceAccount, lists and inventory agree, and every
//! answer is the one the model predicts.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    CreateRole(u8),
    DeleteRole(u8),
    Associate(u8, u8),
    Disassociate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8).prop_map(Op::CreateRole),
        (0..4u8).prop_map(Op::DeleteRole),
        (0..4u8, 0..4u8).prop_map(|(sa, r)| Op::Associate(sa, r)),
        (0..4u8).prop_map(Op::Disassociate),
    ]
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = sim(SimConfig::default());
        let mut roles: BTreeSet<u8> = BTreeSet::new();
        // ServiceAccount to (association id, role).
        let mut assocs: BTreeMap<u8, (String, u8)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::CreateRole(r) => {
                    let got = sim
                        .create_role(&CreateRole {
                            name: format!("role-{r}"),
                            path: "/".into(),
                            assume_role_policy: trust(),
                            ..CreateRole::default()
                        })
                        .await;
                    prop_assert_eq!(got.is_ok(), roles.insert(r));
                }
                Op::DeleteRole(r) => {
                    let got = sim.delete_role(&format!("role-{r}")).await;
                    prop_assert_eq!(got.is_ok(), roles.remove(&r));
                }
                Op::Associate(sa, r) => {
                    let input = CreateAssociation {
                        cluster_name: "c1".into(),
                        namespace: "ns".into(),
                        service_account: format!("sa-{sa}"),
                        role_arn: format!("arn:aws:iam::111122223333:role/role-{r}"),
                        ..CreateAssociation::default()
                    };
                    let got = sim.create_pod_identity_association(&input).await;
                    let expect_ok = roles.contains(&r) && !assocs.contains_key(&sa);
                    prop_assert_eq!(got.is_ok(), expect_ok, "{:?}", got);
                    if let Ok(a) = got {
                        assocs.insert(sa, (a.association_id, r));
                    }
                }
                Op::Disassociate(sa) => {
                    if let Some((id, _)) = assocs.remove(&sa) {
                        sim.delete_pod_identity_association("c1", &id)
                            .await
                            .unwrap();
                    }
                }
            }
            let listed = sim
                .list_pod_identity_associations("c1", None, None)
                .await
                .unwrap();
            let mut seen = BTreeSet::new();
            for row in &listed {
                prop_assert!(
                    seen.insert(row.service_account.clone()),
                    "one per ServiceAccount"
                );
            }
            prop_assert_eq!(listed.len(), assocs.len());
            let inv = sim.inventory();
            prop_assert_eq!(inv.associations.len(), assocs.len());
            prop_assert_eq!(inv.roles.len(), roles.len());
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_call_sequences_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

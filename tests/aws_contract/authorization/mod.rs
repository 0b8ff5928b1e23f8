//! The simulator's authorization cross-checked against moto's on the wire.
//!
//! A case is one IAM call made through `IamApi` by a caller whose identity policy is
//! the table's, after an administrator set up roles; it expects the decision AWS
//! makes. [`cross_check`](harness::cross_check) runs every case of a table twice:
//! - on the simulator (`AwsSim`, set-up in `AwsSim::as_admin`, then `enforce`), which
//!   must always decide as expected and deny as AWS does (`AccessDenied`, naming the
//!   action and the resource ARN);
//! - on moto 5.2.5 through `SdkIam`, as an IAM user holding the policy inline, with
//!   permissions enforced after set-up. moto decides as expected unless
//!   [`MOTO_PARTIAL`](moto_partial::MOTO_PARTIAL) records what it does instead, and why;
//!   either way its decision is asserted, so the record fails as soon as moto changes.
//!
//! What moto 5.2.5 evaluates (`moto/iam/access_control.py`, `moto/core/responses.py`,
//! `moto/iam/responses.py`, `moto/iam/policy_conditions.py`):
//! - the resource: `IamResponse._determine_resource` passes the role's real ARN (with
//!   its path) when the request has a `RoleName` of an existing role, else `"*"`, so a
//!   CreateRole, or a call on a missing role, is matched only by statements whose
//!   `Resource` pattern matches the literal string `*`;
//! - `Action`, `NotAction` and `Resource` patterns: `IAMPolicyStatement._match` turns
//!   `*` into `.*` and matches the rest as a case-sensitive regular expression (`?` is
//!   a regex quantifier, not a one-character wildcard; action names are compared
//!   case-sensitively);
//! - `NotResource` is not read: a statement without `Resource` is taken as a trust
//!   policy statement and answers PERMITTED whatever its `Effect`
//!   (`IAMPolicyStatement.is_action_permitted`);
//! - an explicit Deny wins over any Allow (`IAMRequestBase.check_action_permitted`);
//! - conditions: `IAMPolicyStatement._check_conditions` only compares values for the
//!   keys of `incoming_condition_values`, which identity-policy checks never pass, so
//!   every condition of an identity policy holds: a conditional Allow allows and a
//!   conditional Deny denies, whatever the request;
//! - a denial is `AccessDenied` (HTTP 403) with the message `User: <user ARN> is not
//!   authorized to perform: <action>`, naming no resource (`AccessDeniedError` in
//!   `moto/core/exceptions.py`).
//!
//! Here: the harness that runs a case on both (`harness`), moto's recorded partial
//! evaluation (`moto_partial`), and the tables, by what they exercise: the shipped
//! policy (`shipped`), condition keys (`conditions`), Deny, NotAction, action patterns
//! and NotResource (`statements`), and the policy rendered for one installation
//! (`installed`).

mod conditions;
mod harness;
mod installed;
mod moto_partial;
mod shipped;
mod statements;

use std::collections::BTreeSet;

use pod_identity_operator::naming::TAG_CLUSTER;

use conditions::{
    boundary_condition_table, policy_arn_condition_table, request_tag_condition_table,
    resource_tag_condition_table,
};
use harness::{Table, moto_decision};
use installed::installed_policy_table;
use moto_partial::MOTO_PARTIAL;
use shipped::shipped_policy_table;
use statements::{action_pattern_table, explicit_deny_table, not_action_table, not_resource_table};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

const ADMINISTRATOR: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const POWER_USER: &str = "arn:aws:iam::aws:policy/PowerUserAccess";
const CLUSTER_TAG: &str = TAG_CLUSTER;

fn all_tables() -> Vec<Table> {
    vec![
        shipped_policy_table(),
        policy_arn_condition_table(),
        boundary_condition_table(),
        resource_tag_condition_table(),
        request_tag_condition_table(),
        explicit_deny_table(),
        not_action_table(),
        action_pattern_table(),
        not_resource_table(),
        installed_policy_table(),
    ]
}

#[test]
fn case_names_are_unique_and_every_moto_record_names_a_case() {
    let tables = all_tables();
    let names: Vec<&str> = tables
        .iter()
        .flat_map(|t| t.cases.iter().map(|c| c.name))
        .collect();
    assert!(names.len() >= 20, "{} cases", names.len());
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate case names");
    let recorded: BTreeSet<&str> = MOTO_PARTIAL.iter().map(|(name, _)| *name).collect();
    assert_eq!(recorded.len(), MOTO_PARTIAL.len(), "a case recorded twice");
    for name in &recorded {
        assert!(unique.contains(name), "MOTO_PARTIAL names no case: {name}");
    }
    // Every record says what moto answers.
    for table in &tables {
        for case in &table.cases {
            moto_decision(case);
        }
    }
}

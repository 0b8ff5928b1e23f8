//! What one binding asks for, and the minimum AWS calls, by operation, that follow from
//! it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::MANAGED_POLICY;

/// What one binding asks for; the minimum AWS calls follow from it.
pub(crate) struct BindingSpec {
    pub(crate) managed_policies: Vec<&'static str>,
    pub(crate) inline_policies: BTreeMap<&'static str, Value>,
    pub(crate) tags: BTreeMap<&'static str, &'static str>,
}

impl BindingSpec {
    pub(crate) fn typical() -> Self {
        BindingSpec {
            managed_policies: vec![MANAGED_POLICY],
            inline_policies: BTreeMap::from([(
                "s3",
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench/*"}]}),
            )]),
            tags: BTreeMap::from([("team", "bench")]),
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "role": {"managedPolicyArns": self.managed_policies,
                     "inlinePolicies": self.inline_policies},
            "tags": self.tags,
        })
    }

    /// AWS reads of a pass over a binding of this spec that is already in place:
    /// GetRole, ListAttachedRolePolicies, ListRolePolicies, one GetRolePolicy per
    /// inline policy, ListPodIdentityAssociations and DescribePodIdentityAssociation.
    pub(crate) fn reads_per_converged_pass(&self) -> f64 {
        (5 + self.inline_policies.len()) as f64
    }

    /// IAM writes one binding needs: CreateRole (tags and boundary go with it), one
    /// AttachRolePolicy per managed policy, one PutRolePolicy per inline policy.
    pub(crate) fn iam_writes(&self) -> f64 {
        (1 + self.managed_policies.len() + self.inline_policies.len()) as f64
    }

    /// The fewest AWS calls per binding a cold start of this spec can make, by
    /// operation: the writes above, one CreatePodIdentityAssociation (tags go with
    /// it), the two reads that observe that nothing exists yet (GetRole,
    /// ListPodIdentityAssociations), and one DescribeCluster for the whole operator.
    pub(crate) fn minimum_calls(&self, n: usize) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("GetRole".to_owned(), 1.0);
        m.insert("ListPodIdentityAssociations".to_owned(), 1.0);
        m.insert("CreateRole".to_owned(), 1.0);
        m.insert("CreatePodIdentityAssociation".to_owned(), 1.0);
        m.insert("DescribeCluster".to_owned(), 1.0 / n as f64);
        if !self.managed_policies.is_empty() {
            m.insert(
                "AttachRolePolicy".to_owned(),
                self.managed_policies.len() as f64,
            );
        }
        if !self.inline_policies.is_empty() {
            m.insert(
                "PutRolePolicy".to_owned(),
                self.inline_policies.len() as f64,
            );
        }
        m
    }
}

"""Runs cloudsplaining's policy analysis over IAM policies, one per input line.

Reads JSON lines `{"id": N, "policy": {...}}` on stdin and prints one JSON line per
policy, in input order:

    {"id": N, "privilege_escalation": [...], "iam_write": [...]}

`privilege_escalation` holds the names of cloudsplaining's PrivilegeEscalation
findings (the methods of `PRIVILEGE_ESCALATION_METHODS` the policy allows).
`iam_write` holds the IAM actions (service prefix `iam`) of its ResourceExposure
findings (access level "Permissions management") and InfrastructureModification
findings (access levels "Write", "Permissions management" and "Tagging").

Every finding is asked for as strictly as cloudsplaining can: statements with
conditions count (`flag_conditional_statements`), and so do statements naming
resources rather than `*` (`flag_resource_arn_statements`). Anything the analyser
prints goes to stderr, so stdout carries only the verdicts.
"""

import contextlib
import json
import sys

from cloudsplaining.scan.policy_document import PolicyDocument


def verdict(policy):
    doc = PolicyDocument(
        policy,
        flag_conditional_statements=True,
        flag_resource_arn_statements=True,
    )
    escalation = sorted({e["type"] for e in doc.allows_privilege_escalation})
    writes = set(doc.permissions_management_without_constraints)
    writes.update(doc.infrastructure_modification)
    iam_write = sorted({a for a in writes if a.lower().startswith("iam:")})
    return {"privilege_escalation": escalation, "iam_write": iam_write}


def main():
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        for line in sys.stdin:
            if not line.strip():
                continue
            item = json.loads(line)
            answer = {"id": item["id"], **verdict(item["policy"])}
            out.write(json.dumps(answer) + "\n")
            out.flush()


if __name__ == "__main__":
    main()

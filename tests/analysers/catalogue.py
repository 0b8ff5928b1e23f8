"""Checks the actions and resources of IAM policies against policy_sentry's IAM action
catalogue (the database cloudsplaining reads), one policy per input line.

Reads JSON lines `{"id": N, "policy": {...}}` on stdin and prints one JSON line per
policy, in input order:

    {"id": N, "catalogue": "policy_sentry X.Y.Z", "actions": [...], "problems": [...]}

`actions` lists every action pattern of every statement as written (statement order,
then the order of `Action`), so the caller can tell that everything it meant to check
was checked, and nothing else. `problems` lists what the catalogue refutes, each as
`Statement[i] <action>: <why>`:

- an action (or a pattern with `*` and `?`, matched case-insensitively as IAM does)
  that names no action of the catalogue, or a service prefix it does not know;
- an action none of whose resource types any resource of its statement can match:
  an action the catalogue gives no resource type needs `*` (a resource naming an ARN
  grants it nothing); otherwise some resource must be able to match one of the
  action's ARN formats (a pattern overlapping the format, `*` overlapping everything);
- a resource that no action of its statement can use (an ARN matching none of the
  formats of the statement's actions).

Statements with `NotAction` or `NotResource` are reported as problems too: the check
cannot judge them. Anything the library prints goes to stderr.
"""

import contextlib
import fnmatch
import functools
import importlib.metadata
import json
import re
import sys

from policy_sentry.querying.actions import get_action_data, get_actions_for_service

FORMAT_VARIABLE = re.compile(r"\$\{[^}]*\}")


def tokens(pattern, variables_are_wildcards):
    """A pattern as tokens: a character, `?` (one character) or `*` (any run)."""
    out = []
    i = 0
    while i < len(pattern):
        if variables_are_wildcards and pattern.startswith("${", i):
            end = pattern.find("}", i)
            if end != -1:
                out.append("*")
                i = end + 1
                continue
        c = pattern[i]
        if c in "*?":
            out.append(c)
        else:
            out.append(("c", c))
        i += 1
    return tuple(out)


def overlap(a, b):
    """True when some string matches both token patterns."""

    @functools.lru_cache(maxsize=None)
    def go(i, j):
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*" and go(i + 1, j):
            return True
        if j < len(b) and b[j] == "*" and go(i, j + 1):
            return True
        if i < len(a) and j < len(b):
            x, y = a[i], b[j]
            if x == "*" and y != "*":
                return go(i, j + 1)
            if y == "*" and x != "*":
                return go(i + 1, j)
            if x != "*" and y != "*":
                if x == "?" or y == "?" or x == y:
                    return go(i + 1, j + 1)
        return False

    return go(0, 0)


def resource_matches(resource, arn_format):
    """Whether the policy's resource pattern can name a resource of this ARN format
    (`*`: the action has no resource type, and only `*` names it)."""
    policy = tokens(resource, variables_are_wildcards=True)
    if arn_format == "*":
        return all(t == "*" for t in policy)
    return overlap(policy, tokens(arn_format, variables_are_wildcards=True))


@functools.lru_cache(maxsize=None)
def service_actions(prefix):
    return tuple(get_actions_for_service(prefix))


def catalogue_actions(pattern):
    """The catalogue's actions a pattern names (its service prefix written exactly)."""
    if ":" not in pattern:
        return None, "not service:action"
    prefix, name = pattern.split(":", 1)
    if any(c in prefix for c in "*?"):
        return None, "a wildcard in the service prefix is not checked"
    known = service_actions(prefix.lower())
    if not known:
        return None, f"the catalogue knows no service {prefix!r}"
    wanted = pattern.lower()
    found = [a for a in known if fnmatch.fnmatchcase(a.lower(), wanted)]
    if not found:
        return None, "the catalogue has no such action"
    return found, None


@functools.lru_cache(maxsize=None)
def arn_formats(action):
    prefix, name = action.split(":", 1)
    rows = get_action_data(prefix, name).get(prefix, [])
    return tuple(sorted({r["resource_arn_format"] for r in rows}))


def strings(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)]


def check(policy):
    actions_seen = []
    problems = []
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for i, st in enumerate(statements):
        where = f"Statement[{i}]"
        for key in ("NotAction", "NotResource"):
            if key in st:
                problems.append(f"{where}: {key} is not checked")
        resources = strings(st.get("Resource"))
        formats_of = {}
        for pattern in strings(st.get("Action")):
            actions_seen.append(pattern)
            found, why = catalogue_actions(pattern)
            if found is None:
                problems.append(f"{where} {pattern}: {why}")
                continue
            formats = sorted({f for a in found for f in arn_formats(a)})
            formats_of[pattern] = formats
            if not any(resource_matches(r, f) for r in resources for f in formats):
                problems.append(
                    f"{where} {pattern}: no resource of the statement ({', '.join(resources)}) "
                    f"can match its resource types ({', '.join(formats)})"
                )
        if formats_of:
            for r in resources:
                if not any(
                    resource_matches(r, f) for formats in formats_of.values() for f in formats
                ):
                    problems.append(
                        f"{where} {r}: no action of the statement can use this resource "
                        f"({', '.join(sorted(formats_of))})"
                    )
    return {"actions": actions_seen, "problems": problems}


def main():
    out = sys.stdout
    version = "policy_sentry " + importlib.metadata.version("policy_sentry")
    with contextlib.redirect_stdout(sys.stderr):
        for line in sys.stdin:
            if not line.strip():
                continue
            item = json.loads(line)
            answer = {"id": item["id"], "catalogue": version, **check(item["policy"])}
            out.write(json.dumps(answer) + "\n")
            out.flush()


if __name__ == "__main__":
    main()

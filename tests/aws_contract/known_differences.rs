//! Where moto and ministack answer differently from AWS: one table, consulted by the
//! contract cases. A case asks [`known`] whether the server behind a backend has the
//! difference it is about to meet; where it has none (always for the simulator, in
//! process or behind its HTTP front) the case holds the answer to AWS's documented one,
//! and where it has one the case asserts the server's own answer through
//! [`Difference::holds`], so an entry fails as soon as its server starts behaving like
//! AWS. docs/testing.md's contract section shows this table (`the_testing_page_lists_them`
//! keeps the two alike).
//!
//! References are to the IAM API reference
//! (https://docs.aws.amazon.com/IAM/latest/APIReference/API_<Operation>.html), the IAM
//! User Guide's policy grammar and element pages and its quotas page
//! (reference_iam-quotas.html), and the EKS API reference
//! (https://docs.aws.amazon.com/eks/latest/APIReference/API_<Operation>.html).

use std::fmt::{Debug, Display};

use pod_identity_operator::aws::Result;

/// Which implementation answers one API (IAM or EKS) of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The simulator, in process or behind its HTTP front: held to AWS's answers.
    Simulator,
    Moto,
    Ministack,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Simulator => "simulator",
            Server::Moto => "moto",
            Server::Ministack => "ministack",
        }
    }
}

/// What a server answers where AWS answers otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It accepts the request, which AWS refuses.
    Accepts,
    /// It refuses the request with this error code, where AWS accepts it or answers
    /// another.
    Refuses(&'static str),
    /// Another answer (a value read back, an id's form), which the case checks with
    /// [`Difference::holds_that`].
    Other,
}

pub struct Difference {
    /// What the cases name it by.
    pub id: &'static str,
    pub servers: &'static [Server],
    pub operation: &'static str,
    /// What AWS answers, and where AWS documents it.
    pub aws: &'static str,
    /// What the servers answer instead.
    pub server_answers: &'static str,
    pub answer: Answer,
}

const MOTO: &[Server] = &[Server::Moto];
const MINISTACK: &[Server] = &[Server::Ministack];
const BOTH: &[Server] = &[Server::Moto, Server::Ministack];

/// moto 5.2.5 and ministack 1.5.33 (`tests/servers/requirements.txt`).
pub const KNOWN: &[Difference] = &[
    // ---- IAM: roles ----
    Difference {
        id: "role-name-format",
        servers: BOTH,
        operation: "CreateRole",
        aws: "`ValidationError`: RoleName is 1 to 64 of `[\\w+=,.@-]` (CreateRole, RoleName)",
        server_answers: "accepts 65 characters, an empty name, spaces, `/`, non-ASCII",
        answer: Answer::Accepts,
    },
    Difference {
        id: "role-name-case",
        servers: BOTH,
        operation: "CreateRole, GetRole",
        aws: "`EntityAlreadyExists` for a name differing only in case, and GetRole finds a \
              role by any case (IAM identifiers page: names are not distinguished by case)",
        server_answers: "creates a second role; GetRole in another case is `NoSuchEntity`",
        answer: Answer::Accepts,
    },
    Difference {
        id: "role-path-format",
        servers: BOTH,
        operation: "CreateRole",
        aws: "`ValidationError`: Path is `/` or `/`...`/` of printable ASCII, at most 512 \
              (CreateRole, Path)",
        server_answers: "accepts any path",
        answer: Answer::Accepts,
    },
    Difference {
        id: "role-session-duration-range",
        servers: BOTH,
        operation: "CreateRole, UpdateRole",
        aws: "`ValidationError` outside 3600 to 43200 (CreateRole and UpdateRole, \
              MaxSessionDuration)",
        server_answers: "accepts any number",
        answer: Answer::Accepts,
    },
    Difference {
        id: "update-role-keeps-duration",
        servers: MOTO,
        operation: "UpdateRole",
        aws: "leaves MaxSessionDuration as it is when the request leaves it out \
              (UpdateRole; its parameter text repeats CreateRole's one-hour default, which \
              moto applies)",
        server_answers: "resets it to 3600",
        answer: Answer::Other,
    },
    // ---- IAM: trust policies ----
    Difference {
        id: "create-role-trust-policy-unchecked",
        servers: MOTO,
        operation: "CreateRole",
        aws: "`MalformedPolicyDocument` for a trust policy outside the grammar (CreateRole \
              errors; policy grammar page)",
        server_answers: "accepts any trust policy (it checks them on UpdateAssumeRolePolicy)",
        answer: Answer::Accepts,
    },
    Difference {
        id: "trust-policy-grammar-unchecked",
        servers: MINISTACK,
        operation: "CreateRole, UpdateAssumeRolePolicy",
        aws: "`MalformedPolicyDocument` without Version or Statement, for an Effect other \
              than Allow or Deny, a Resource, or an action other than `sts:*` (policy \
              grammar page; role terms page)",
        server_answers: "accepts them (it refuses `Allow` with NotPrincipal only)",
        answer: Answer::Accepts,
    },
    Difference {
        id: "trust-policy-principal-required",
        servers: BOTH,
        operation: "CreateRole, UpdateAssumeRolePolicy",
        aws: "`MalformedPolicyDocument` for a trust statement without a principal \
              (Principal element page)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "trust-policy-not-principal",
        servers: MOTO,
        operation: "UpdateAssumeRolePolicy",
        aws: "`MalformedPolicyDocument` for NotPrincipal in a role trust policy \
              (NotPrincipal element page)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "trust-policy-principal-type",
        servers: BOTH,
        operation: "CreateRole, UpdateAssumeRolePolicy",
        aws: "`MalformedPolicyDocument` for a principal type other than AWS, Service, \
              Federated, CanonicalUser (policy grammar page)",
        server_answers: "accepts any type",
        answer: Answer::Accepts,
    },
    Difference {
        id: "trust-policy-oidc-provider",
        servers: BOTH,
        operation: "CreateRole, UpdateAssumeRolePolicy",
        aws: "`MalformedPolicyDocument` \"Invalid principal in policy\" for a Federated \
              principal naming an OIDC provider the account lacks (CreateRole errors)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "trust-policy-size-quota",
        servers: BOTH,
        operation: "CreateRole, UpdateAssumeRolePolicy",
        aws: "`LimitExceeded` \"Cannot exceed quota for ACLSizePerRole: 2048\" past 2,048 \
              characters, whitespace not counted (IAM quotas page)",
        server_answers: "accepts any size",
        answer: Answer::Accepts,
    },
    // ---- IAM: managed and inline policies ----
    Difference {
        id: "managed-policies-quota",
        servers: BOTH,
        operation: "AttachRolePolicy",
        aws: "`LimitExceeded` \"Cannot exceed quota for PoliciesPerRole: 10\" for an 11th \
              policy (AttachRolePolicy errors; IAM quotas page)",
        server_answers: "attaches any number",
        answer: Answer::Accepts,
    },
    Difference {
        id: "attach-missing-policy",
        servers: MINISTACK,
        operation: "AttachRolePolicy",
        aws: "`NoSuchEntity` for a policy ARN that names no policy (AttachRolePolicy errors)",
        server_answers: "attaches it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "policy-version-unchecked",
        servers: MINISTACK,
        operation: "PutRolePolicy",
        aws: "`MalformedPolicyDocument` \"Policy document must be version 2012-10-17 or \
              greater.\" without Version or with another (Version element page)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "identity-policy-elements-unchecked",
        servers: MINISTACK,
        operation: "PutRolePolicy",
        aws: "`MalformedPolicyDocument` for an action without its service, a resource not \
              an ARN, repeated Sids, an unknown condition operator or element (element \
              pages)",
        server_answers: "accepts them (it checks Effect, Action and Resource are there)",
        answer: Answer::Accepts,
    },
    Difference {
        id: "identity-policy-principal",
        servers: BOTH,
        operation: "PutRolePolicy",
        aws: "`MalformedPolicyDocument` for a Principal in an identity-based policy \
              (Principal element page)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "sid-format",
        servers: BOTH,
        operation: "PutRolePolicy",
        aws: "`MalformedPolicyDocument` for a Sid of other than ASCII letters and digits \
              (Sid element page)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "numeric-condition-values",
        servers: MOTO,
        operation: "PutRolePolicy",
        aws: "accepts unquoted numbers and booleans as condition values (policy grammar \
              page: quotation marks are optional for them)",
        server_answers: "`MalformedPolicyDocument` \"Syntax errors in policy.\"",
        answer: Answer::Refuses("MalformedPolicyDocument"),
    },
    Difference {
        id: "inline-policies-size-quota",
        servers: BOTH,
        operation: "PutRolePolicy",
        aws: "`LimitExceeded` \"Maximum policy size of 10240 bytes exceeded for role ...\" \
              past 10,240 characters for the role, whitespace not counted (IAM quotas page)",
        server_answers: "accepts any size",
        answer: Answer::Accepts,
    },
    Difference {
        id: "policy-document-characters",
        servers: BOTH,
        operation: "CreateRole, UpdateAssumeRolePolicy, PutRolePolicy",
        aws: "`ValidationError` for characters outside tab, LF, CR and U+0020 to U+00FF \
              (PolicyDocument pattern)",
        server_answers: "accepts any character",
        answer: Answer::Accepts,
    },
    // ---- IAM: tags and instance profiles ----
    Difference {
        id: "role-tags-quota",
        servers: MOTO,
        operation: "TagRole",
        aws: "`LimitExceeded` when the role would hold more than 50 tags (TagRole errors; \
              IAM quotas page)",
        server_answers: "checks 50 tags per request, not the role's total",
        answer: Answer::Accepts,
    },
    Difference {
        id: "role-tags-quota",
        servers: MINISTACK,
        operation: "TagRole",
        aws: "`LimitExceeded` when the role would hold more than 50 tags (TagRole errors; \
              IAM quotas page)",
        server_answers: "accepts any number",
        answer: Answer::Accepts,
    },
    Difference {
        id: "role-tag-rules",
        servers: MINISTACK,
        operation: "TagRole",
        aws: "`ValidationError` for a key over 128 or a value over 256 characters, or \
              more than 50 tags in one request (TagRole, Tags; Tag data type)",
        server_answers: "accepts any length and number",
        answer: Answer::Accepts,
    },
    Difference {
        id: "list-instance-profiles-missing-role",
        servers: MOTO,
        operation: "ListInstanceProfilesForRole",
        aws: "`NoSuchEntity` for a role that does not exist (ListInstanceProfilesForRole \
              errors)",
        server_answers: "an empty list",
        answer: Answer::Other,
    },
    // ---- EKS Pod Identity ----
    Difference {
        id: "association-id-format",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "ids of `a-` and 17 lowercase letters and digits (EKS User Guide examples, \
              `a-abcdefghijklmnop1`)",
        server_answers: "`a-` and 16 hexadecimal digits",
        answer: Answer::Other,
    },
    Difference {
        id: "association-client-request-token",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "a repeat with the same clientRequestToken and input answers the first \
              association (clientRequestToken: idempotency of the request)",
        server_answers: "`ResourceInUseException`, as for a second association",
        answer: Answer::Refuses("ResourceInUseException"),
    },
    Difference {
        id: "association-role-must-exist",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "`InvalidParameterException` \"Role provided in the request does not exist\" \
              (CreatePodIdentityAssociation errors)",
        server_answers: "associates the missing role",
        answer: Answer::Accepts,
    },
    Difference {
        id: "association-role-arn-format",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "`InvalidParameterException` for a roleArn that is not an IAM role ARN \
              (CreatePodIdentityAssociation errors)",
        server_answers: "stores any string",
        answer: Answer::Accepts,
    },
    Difference {
        id: "association-cross-account-role",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "`InvalidParameterException` \"Cross-account pass role is not allowed\" \
              (CreatePodIdentityAssociation, roleArn; targetRoleArn reaches another account)",
        server_answers: "associates the other account's role",
        answer: Answer::Accepts,
    },
    Difference {
        id: "association-tags",
        servers: MINISTACK,
        operation: "TagResource, UntagResource",
        aws: "tags an association by its ARN, `NotFoundException` for one that does not \
              exist (TagResource, resourceArn)",
        server_answers: "`InvalidParameterException` \"Invalid resourceArn\"",
        answer: Answer::Refuses("InvalidParameterException"),
    },
    Difference {
        id: "association-update-clears",
        servers: MINISTACK,
        operation: "UpdatePodIdentityAssociation",
        aws: "an empty targetRoleArn or policy removes it (UpdatePodIdentityAssociation)",
        server_answers: "keeps both",
        answer: Answer::Other,
    },
    Difference {
        id: "association-session-policy-needs-disabled-tags",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "`InvalidParameterException` for a policy while session tags are enabled \
              (CreatePodIdentityAssociation, policy: disableSessionTags must be true)",
        server_answers: "accepts it",
        answer: Answer::Accepts,
    },
    Difference {
        id: "association-session-policy-grammar",
        servers: MINISTACK,
        operation: "CreatePodIdentityAssociation",
        aws: "`InvalidParameterException` for a policy over 2,048 characters, without \
              Version or Resource, or with a Principal (policy; STS AssumeRole Policy)",
        server_answers: "stores any document",
        answer: Answer::Accepts,
    },
];

/// `server`'s difference `id`, or `None` where it answers as AWS does (the simulator
/// always does). Panics on an id the table lacks, so a case cannot name one by mistake.
pub fn known(server: Server, id: &str) -> Option<&'static Difference> {
    assert!(
        KNOWN.iter().any(|d| d.id == id),
        "no known difference `{id}` in known_differences.rs"
    );
    KNOWN
        .iter()
        .find(|d| d.id == id && d.servers.contains(&server))
}

/// The first of `ids` that `server` has.
pub fn first_known(server: Server, ids: &[&str]) -> Option<&'static Difference> {
    ids.iter().find_map(|id| known(server, id))
}

impl Difference {
    /// Asserts that the server still answers `r` as this entry records (it accepts, or
    /// refuses with the recorded code); `what` names the request.
    #[track_caller]
    pub fn holds<T: Debug>(&self, r: &Result<T>, what: impl Display) {
        match (self.answer, r) {
            (Answer::Accepts, Ok(_)) => {}
            (Answer::Refuses(code), Err(e)) if e.aws().is_some_and(|a| a.code == code) => {}
            (Answer::Other, _) => panic!("`{}` is checked with holds_that", self.id),
            (_, r) => self.stale(format_args!("{what}: answered {r:?}")),
        }
    }

    /// Asserts a difference of [`Answer::Other`] kind, or a detail of another.
    #[track_caller]
    pub fn holds_that(&self, still: bool, detail: impl Display) {
        if !still {
            self.stale(detail);
        }
    }

    #[track_caller]
    fn stale(&self, detail: impl Display) -> ! {
        panic!(
            "known difference `{}` ({} {}: {}) no longer holds: {detail}. If the server now \
             answers as AWS does ({}), remove it from known_differences.rs and docs/testing.md",
            self.id,
            self.servers
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
            self.operation,
            self.server_answers,
            self.aws,
        )
    }
}

/// The table as docs/testing.md shows it.
pub fn markdown() -> String {
    let mut out = String::from(
        "| Server | Operation | AWS answers | The server answers |\n|---|---|---|---|\n",
    );
    for d in KNOWN {
        let servers: Vec<&str> = d.servers.iter().map(|s| s.name()).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            servers.join(", "),
            d.operation,
            d.aws,
            d.server_answers
        ));
    }
    out
}

#[test]
fn entries_are_distinct_and_every_one_is_consulted() {
    let cases = [
        include_str!("cases/mod.rs"),
        include_str!("cases/roles.rs"),
        include_str!("cases/policies.rs"),
        include_str!("cases/grammar.rs"),
        include_str!("cases/eks.rs"),
    ]
    .concat();
    for (i, d) in KNOWN.iter().enumerate() {
        assert!(!d.servers.is_empty(), "{}", d.id);
        assert!(!d.servers.contains(&Server::Simulator), "{}", d.id);
        for other in &KNOWN[..i] {
            assert!(
                other.id != d.id || !other.servers.iter().any(|s| d.servers.contains(s)),
                "`{}` twice for one server",
                d.id
            );
        }
        assert!(
            cases.contains(&format!("\"{}\"", d.id)),
            "no case consults `{}`",
            d.id
        );
    }
}

#[test]
fn the_testing_page_lists_them() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/testing.md"))
        .expect("docs/testing.md");
    let table = markdown();
    assert!(
        page.contains(&table),
        "docs/testing.md's contract section must hold the known differences as \
         known_differences::markdown() renders them:\n{table}"
    );
}

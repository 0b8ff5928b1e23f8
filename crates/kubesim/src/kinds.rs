//! What names a resource, and which object names a kind accepts.

/// A group and a resource (plural), the key under which objects are stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    /// `configmaps`, or `leases.coordination.k8s.io`, as the real server names them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Which names a kind accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 label: at most 63 characters, `[a-z0-9-]`, alphanumeric at both ends.
    Label,
    /// RFC 1123 subdomain: at most 253 characters, labels joined by dots.
    Subdomain,
    /// Anything that can sit in a URL path segment (Events).
    PathSegment,
}

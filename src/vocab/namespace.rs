//! Linux namespaces, by the words job files and the container's config use for them.

use std::fmt;

/// A Linux namespace a job can be given its own copy of.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    Pid,
    Mount,
    Uts,
    Ipc,
    /// A network namespace of its own has only a loopback interface: no network.
    Net,
    User,
    Cgroup,
}

impl Namespace {
    /// Every namespace, in the order messages list them.
    pub const ALL: [Namespace; 7] = [
        Namespace::Pid,
        Namespace::Mount,
        Namespace::Uts,
        Namespace::Ipc,
        Namespace::Net,
        Namespace::User,
        Namespace::Cgroup,
    ];

    /// The word for it in job files, the container's config and messages.
    pub const fn word(self) -> &'static str {
        match self {
            Namespace::Pid => "pid",
            Namespace::Mount => "mount",
            Namespace::Uts => "uts",
            Namespace::Ipc => "ipc",
            Namespace::Net => "net",
            Namespace::User => "user",
            Namespace::Cgroup => "cgroup",
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_as_its_word() {
        for ns in Namespace::ALL {
            let json = serde_json::to_string(&ns).unwrap();
            assert_eq!(json, format!("\"{}\"", ns.word()));
            assert_eq!(serde_json::from_str::<Namespace>(&json).unwrap(), ns);
            assert_eq!(ns.to_string(), ns.word());
        }
    }
}

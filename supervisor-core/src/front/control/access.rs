//! Who may use the control socket, besides root and the supervisor's own
//! user: the uids and groups of an [`AccessPolicy`], checked against a
//! peer's `SO_PEERCRED` when it connects.

use std::fs;

/// Who besides root and the supervisor's own user may use the socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// More uids to serve.
    pub uids: Vec<u32>,
    /// Groups whose members (primary or supplementary) are served.
    pub gids: Vec<u32>,
}

impl AccessPolicy {
    /// Whether anybody beyond root and the owner is allowed (then the
    /// socket file is made reachable and `SO_PEERCRED` alone decides).
    #[must_use]
    pub fn is_open(&self) -> bool {
        !self.uids.is_empty() || !self.gids.is_empty()
    }

    /// Decides for a peer with these credentials.
    #[must_use]
    pub fn allows(&self, uid: u32, gid: u32, pid: i32) -> bool {
        if uid == 0 || uid == nix::unistd::geteuid().as_raw() || self.uids.contains(&uid) {
            return true;
        }
        if self.gids.is_empty() {
            return false;
        }
        self.gids.contains(&gid) || supplementary_groups(pid).iter().any(|g| self.gids.contains(g))
    }
}

fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

//! Groups of services with a restart strategy, as Erlang supervisors and
//! simplevisor's `type = supervisor` entries have them.
//!
//! A group starts its members in order (each once the one before it is up,
//! or has given up) and stops them in reverse order. When a member fails
//! (its process dies while it is wanted running, or a check finds an
//! external service stopped or dirty), the [`Strategy`] says what happens
//! to the others.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happens to the other members when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Only the failed member is restarted (by its own policy).
    #[default]
    OneForOne,
    /// Every other member is stopped (in reverse order) and started again
    /// (in order), after the failed one is back up.
    OneForAll,
    /// The members after the failed one are stopped (in reverse order) and
    /// started again (in order).
    RestForOne,
}

impl Strategy {
    /// `"one_for_one"`, `"one_for_all"` or `"rest_for_one"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }

    /// Parses the names [`Strategy::as_str`] gives.
    #[must_use]
    pub fn parse(text: &str) -> Option<Strategy> {
        [Strategy::OneForOne, Strategy::OneForAll, Strategy::RestForOne].into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named group of services.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The members' names, in start order.
    pub services: Vec<String>,
    /// What a member's failure does to the others.
    pub strategy: Strategy,
}

impl Group {
    /// A group of `services` (started in this order) with `strategy`.
    pub fn new(name: impl Into<String>, services: Vec<String>, strategy: Strategy) -> Group {
        Group { name: name.into(), services, strategy }
    }

    /// The members that a failure of the member at `pos` restarts besides
    /// itself, as positions in [`Group::services`].
    #[must_use]
    pub fn affected_by(&self, pos: usize) -> Vec<usize> {
        match self.strategy {
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => (0..self.services.len()).filter(|&i| i != pos).collect(),
            Strategy::RestForOne => (pos + 1..self.services.len()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_pick_the_members_to_restart() {
        let g = |strategy| Group { name: "g".into(), services: vec!["a".into(), "b".into(), "c".into()], strategy };
        assert!(g(Strategy::OneForOne).affected_by(1).is_empty());
        assert_eq!(g(Strategy::OneForAll).affected_by(1), [0, 2]);
        assert_eq!(g(Strategy::RestForOne).affected_by(0), [1, 2]);
        assert!(g(Strategy::RestForOne).affected_by(2).is_empty());
        assert_eq!(Strategy::parse("rest_for_one"), Some(Strategy::RestForOne));
        assert_eq!(Strategy::parse("one-for-one"), None);
    }
}

//! Groups: members start in order and stop in reverse, and a member's
//! failure restarts the others as the group's strategy says.

use super::Engine;
use crate::machine::Event;
use crate::model::Group;
use crate::model::ServiceState;

impl Engine {
    /// Sets the groups (replacing any). Members are named; a name without
    /// a service is skipped until a service of that name is added. Call it
    /// before adding the services, so that they start in order.
    pub fn set_groups(&mut self, groups: Vec<Group>) {
        self.nudge();
        self.groups = groups;
        self.advance_groups();
        self.drain_queue();
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group of a slot and its position in it.
    pub(super) fn group_of(&self, idx: usize) -> Option<(usize, usize)> {
        let name = &self.slots[idx].svc.name;
        self.groups.iter().enumerate().find_map(|(g, grp)| grp.services.iter().position(|s| s == name).map(|p| (g, p)))
    }

    /// The live slots of a group's members, in order.
    fn members_of(&self, g: usize) -> Vec<Option<usize>> {
        self.groups[g]
            .services
            .iter()
            .map(|n| self.by_name.get(n).copied().filter(|&i| !self.slots[i].retired))
            .collect()
    }

    /// Releases held stops (in reverse order: once every later member is
    /// down) and held starts (in order: once every earlier member is up or
    /// has given up, and nothing in the group is being stopped).
    pub(super) fn advance_groups(&mut self) {
        for g in 0..self.groups.len() {
            let members = self.members_of(g);
            let idxs: Vec<usize> = members.iter().flatten().copied().collect();
            // Stops, last member first: a member is stopped once every
            // later one is down; it stays held until it is down itself.
            for (k, &idx) in idxs.iter().enumerate().rev() {
                if !self.slots[idx].held_stop {
                    continue;
                }
                if self.slots[idx].group_stop_sent && self.is_down(idx) {
                    self.slots[idx].held_stop = false;
                    self.slots[idx].group_stop_sent = false;
                    continue;
                }
                if !self.slots[idx].group_stop_sent && idxs[k + 1..].iter().all(|&j| !self.slots[j].held_stop) {
                    self.slots[idx].group_stop_sent = true;
                    self.queue.push_back((idx, Event::Stop));
                }
                break;
            }
            if idxs.iter().any(|&j| self.slots[j].held_stop) {
                continue;
            }
            // Starts, first member first.
            for (k, &idx) in idxs.iter().enumerate() {
                if !self.slots[idx].held_start {
                    continue;
                }
                let earlier_up = idxs[..k].iter().all(|&j| !self.slots[j].held_start && self.slots[j].m.is_settled());
                if earlier_up {
                    self.slots[idx].held_start = false;
                    self.queue.push_back((idx, Event::Start));
                }
                break;
            }
        }
    }

    /// A command overrides what a group held back.
    pub(super) fn release_holds(&mut self, idx: usize) {
        self.slots[idx].held_start = false;
        self.slots[idx].held_stop = false;
        self.slots[idx].group_stop_sent = false;
    }

    /// Whether a slot has nothing running and is at rest.
    pub(super) fn is_down(&self, idx: usize) -> bool {
        let s = &self.slots[idx];
        s.leader.is_none() && s.members.is_empty() && s.m.is_at_rest()
    }

    /// Called when a member failed: applies its group's strategy to the
    /// others (stopped in reverse order, started again in order).
    pub(super) fn member_failed(&mut self, idx: usize) {
        if self.shutting_down {
            return;
        }
        let Some((g, pos)) = self.group_of(idx) else { return };
        let affected = self.groups[g].affected_by(pos);
        if affected.is_empty() {
            return;
        }
        let members = self.members_of(g);
        log::warn!(
            "{}: failed; restarting {} other member(s) of group {} ({})",
            self.slots[idx].svc.name,
            affected.len(),
            self.groups[g].name,
            self.groups[g].strategy
        );
        for p in affected {
            let Some(j) = members[p] else { continue };
            if !self.slots[j].m.want_up() {
                continue;
            }
            self.slots[j].held_stop = true;
            self.slots[j].held_start = true;
        }
    }

    /// Whether an event turned a running member into a failed one: a
    /// daemon that was up (past `min_uptime`) died while wanted, or a check
    /// found a running external service stopped or dirty and repairs it.
    /// A member that keeps failing before it is up restarts no one else.
    pub(super) fn is_failure(
        external: bool,
        before: ServiceState,
        after: ServiceState,
        event: &Event,
        want_up: bool,
    ) -> bool {
        use ServiceState as S;
        if !want_up || before != S::Running {
            return false;
        }
        match event {
            Event::Exited { .. } if !external => true,
            Event::Exited { .. } | Event::Found { .. } => matches!(after, S::Starting | S::Stopping),
            _ => false,
        }
    }
}

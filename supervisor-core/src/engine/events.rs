//! State-change events for subscribers: one per transition, in order,
//! through bounded channels that never block the engine, and to control
//! clients that asked for `events`; the last [`EVENT_HISTORY`] are kept
//! for `events --since-start`.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::SystemTime;

use serde_json::Value;

use super::frontend::{ClientId, FrontId};
use super::Engine;
use crate::model::protocol::{Event, Response, EVENT_HISTORY};
use crate::model::{ExitStatus, ServiceState};

/// How many events wait for a slow subscriber before new ones are dropped
/// (and counted in [`SupervisorStatus::events_dropped`]).
///
/// [`SupervisorStatus::events_dropped`]: crate::SupervisorStatus::events_dropped
pub const EVENT_BACKLOG: usize = 4096;

/// A service went from one state to another.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The service.
    pub service: String,
    /// The state before.
    pub from: ServiceState,
    /// The state now.
    pub to: ServiceState,
    /// The service's main process now (for `starting`, the one just
    /// spawned), or, when it has none any more, the one it had.
    pub pid: Option<i32>,
    /// How the main process ended, when that is what changed the state.
    pub exit: Option<ExitStatus>,
    /// When (wall clock).
    pub at: SystemTime,
    /// The change's number, from 1 at the engine's start, without gaps.
    pub seq: u64,
    /// The service is ready now: a change to `running` is the moment it
    /// became ready (for a service with a ready check, when it said so or
    /// its probe passed).
    pub ready: bool,
    /// Why, when the service was stopped or failed: a failed health check
    /// or a missed watchdog ("health check failed 3 times in a row: ...",
    /// "watchdog: ..."), not ready in time, a command, a dependency.
    pub reason: Option<String>,
}

impl StateChange {
    /// The change as the control protocol streams it.
    #[must_use]
    pub fn to_event(&self) -> Event {
        let time = self.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Event {
            seq: self.seq,
            service: self.service.clone(),
            from: self.from,
            to: self.to,
            pid: self.pid,
            exit: self.exit,
            time,
            ready: self.ready,
            reason: self.reason.clone(),
        }
    }
}

/// A control client that follows the changes (`events`).
#[derive(Debug)]
struct Watcher {
    front: FrontId,
    client: ClientId,
    /// Its request's id, repeated on every line.
    id: Value,
    /// The services it follows; `None` for all.
    names: Option<Vec<String>>,
}

impl Watcher {
    fn wants(&self, change: &StateChange) -> bool {
        self.names.as_ref().is_none_or(|n| n.contains(&change.service))
    }
}

/// The subscribers, what they missed, and the recent changes.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    senders: Vec<SyncSender<StateChange>>,
    watchers: Vec<Watcher>,
    /// Events not delivered because a subscriber's backlog was full.
    pub(super) dropped: u64,
    /// The number of the last change.
    pub(super) seq: u64,
    /// The last [`EVENT_HISTORY`] changes.
    history: VecDeque<StateChange>,
}

impl Subscribers {
    pub(super) fn add(&mut self, tx: SyncSender<StateChange>) {
        self.senders.push(tx);
    }

    /// Whether a channel subscriber listens.
    pub(super) fn any(&self) -> bool {
        !self.senders.is_empty()
    }

    /// Keeps `change` in the history.
    fn remember(&mut self, change: StateChange) {
        if self.history.len() == EVENT_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change);
    }

    /// Hands `change` to every subscriber; forgets those that hung up.
    pub(super) fn send(&mut self, change: &StateChange) {
        let dropped = &mut self.dropped;
        self.senders.retain(|tx| match tx.try_send(change.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                *dropped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

impl Engine {
    /// A receiver of every state change of every service from now on, in
    /// the order they happen: a [`StateChange`] per transition.
    ///
    /// The engine never waits for a subscriber: each has a backlog of
    /// [`EVENT_BACKLOG`] events, past which new events are dropped for it
    /// and counted ([`SupervisorStatus::events_dropped`]). Dropping the
    /// receiver unsubscribes.
    ///
    /// [`SupervisorStatus::events_dropped`]: crate::SupervisorStatus::events_dropped
    pub fn subscribe(&mut self) -> Receiver<StateChange> {
        let (tx, rx) = sync_channel(EVENT_BACKLOG);
        self.events.add(tx);
        rx
    }

    /// Tells the subscribers that service `idx` went from `from` to `to`;
    /// `exit` is how its process ended, when that caused it, and
    /// `old_pid` the process it had before.
    pub(super) fn emit(
        &mut self,
        idx: usize,
        from: ServiceState,
        to: ServiceState,
        exit: Option<ExitStatus>,
        old_pid: Option<i32>,
    ) {
        let s = &self.slots[idx];
        self.events.seq += 1;
        let change = StateChange {
            service: s.svc.name.clone(),
            from,
            to,
            pid: s.leader.or(old_pid),
            exit,
            at: SystemTime::now(),
            seq: self.events.seq,
            ready: to == ServiceState::Running,
            reason: match to {
                ServiceState::Running | ServiceState::Starting => None,
                _ => s.m.error().map(str::to_owned).or_else(|| s.stopped_by.clone()),
            },
        };
        if self.events.any() {
            self.events.send(&change);
        }
        if !self.events.watchers.is_empty() {
            let mut watchers = std::mem::take(&mut self.events.watchers);
            watchers.retain(|w| !w.wants(&change) || self.stream_to(w, &change));
            self.events.watchers = watchers;
        }
        self.events.remember(change);
    }

    /// Sends `change` to a watcher; false when it is gone.
    fn stream_to(&mut self, w: &Watcher, change: &StateChange) -> bool {
        let line = Response::with_event(w.id.clone(), change.to_event());
        self.fronts.get_mut(w.front).is_some_and(|f| f.stream(w.client, &line))
    }

    /// `events`: client `client` of front end `front` (the control
    /// socket) follows the changes of `names` (all when `None`) from now
    /// on, after those kept since the start when `since_start`; answered
    /// at once.
    pub(super) fn watch(&mut self, to: (FrontId, ClientId), id: Value, names: Option<Vec<String>>, since_start: bool) {
        let (front, client) = to;
        let w = Watcher { front, client, id, names };
        let acked = self.fronts.get_mut(front).is_some_and(|f| f.stream(client, &Response::ok(w.id.clone())));
        if !acked {
            return;
        }
        if since_start {
            let past: Vec<StateChange> = self.events.history.iter().filter(|c| w.wants(c)).cloned().collect();
            for change in &past {
                if !self.stream_to(&w, change) {
                    return;
                }
            }
        }
        self.events.watchers.push(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u32) -> StateChange {
        StateChange {
            service: format!("s{n}"),
            from: ServiceState::Stopped,
            to: ServiceState::Starting,
            pid: None,
            exit: None,
            at: SystemTime::UNIX_EPOCH,
            seq: u64::from(n) + 1,
            ready: false,
            reason: None,
        }
    }

    #[test]
    fn a_full_subscriber_loses_events_and_they_are_counted() {
        let mut subs = Subscribers::default();
        let (slow_tx, slow) = sync_channel(2);
        let (fast_tx, fast) = sync_channel(100);
        subs.senders.extend([slow_tx, fast_tx]);
        for n in 0..5 {
            subs.send(&change(n));
        }
        assert_eq!(subs.dropped, 3);
        assert_eq!(slow.try_iter().map(|c| c.service).collect::<Vec<_>>(), ["s0", "s1"]);
        assert_eq!(fast.try_iter().count(), 5, "one slow subscriber costs the others nothing");
    }

    #[test]
    fn a_dropped_receiver_unsubscribes() {
        let mut subs = Subscribers::default();
        let (tx, rx) = sync_channel(1);
        subs.senders.push(tx);
        drop(rx);
        subs.send(&change(0));
        assert!(!subs.any());
        assert_eq!(subs.dropped, 0);
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_last_changes() {
        let mut subs = Subscribers::default();
        for n in 0..EVENT_HISTORY as u64 + 10 {
            let mut c = StateChange {
                service: "s".into(),
                from: ServiceState::Stopped,
                to: ServiceState::Starting,
                pid: None,
                exit: None,
                at: SystemTime::UNIX_EPOCH,
                seq: 0,
                ready: false,
                reason: None,
            };
            c.seq = n + 1;
            subs.remember(c);
        }
        assert_eq!(subs.history.len(), EVENT_HISTORY);
        assert_eq!(subs.history.front().map(|c| c.seq), Some(11));
    }
}

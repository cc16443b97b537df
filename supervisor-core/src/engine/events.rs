//! State-change events for subscribers: one per transition, in order,
//! through bounded channels that never block the engine.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::SystemTime;

use super::Engine;
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
}

/// The subscribers and what they missed.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    senders: Vec<SyncSender<StateChange>>,
    /// Events not delivered because a subscriber's backlog was full.
    pub(super) dropped: u64,
}

impl Subscribers {
    pub(super) fn add(&mut self, tx: SyncSender<StateChange>) {
        self.senders.push(tx);
    }

    /// Whether anybody listens (so that no event is built for nobody).
    pub(super) fn any(&self) -> bool {
        !self.senders.is_empty()
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
        if !self.events.any() {
            return;
        }
        let s = &self.slots[idx];
        let change = StateChange {
            service: s.svc.name.clone(),
            from,
            to,
            pid: s.leader.or(old_pid),
            exit,
            at: SystemTime::now(),
        };
        self.events.send(&change);
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

//! Finished runs as they happen, for live logs (`/api/executions/stream`).
//!
//! Each subscriber has a bounded buffer of its own. Publishing never waits:
//! an event that does not fit is dropped for that subscriber alone and
//! counted, and the subscriber is told how many it missed before its next
//! event. So a slow reader loses events, never slows runs, and never learns
//! how busy another tenant is (it counts only its own misses).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::model::{ExecutionId, ExecutionStatus, FailureKind, ScriptId, TenantId, Trigger};
use crate::sandbox::LogLine;

/// Events a subscriber may have waiting before newer ones are dropped.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// A run that has finished and whose record is committed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExecutionEvent {
    pub id: ExecutionId,
    pub script_id: ScriptId,
    pub script_version: i64,
    pub trigger_type: Trigger,
    pub status: ExecutionStatus,
    pub attempt: i64,
    pub error_type: Option<FailureKind>,
    pub error_message: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<LogLine>,
    pub duration_us: i64,
    pub fuel_used: i64,
    pub memory_peak_bytes: i64,
    /// When the record was committed, ms since the Unix epoch.
    pub finished_at_ms: i64,
    #[serde(skip)]
    pub tenant_id: TenantId,
}

/// What one subscriber receives.
#[derive(Debug)]
pub enum Received {
    Event(Arc<ExecutionEvent>),
    /// This many events did not fit in the buffer since the last one read.
    Missed(u64),
    /// The node is shutting down: no more events.
    Closed,
}

struct Subscriber {
    tenant_id: TenantId,
    script_id: Option<ScriptId>,
    sender: mpsc::Sender<Arc<ExecutionEvent>>,
    missed: Arc<AtomicU64>,
}

/// The node's subscribers to finished runs.
#[derive(Clone, Default)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    /// Number of subscribers, read without the lock on every run.
    count: AtomicUsize,
    next_id: AtomicU64,
    /// Set at shutdown: subscriptions end, new ones end at once.
    closed: std::sync::atomic::AtomicBool,
}

impl Events {
    /// Finished runs of `tenant_id` (of one script, if given) from now on,
    /// until the subscription is dropped.
    pub fn subscribe(&self, tenant_id: TenantId, script_id: Option<ScriptId>) -> Subscription {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        let missed = Arc::new(AtomicU64::new(0));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = self.inner.subscribers.lock().expect("events lock");
        if self.inner.closed.load(Ordering::Acquire) {
            drop(sender);
        } else {
            subscribers.insert(
                id,
                Subscriber {
                    tenant_id,
                    script_id,
                    sender,
                    missed: missed.clone(),
                },
            );
        }
        self.inner.count.store(subscribers.len(), Ordering::Release);
        Subscription {
            id,
            events: self.clone(),
            receiver,
            missed,
        }
    }

    /// Hands `event` to every subscriber it concerns, never waiting.
    pub fn publish(&self, event: ExecutionEvent) {
        if self.inner.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let event = Arc::new(event);
        let subscribers = self.inner.subscribers.lock().expect("events lock");
        for subscriber in subscribers.values() {
            let wanted = subscriber.tenant_id == event.tenant_id
                && subscriber
                    .script_id
                    .as_ref()
                    .is_none_or(|id| *id == event.script_id);
            if wanted && subscriber.sender.try_send(event.clone()).is_err() {
                subscriber.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends every subscription (at shutdown, so open streams do not hold
    /// the listener open); later ones end at once.
    pub fn close(&self) {
        let mut subscribers = self.inner.subscribers.lock().expect("events lock");
        self.inner.closed.store(true, Ordering::Release);
        subscribers.clear();
        self.inner.count.store(0, Ordering::Release);
    }

    /// Subscribers on this node.
    pub fn subscribers(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.inner.subscribers.lock().expect("events lock");
        subscribers.remove(&id);
        self.inner.count.store(subscribers.len(), Ordering::Release);
    }
}

/// One subscriber's end; unsubscribes when dropped.
pub struct Subscription {
    id: u64,
    events: Events,
    receiver: mpsc::Receiver<Arc<ExecutionEvent>>,
    missed: Arc<AtomicU64>,
}

impl Subscription {
    /// The next thing to tell the subscriber: first how many events it
    /// missed, if any, then the next event.
    pub async fn next(&mut self) -> Received {
        let missed = self.missed.swap(0, Ordering::Relaxed);
        if missed > 0 {
            return Received::Missed(missed);
        }
        match self.receiver.recv().await {
            Some(event) => Received::Event(event),
            // The registry dropped the sender: the node is stopping.
            None => Received::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.events.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::LogLevel;

    fn event(tenant: &str, script: &str, n: i64) -> ExecutionEvent {
        ExecutionEvent {
            id: ExecutionId::generate(),
            script_id: ScriptId::from(script),
            script_version: 1,
            trigger_type: Trigger::Manual,
            status: ExecutionStatus::Completed,
            attempt: n,
            error_type: None,
            error_message: None,
            logs: vec![LogLine {
                level: LogLevel::Info,
                message: format!("run {n}"),
                at_ms: 0,
            }],
            duration_us: 10,
            fuel_used: 1,
            memory_peak_bytes: 1,
            finished_at_ms: 0,
            tenant_id: TenantId::from(tenant),
        }
    }

    async fn attempts(sub: &mut Subscription, n: usize) -> Vec<i64> {
        let mut seen = Vec::new();
        for _ in 0..n {
            match sub.next().await {
                Received::Event(e) => seen.push(e.attempt),
                Received::Missed(m) => seen.push(-(m as i64)),
                Received::Closed => seen.push(i64::MIN),
            }
        }
        seen
    }

    #[tokio::test]
    async fn a_subscriber_gets_its_tenants_and_scripts_events_only() {
        let events = Events::default();
        let mut all = events.subscribe(TenantId::from("t1"), None);
        let mut one = events.subscribe(TenantId::from("t1"), Some(ScriptId::from("s2")));
        events.publish(event("t2", "s1", 1));
        events.publish(event("t1", "s1", 2));
        events.publish(event("t1", "s2", 3));
        assert_eq!(attempts(&mut all, 2).await, vec![2, 3]);
        assert_eq!(attempts(&mut one, 1).await, vec![3]);
        assert_eq!(events.subscribers(), 2);
        drop(all);
        drop(one);
        assert_eq!(events.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_misses_events_and_is_told_how_many() {
        let events = Events::default();
        let mut slow = events.subscribe(TenantId::from("t"), None);
        let total = SUBSCRIBER_BUFFER as i64 + 10;
        for n in 0..total {
            events.publish(event("t", "s", n));
        }
        // Another tenant's events do not count as missed.
        for n in 0..50 {
            events.publish(event("other", "s", n));
        }
        let first = attempts(&mut slow, 1).await;
        assert_eq!(first, vec![-10], "told of the 10 that did not fit first");
        let rest = attempts(&mut slow, SUBSCRIBER_BUFFER).await;
        assert_eq!(rest, (0..SUBSCRIBER_BUFFER as i64).collect::<Vec<_>>());
        events.publish(event("t", "s", 999));
        assert_eq!(attempts(&mut slow, 1).await, vec![999]);
    }

    #[tokio::test]
    async fn closing_ends_every_subscription_now_and_later() {
        let events = Events::default();
        let mut open = events.subscribe(TenantId::from("t"), None);
        events.close();
        assert_eq!(attempts(&mut open, 1).await, vec![i64::MIN]);
        let mut late = events.subscribe(TenantId::from("t"), None);
        assert_eq!(attempts(&mut late, 1).await, vec![i64::MIN]);
        assert_eq!(events.subscribers(), 0);
    }
}

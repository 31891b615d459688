//! Fair shares of the sandbox between tenants.
//!
//! Every run takes a slot of the [`TenantGate`] before it takes a sandbox
//! instance. At most `pool_max` slots are out at once, and at most
//! `tenant_max_concurrent` to one tenant. A run that finds no slot waits in
//! its tenant's queue, which holds at most `tenant_max_queued` runs; past
//! that the run is refused ([`TenantBusy`]) and the caller answers 429 or
//! skips the occurrence.
//!
//! Waiting order is round-robin between tenants: when a slot frees, the next
//! tenant in the ring that has a waiting run and is under its own cap gets
//! it, and goes to the back of the ring. So a tenant with one waiting run is
//! served before another tenant's hundredth, however the hundred arrived.
//!
//! The gate keeps only a wake-up channel per waiting run; what the run needs
//! (its input above all) stays in the database until the slot is granted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The tenant's queue is full: the run was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant} has {queued} runs waiting already, the most allowed; try again later")]
pub struct TenantBusy {
    pub tenant: String,
    pub queued: usize,
}

#[derive(Default)]
struct TenantState {
    running: usize,
    waiting: VecDeque<oneshot::Sender<()>>,
}

struct State {
    running: usize,
    tenants: HashMap<String, TenantState>,
    /// Tenants with waiting runs, in the order they will be served.
    ring: VecDeque<String>,
}

struct Inner {
    // A std Mutex: nothing awaits while it is held.
    state: Mutex<State>,
    max_running: usize,
    tenant_max_running: usize,
    tenant_max_queued: usize,
}

/// Admission of runs to the sandbox, fair between tenants. Cheap to clone.
#[derive(Clone)]
pub struct TenantGate(Arc<Inner>);

/// A run's slot; dropping it frees the slot for the next waiting run.
pub struct Slot {
    gate: TenantGate,
    tenant: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(&self.tenant);
    }
}

/// A place in a tenant's queue; [`Ticket::wait`] resolves to the slot.
pub struct Ticket {
    gate: TenantGate,
    tenant: String,
    granted: Option<oneshot::Receiver<()>>,
}

impl Ticket {
    /// Waits until the run's turn comes.
    pub async fn wait(mut self) -> Slot {
        let granted = self.granted.take().expect("a ticket is waited for once");
        // The gate never drops a waiting sender without sending.
        let _ = granted.await;
        Slot {
            gate: self.gate.clone(),
            tenant: std::mem::take(&mut self.tenant),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Given up before its turn came: leave the queue, or pass on a slot
        // granted meanwhile.
        if let Some(mut granted) = self.granted.take() {
            granted.close();
            if granted.try_recv().is_ok() {
                self.gate.release(&self.tenant);
            }
        }
    }
}

/// Whether a run got a slot at once or must wait for one.
pub enum Admission {
    Now(Slot),
    Wait(Ticket),
}

/// A tenant's share of the gate, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantLoad {
    pub running: usize,
    pub waiting: usize,
}

impl TenantGate {
    pub fn new(max_running: usize, tenant_max_running: usize, tenant_max_queued: usize) -> Self {
        Self(Arc::new(Inner {
            state: Mutex::new(State {
                running: 0,
                tenants: HashMap::new(),
                ring: VecDeque::new(),
            }),
            max_running: max_running.max(1),
            tenant_max_running: tenant_max_running.max(1),
            tenant_max_queued,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a run of `tenant` now, a place in its queue, or
    /// [`TenantBusy`] when the queue is full.
    pub fn admit(&self, tenant: &str) -> Result<Admission, TenantBusy> {
        let mut state = self.lock();
        let free = state.running < self.0.max_running;
        let entry = state.tenants.entry(tenant.to_owned()).or_default();
        // Tickets given up leave closed senders behind; drop them first.
        entry.waiting.retain(|tx| !tx.is_closed());
        if free && entry.running < self.0.tenant_max_running && entry.waiting.is_empty() {
            entry.running += 1;
            state.running += 1;
            return Ok(Admission::Now(Slot {
                gate: self.clone(),
                tenant: tenant.to_owned(),
            }));
        }
        if entry.waiting.len() >= self.0.tenant_max_queued {
            let queued = entry.waiting.len();
            if entry.waiting.is_empty() && entry.running == 0 {
                state.tenants.remove(tenant);
            }
            return Err(TenantBusy {
                tenant: tenant.to_owned(),
                queued,
            });
        }
        let (tx, rx) = oneshot::channel();
        entry.waiting.push_back(tx);
        if !state.ring.iter().any(|t| t == tenant) {
            state.ring.push_back(tenant.to_owned());
        }
        // A slot may be free while this tenant is at its own cap; nothing
        // to hand out then, the next release will look again.
        Ok(Admission::Wait(Ticket {
            gate: self.clone(),
            tenant: tenant.to_owned(),
            granted: Some(rx),
        }))
    }

    /// Runs of `tenant` holding a slot and waiting for one.
    pub fn load(&self, tenant: &str) -> TenantLoad {
        let state = self.lock();
        state
            .tenants
            .get(tenant)
            .map(|t| TenantLoad {
                running: t.running,
                waiting: t.waiting.iter().filter(|tx| !tx.is_closed()).count(),
            })
            .unwrap_or_default()
    }

    fn release(&self, tenant: &str) {
        let mut state = self.lock();
        state.running -= 1;
        if let Some(entry) = state.tenants.get_mut(tenant) {
            entry.running -= 1;
            if entry.running == 0 && entry.waiting.is_empty() {
                state.tenants.remove(tenant);
            }
        }
        self.hand_out(&mut state);
    }

    /// Gives free slots to waiting runs, round-robin between tenants.
    fn hand_out(&self, state: &mut State) {
        // Each pass over the ring either grants a slot or finds every
        // waiting tenant at its cap.
        let mut passed = 0;
        while state.running < self.0.max_running && passed < state.ring.len() {
            let tenant = state.ring.pop_front().expect("the ring is not empty");
            let Some(entry) = state.tenants.get_mut(&tenant) else {
                continue;
            };
            if entry.running >= self.0.tenant_max_running {
                state.ring.push_back(tenant);
                passed += 1;
                continue;
            }
            let mut granted = false;
            while let Some(tx) = entry.waiting.pop_front() {
                if tx.send(()).is_ok() {
                    granted = true;
                    break;
                }
            }
            if granted {
                entry.running += 1;
                state.running += 1;
                passed = 0;
            }
            if !entry.waiting.is_empty() {
                state.ring.push_back(tenant);
            } else if entry.running == 0 {
                state.tenants.remove(&tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(admission: Result<Admission, TenantBusy>) -> Slot {
        match admission {
            Ok(Admission::Now(slot)) => slot,
            Ok(Admission::Wait(_)) => panic!("expected a slot at once, got a place in the queue"),
            Err(busy) => panic!("{busy}"),
        }
    }

    fn wait(admission: Result<Admission, TenantBusy>) -> Ticket {
        match admission {
            Ok(Admission::Wait(ticket)) => ticket,
            Ok(Admission::Now(_)) => panic!("expected to wait"),
            Err(busy) => panic!("{busy}"),
        }
    }

    #[tokio::test]
    async fn one_tenant_cannot_take_every_slot() {
        let gate = TenantGate::new(4, 2, 10);
        let a1 = now(gate.admit("a"));
        let _a2 = now(gate.admit("a"));
        let a3 = wait(gate.admit("a"));
        // Another tenant still gets a slot at once.
        let _b1 = now(gate.admit("b"));
        assert_eq!(
            gate.load("a"),
            TenantLoad {
                running: 2,
                waiting: 1
            }
        );
        drop(a1);
        let _a3 = a3.wait().await;
        assert_eq!(
            gate.load("a"),
            TenantLoad {
                running: 2,
                waiting: 0
            }
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_given_up_places_free_up() {
        let gate = TenantGate::new(1, 1, 2);
        let _running = now(gate.admit("a"));
        let first = wait(gate.admit("a"));
        let _second = wait(gate.admit("a"));
        let busy = gate.admit("a").err().expect("the queue is full");
        assert_eq!(busy.queued, 2);
        drop(first);
        let _third = wait(gate.admit("a"));
    }

    #[tokio::test]
    async fn waiting_tenants_are_served_round_robin() {
        // One slot; tenant a queues three runs before b queues one.
        let gate = TenantGate::new(1, 1, 10);
        let running = now(gate.admit("a"));
        let a: Vec<Ticket> = (0..3).map(|_| wait(gate.admit("a"))).collect();
        let b = wait(gate.admit("b"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, ticket) in a
            .into_iter()
            .map(|t| ("a", t))
            .chain(std::iter::once(("b", b)))
        {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let slot = ticket.wait().await;
                order.lock().unwrap().push(name);
                tokio::task::yield_now().await;
                drop(slot);
            }));
        }
        drop(running);
        for task in tasks {
            task.await.unwrap();
        }
        // b, which waited behind three of a's runs, is served second.
        assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "a"]);
    }

    #[tokio::test]
    async fn a_ticket_dropped_after_its_grant_passes_the_slot_on() {
        let gate = TenantGate::new(1, 1, 10);
        let running = now(gate.admit("a"));
        let abandoned = wait(gate.admit("a"));
        let next = wait(gate.admit("b"));
        drop(running); // grants `abandoned`, which nobody waits for
        drop(abandoned); // passes the slot to b
        let _slot = tokio::time::timeout(std::time::Duration::from_secs(5), next.wait())
            .await
            .expect("b gets the slot");
        assert_eq!(gate.load("a"), TenantLoad::default());
    }
}

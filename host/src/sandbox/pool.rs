//! Pre-instantiated guest instances, each used for exactly one run.
//!
//! A background task keeps `target` instances ready. The target adapts to
//! demand between `pool_min` and `pool_max`: it doubles when a run finds the
//! pool empty, and once a second it follows the peak number of runs in use
//! (with half again as headroom). A semaphore of `pool_max` permits bounds the
//! runs in flight, and [`COMPILE_SLOTS`] more permits of their own serve
//! compiles, so saving a script never waits behind runs; together they keep
//! the pooling allocator from being asked for more slots than it has.
//! Finished instances are dropped as tasks on the async runtime's worker
//! threads (on a teardown thread of the pool's own when there is no
//! runtime), so tearing down memory is off the run's critical path.
//!
//! Tearing an instance down resets every page its memory slot has ever had
//! written, not only the pages of the last run (wasmtime's PAGEMAP_SCAN
//! reset finds pages that are no longer the image's; a page it copies back
//! stays the slot's own). So one run that writes much of the guest's initial
//! memory, such as a runaway recursion through the 4 MiB shadow stack, makes
//! every later teardown of that slot copy megabytes: after every slot has
//! served one, trivial runs go several times slower, for good. Once a second
//! the pool looks at what its idle slots reset per teardown and, above
//! [`RENEW_ABOVE_BYTES`], renews its engine: new instances come from a fresh
//! engine whose slots hold nothing yet, and the old engine, with its slots,
//! is freed when its last instance is (docs/architecture.md, "Worn slots").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::engine::YIELD_EVERY_FUEL;
use super::host_api::{self, HostServices, HostState, ScriptRuntime, ScriptRuntimePre};

/// Instances reserved for compiling (saving a script), beside `pool_max`
/// for runs.
pub const COMPILE_SLOTS: usize = 2;

/// What an instance is leased for; each has its own permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Compile,
}

/// How often the ready target follows demand.
const ADAPT_EVERY: Duration = Duration::from_secs(1);

/// Idle memory slots resetting more than this per teardown, on average,
/// renew the engine. A slot that has served only small scripts resets
/// about 100-130 KiB; one that has served a recursion 3,000 calls deep,
/// about 1 MiB; a runaway recursion, several MiB.
pub const RENEW_ABOVE_BYTES: usize = 512 << 10;

/// Renewals at most this often: a workload that itself writes megabytes
/// per run would otherwise renew every second, to no gain.
const RENEW_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Builds an engine and loads the guest into it; called at start and for
/// each renewal (blocking: it may read the compiled guest from disk).
pub type EngineFactory = Arc<dyn Fn() -> Result<(Engine, Component)> + Send + Sync>;

/// An engine and the guest linked into it: what instances are made from.
struct Generation {
    engine: Engine,
    pre: ScriptRuntimePre<HostState>,
}

impl Generation {
    fn new(engine: Engine, component: &Component) -> Result<Self> {
        let mut linker = Linker::new(&engine);
        host_api::add_to_linker(&mut linker)?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("linking the guest's imports")?;
        let pre = ScriptRuntimePre::new(pre)
            .map_err(anyhow::Error::from)
            .context("checking the guest's exports")?;
        Ok(Self { engine, pre })
    }

    /// What the engine's idle memory slots reset per teardown, on average
    /// (`None` with no idle slot).
    fn idle_slot_reset_bytes(&self) -> Option<usize> {
        let metrics = self.engine.pooling_allocator_metrics()?;
        let idle = metrics.unused_warm_memories() as usize;
        (idle > 0).then(|| metrics.unused_memory_bytes_resident() / idle)
    }
}

/// An instance ready to serve one run.
pub struct Ready {
    pub store: Store<HostState>,
    pub bindings: ScriptRuntime,
}

/// Sizes of the pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances ready to hand out.
    pub ready: usize,
    /// Instances serving a run.
    pub in_use: usize,
    /// How many the pool tries to keep ready now.
    pub target: usize,
    /// Most runs in flight at once.
    pub max: usize,
    /// Runs that found no instance ready and waited for one to be made.
    pub misses: usize,
    /// Times the engine was renewed because its slots were worn.
    pub renewals: usize,
    /// What the current engine's idle memory slots reset per teardown, on
    /// average (0 with no idle slot).
    pub idle_slot_reset_bytes: usize,
}

pub struct SandboxPool {
    factory: EngineFactory,
    // A std Mutex: held only to clone or swap the Arc.
    generation: Mutex<Arc<Generation>>,
    renewals: AtomicUsize,
    services: Arc<HostServices>,
    max_memory_bytes: usize,
    /// Whether the engine meters fuel (see `EngineLimits::meter_fuel`).
    meter_fuel: bool,
    min: usize,
    max: usize,
    permits: Arc<Semaphore>,
    compile_permits: Arc<Semaphore>,
    // A std Mutex: it is held only to push or pop, never across an await.
    ready: Mutex<Vec<Ready>>,
    target: AtomicUsize,
    in_use: AtomicUsize,
    peak_in_use: AtomicUsize,
    misses: AtomicUsize,
    refill: Arc<Notify>,
    last_error: Mutex<Option<String>>,
    teardown: Mutex<mpsc::Sender<Retired>>,
}

/// An instance on its way to be dropped, with the permit of the run that used
/// it: the permit returns only once the slot is free again, so runs in flight
/// plus instances being torn down never exceed the pool's slots.
struct Retired {
    _store: Store<HostState>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// An instance lent to one run; dropping it sends the instance (and the
/// permit) to be torn down.
pub struct Lease {
    ready: Option<Ready>,
    pool: Arc<SandboxPool>,
    permit: Option<OwnedSemaphorePermit>,
    /// How long the run waited for a permit and an instance.
    pub waited: Duration,
}

impl Lease {
    pub fn parts(&mut self) -> (&mut Store<HostState>, &ScriptRuntime) {
        let ready = self.ready.as_mut().expect("a lease holds its instance");
        (&mut ready.store, &ready.bindings)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.in_use.fetch_sub(1, Ordering::Relaxed);
        if let Some(ready) = self.ready.take() {
            self.pool.retire(ready.store, self.permit.take());
        }
    }
}

impl SandboxPool {
    /// Prepares the component (`InstancePre`, once) and starts the task that
    /// keeps instances ready. Must be called inside a tokio runtime.
    pub fn start(
        factory: EngineFactory,
        services: Arc<HostServices>,
        max_memory_bytes: usize,
        meter_fuel: bool,
        min: usize,
        max: usize,
    ) -> Result<Arc<Self>> {
        let max = max.max(1);
        let min = min.min(max);
        let (engine, component) = factory()?;
        let generation = Generation::new(engine, &component)?;

        let (teardown, retired) = mpsc::channel::<Retired>();
        std::thread::Builder::new()
            .name("scriptbox-teardown".into())
            .spawn(move || {
                for retired in retired {
                    drop(retired);
                }
            })
            .context("spawning the teardown thread")?;

        let pool = Arc::new(Self {
            factory,
            generation: Mutex::new(Arc::new(generation)),
            renewals: AtomicUsize::new(0),
            services,
            max_memory_bytes,
            meter_fuel,
            min,
            max,
            permits: Arc::new(Semaphore::new(max)),
            compile_permits: Arc::new(Semaphore::new(COMPILE_SLOTS)),
            ready: Mutex::new(Vec::with_capacity(max)),
            target: AtomicUsize::new(min.max(1)),
            in_use: AtomicUsize::new(0),
            peak_in_use: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
            refill: Arc::new(Notify::new()),
            last_error: Mutex::new(None),
            teardown: Mutex::new(teardown),
        });
        tokio::spawn(keep_ready(Arc::downgrade(&pool), pool.refill.clone()));
        Ok(pool)
    }

    /// Waits for a permit of `purpose`, then takes a ready instance (or
    /// makes one).
    pub async fn lease(self: &Arc<Self>, purpose: Purpose) -> Result<Lease> {
        let started = Instant::now();
        let permits = match purpose {
            Purpose::Run => &self.permits,
            Purpose::Compile => &self.compile_permits,
        };
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .context("the sandbox pool is closed")?;
        let in_use = self.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_use.fetch_max(in_use, Ordering::Relaxed);
        let ready = self.lock_ready().pop();
        let ready = match ready {
            Some(ready) => ready,
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let doubled = (self.target.load(Ordering::Relaxed) * 2).clamp(1, self.max);
                self.target.fetch_max(doubled, Ordering::Relaxed);
                match self.instantiate().await {
                    Ok(ready) => ready,
                    Err(error) => {
                        self.in_use.fetch_sub(1, Ordering::Relaxed);
                        return Err(error);
                    }
                }
            }
        };
        self.refill.notify_one();
        Ok(Lease {
            ready: Some(ready),
            pool: self.clone(),
            permit: Some(permit),
            waited: started.elapsed(),
        })
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            ready: self.lock_ready().len(),
            in_use: self.in_use.load(Ordering::Relaxed),
            target: self.target.load(Ordering::Relaxed),
            max: self.max,
            misses: self.misses.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
            idle_slot_reset_bytes: self.generation().idle_slot_reset_bytes().unwrap_or(0),
        }
    }

    fn generation(&self) -> Arc<Generation> {
        self.generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Renews the engine when its idle slots have come to reset more than
    /// [`RENEW_ABOVE_BYTES`] per teardown, at most every
    /// [`RENEW_AT_MOST_EVERY`] (`last_renewal` is the pool task's own).
    /// Instances already made from the old engine finish their runs; the
    /// ready ones are dropped.
    async fn renew_if_worn(&self, last_renewal: &mut Option<Instant>) {
        let Some(per_slot) = self.generation().idle_slot_reset_bytes() else {
            return;
        };
        if per_slot <= RENEW_ABOVE_BYTES {
            return;
        }
        if last_renewal.is_some_and(|at| at.elapsed() < RENEW_AT_MOST_EVERY) {
            return;
        }
        *last_renewal = Some(Instant::now());
        let factory = self.factory.clone();
        let built = tokio::task::spawn_blocking(move || {
            let (engine, component) = factory()?;
            Generation::new(engine, &component)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|built| built);
        let generation = match built {
            Ok(generation) => generation,
            Err(error) => {
                // The worn engine keeps serving: slower, but serving.
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot renew the sandbox engine"
                );
                return;
            }
        };
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(generation);
        let stale: Vec<Ready> = self.lock_ready().drain(..).collect();
        for ready in stale {
            self.retire(ready.store, None);
        }
        self.renewals.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            idle_slot_reset_bytes = per_slot,
            "renewed the sandbox engine: its idle slots reset more than {} KiB per teardown",
            RENEW_ABOVE_BYTES >> 10
        );
    }

    /// The last failure to make an instance, if the most recent attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn instantiate(&self) -> Result<Ready> {
        let state = HostState::new(self.services.clone(), self.max_memory_bytes);
        let generation = self.generation();
        let mut store = Store::new(&generation.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Instantiation may run guest code (none today: the module has no
        // start function); the run's own fuel is set when the instance is
        // leased.
        if self.meter_fuel {
            store.set_fuel(u64::MAX)?;
            store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL))?;
        }
        let result = generation.pre.instantiate_async(&mut store).await;
        let mut last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(bindings) => {
                *last_error = None;
                Ok(Ready { store, bindings })
            }
            Err(error) => {
                let error = anyhow::Error::from(error).context("instantiating the guest");
                *last_error = Some(format!("{error:#}"));
                Err(error)
            }
        }
    }

    fn lock_ready(&self) -> std::sync::MutexGuard<'_, Vec<Ready>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tears an instance down after its run has answered: as a task on the
    /// async runtime when there is one, so teardowns spread over all worker
    /// threads (one teardown thread capped throughput at what one core can
    /// reset), else on the teardown thread.
    fn retire(&self, store: Store<HostState>, permit: Option<OwnedSemaphorePermit>) {
        let retired = Retired {
            _store: store,
            _permit: permit,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { drop(retired) });
            return;
        }
        let sender = self.teardown.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(mpsc::SendError(retired)) = sender.send(retired) {
            drop(sender);
            drop(retired);
        }
    }

    /// Follows demand: the peak in use over the last period, plus half again.
    fn adapt(&self) {
        let peak = self
            .peak_in_use
            .swap(self.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
        let wanted = (peak + peak.div_ceil(2)).clamp(self.min.max(1), self.max);
        let current = self.target.load(Ordering::Relaxed);
        // Shrink gently (halfway) so a brief lull does not empty the pool.
        let next = if wanted < current {
            wanted.max(current / 2)
        } else {
            wanted
        };
        self.target.store(next, Ordering::Relaxed);
        let surplus: Vec<Ready> = {
            let mut ready = self.lock_ready();
            let keep = ready.len().min(next);
            ready.drain(keep..).collect()
        };
        for ready in surplus {
            self.retire(ready.store, None);
        }
    }
}

/// The pool's background task: refill to the target whenever a lease takes
/// an instance, and adapt the target once a period. Ends with the pool.
async fn keep_ready(pool: Weak<SandboxPool>, refill: Arc<Notify>) {
    let mut next_adapt = Instant::now() + ADAPT_EVERY;
    let mut last_renewal = None;
    loop {
        {
            let Some(pool) = pool.upgrade() else { return };
            if Instant::now() >= next_adapt {
                pool.adapt();
                pool.renew_if_worn(&mut last_renewal).await;
                next_adapt = Instant::now() + ADAPT_EVERY;
            }
            while pool.lock_ready().len() < pool.target.load(Ordering::Relaxed) {
                match pool.instantiate().await {
                    Ok(ready) => pool.lock_ready().push(ready),
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "cannot fill the sandbox pool"
                        );
                        break;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(
            next_adapt.saturating_duration_since(Instant::now()),
            refill.notified(),
        )
        .await;
    }
}

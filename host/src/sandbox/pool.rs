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
//! The pool is split into shards, one per worker thread of the runtime it
//! starts in, each with its own engine (and so its own memory slots), ready
//! list and refill task. A run takes an instance from the shard of the
//! thread it runs on; that shard's refill task is woken, and the teardown
//! spawned, from the same thread, and tokio runs them there unless another
//! worker is idle. So an instance is made, run and torn down, and its slot's
//! memory reset and reused, on one core: shared by two threads, the same
//! pages moved between the cores' caches on every run (docs/architecture.md,
//! "Shards"). A thread whose shard has nothing ready takes an instance from
//! another shard before making one.
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

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Most shards a pool is split into, whatever the number of worker threads:
/// each has an engine of its own, with the compiled guest and a full set of
/// slots' address space.
pub const MAX_SHARDS: usize = 8;

/// The next pool's id.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(0);

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

    /// What the engine's idle memory slots reset per teardown, on average:
    /// the bytes they keep resident over how many there are (`None` with no
    /// idle slot).
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
    /// Runs that found none ready in their own thread's shard and took one
    /// from another shard's.
    pub borrowed: usize,
    /// Shards: one per worker thread of the runtime the pool started in.
    pub shards: usize,
    /// Times an engine was renewed because its slots were worn.
    pub renewals: usize,
    /// What the idle memory slots of the most worn shard's engine reset per
    /// teardown, on average (0 with no idle slot): the figure each shard
    /// compares with [`RENEW_ABOVE_BYTES`] on its own.
    pub idle_slot_reset_bytes: usize,
}

pub struct SandboxPool {
    factory: EngineFactory,
    services: Arc<HostServices>,
    max_memory_bytes: usize,
    /// Whether the engine meters fuel (see `EngineLimits::meter_fuel`).
    meter_fuel: bool,
    max: usize,
    permits: Arc<Semaphore>,
    compile_permits: Arc<Semaphore>,
    shards: Vec<Shard>,
    /// Tells this pool from others in a thread's cache of its shard (ids
    /// are never reused, unlike addresses).
    id: u64,
    /// Threads that have leased from this pool: the next one's shard.
    threads: AtomicUsize,
    borrowed: AtomicUsize,
    last_error: Mutex<Option<String>>,
    teardown: Mutex<mpsc::Sender<Retired>>,
}

/// The instances of one worker thread: its engine, the ones ready and how
/// many to keep ready. Counts are of the runs leased by its thread.
struct Shard {
    // A std Mutex: held only to clone or swap the Arc.
    generation: Mutex<Arc<Generation>>,
    renewals: AtomicUsize,
    min: usize,
    // A std Mutex: it is held only to push or pop, never across an await.
    ready: Mutex<Vec<Ready>>,
    target: AtomicUsize,
    in_use: AtomicUsize,
    peak_in_use: AtomicUsize,
    misses: AtomicUsize,
    refill: Arc<Notify>,
}

impl Shard {
    fn generation(&self) -> Arc<Generation> {
        self.generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lock_ready(&self) -> std::sync::MutexGuard<'_, Vec<Ready>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
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
    /// The shard whose thread leased it (it counts the lease as in use).
    shard: usize,
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
        self.pool.shards[self.shard]
            .in_use
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(ready) = self.ready.take() {
            self.pool.retire(ready.store, self.permit.take());
        }
    }
}

impl SandboxPool {
    /// Builds `shards` engines, prepares the component in each
    /// (`InstancePre`, once) and starts the tasks that keep instances ready.
    /// `min` is split between the shards. Must be called inside a tokio
    /// runtime.
    pub fn start(
        factory: EngineFactory,
        services: Arc<HostServices>,
        max_memory_bytes: usize,
        meter_fuel: bool,
        (min, max): (usize, usize),
        shards: usize,
    ) -> Result<Arc<Self>> {
        let max = max.max(1);
        let min = min.min(max);
        let count = shards.max(1);
        let shards = (0..count)
            .map(|_| {
                let (engine, component) = factory()?;
                let generation = Generation::new(engine, &component)?;
                let min = min.div_ceil(count);
                Ok(Shard {
                    generation: Mutex::new(Arc::new(generation)),
                    renewals: AtomicUsize::new(0),
                    min,
                    ready: Mutex::new(Vec::with_capacity(max)),
                    target: AtomicUsize::new(min.max(1)),
                    in_use: AtomicUsize::new(0),
                    peak_in_use: AtomicUsize::new(0),
                    misses: AtomicUsize::new(0),
                    refill: Arc::new(Notify::new()),
                })
            })
            .collect::<Result<Vec<_>>>()?;

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
            services,
            max_memory_bytes,
            meter_fuel,
            max,
            permits: Arc::new(Semaphore::new(max)),
            compile_permits: Arc::new(Semaphore::new(COMPILE_SLOTS)),
            shards,
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            threads: AtomicUsize::new(0),
            borrowed: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            teardown: Mutex::new(teardown),
        });
        for (index, shard) in pool.shards.iter().enumerate() {
            tokio::spawn(keep_ready(
                Arc::downgrade(&pool),
                index,
                shard.refill.clone(),
            ));
        }
        Ok(pool)
    }

    /// Waits for a permit of `purpose`, then takes a ready instance from the
    /// calling thread's shard (or another's, or makes one).
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
        let home = self.home_shard();
        let shard = &self.shards[home];
        let in_use = shard.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        shard.peak_in_use.fetch_max(in_use, Ordering::Relaxed);
        let ready = match self.take_or_make(home).await {
            Ok(ready) => ready,
            Err(error) => {
                shard.in_use.fetch_sub(1, Ordering::Relaxed);
                return Err(error);
            }
        };
        // The refill task wakes on this thread, so it makes the next
        // instance here too.
        shard.refill.notify_one();
        Ok(Lease {
            ready: Some(ready),
            pool: self.clone(),
            shard: home,
            permit: Some(permit),
            waited: started.elapsed(),
        })
    }

    /// An instance for a run on shard `home`'s thread: one of its own ready
    /// ones, else another shard's, else a new one. Finding none of its own
    /// doubles the shard's target.
    async fn take_or_make(&self, home: usize) -> Result<Ready> {
        let shard = &self.shards[home];
        if let Some(ready) = shard.lock_ready().pop() {
            return Ok(ready);
        }
        let doubled = (shard.target.load(Ordering::Relaxed) * 2).clamp(1, self.max);
        shard.target.fetch_max(doubled, Ordering::Relaxed);
        if let Some(ready) = self.borrow(home) {
            return Ok(ready);
        }
        shard.misses.fetch_add(1, Ordering::Relaxed);
        self.instantiate(home).await
    }

    /// The calling thread's shard: threads take the shards in turn, in the
    /// order of their first lease, so the worker threads of a runtime (the
    /// threads that run scripts when serving) each have one of their own.
    fn home_shard(&self) -> usize {
        thread_local! {
            /// The last pool this thread leased from, and its shard there.
            static HOME: Cell<Option<(u64, usize)>> = const { Cell::new(None) };
        }
        HOME.with(|home| match home.get() {
            Some((pool, shard)) if pool == self.id => shard,
            _ => {
                let shard = self.threads.fetch_add(1, Ordering::Relaxed) % self.shards.len();
                home.set(Some((self.id, shard)));
                shard
            }
        })
    }

    /// A ready instance of another shard than `home`, if one has any.
    fn borrow(&self, home: usize) -> Option<Ready> {
        let count = self.shards.len();
        let ready = (1..count)
            .map(|step| &self.shards[(home + step) % count])
            .find_map(|other| other.lock_ready().pop())?;
        self.borrowed.fetch_add(1, Ordering::Relaxed);
        Some(ready)
    }

    /// The shards' figures, summed.
    pub fn stats(&self) -> PoolStats {
        let sum = |count: fn(&Shard) -> usize| self.shards.iter().map(count).sum::<usize>();
        PoolStats {
            ready: sum(|shard| shard.lock_ready().len()),
            in_use: sum(|shard| shard.in_use.load(Ordering::Relaxed)),
            target: sum(|shard| shard.target.load(Ordering::Relaxed)),
            max: self.max,
            misses: sum(|shard| shard.misses.load(Ordering::Relaxed)),
            borrowed: self.borrowed.load(Ordering::Relaxed),
            shards: self.shards.len(),
            renewals: sum(|shard| shard.renewals.load(Ordering::Relaxed)),
            idle_slot_reset_bytes: self
                .shards
                .iter()
                .filter_map(|shard| shard.generation().idle_slot_reset_bytes())
                .max()
                .unwrap_or(0),
        }
    }

    /// Renews a shard's engine when its idle slots have come to reset more
    /// than [`RENEW_ABOVE_BYTES`] per teardown, at most every
    /// [`RENEW_AT_MOST_EVERY`] (`last_renewal` is the shard task's own).
    /// Instances already made from the old engine finish their runs; the
    /// ready ones are dropped.
    async fn renew_if_worn(&self, index: usize, last_renewal: &mut Option<Instant>) {
        let shard = &self.shards[index];
        let Some(per_slot) = shard.generation().idle_slot_reset_bytes() else {
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
        *shard.generation.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(generation);
        let stale: Vec<Ready> = shard.lock_ready().drain(..).collect();
        for ready in stale {
            self.retire(ready.store, None);
        }
        shard.renewals.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            shard = index,
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

    /// Makes an instance from shard `index`'s engine.
    async fn instantiate(&self, index: usize) -> Result<Ready> {
        let state = HostState::new(self.services.clone(), self.max_memory_bytes);
        let generation = self.shards[index].generation();
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

    /// Follows a shard's demand: the peak in use over the last period, plus
    /// half again.
    fn adapt(&self, index: usize) {
        let shard = &self.shards[index];
        let peak = shard
            .peak_in_use
            .swap(shard.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
        let wanted = (peak + peak.div_ceil(2)).clamp(shard.min.max(1), self.max);
        let current = shard.target.load(Ordering::Relaxed);
        // Shrink gently (halfway) so a brief lull does not empty the pool.
        let next = if wanted < current {
            wanted.max(current / 2)
        } else {
            wanted
        };
        shard.target.store(next, Ordering::Relaxed);
        let surplus: Vec<Ready> = {
            let mut ready = shard.lock_ready();
            let keep = ready.len().min(next);
            ready.drain(keep..).collect()
        };
        for ready in surplus {
            self.retire(ready.store, None);
        }
    }
}

/// A shard's background task: refill to the target whenever a lease takes
/// an instance, and adapt the target once a period. Ends with the pool.
async fn keep_ready(pool: Weak<SandboxPool>, index: usize, refill: Arc<Notify>) {
    let mut next_adapt = Instant::now() + ADAPT_EVERY;
    let mut last_renewal = None;
    loop {
        {
            let Some(pool) = pool.upgrade() else { return };
            let shard = &pool.shards[index];
            if Instant::now() >= next_adapt {
                pool.adapt(index);
                pool.renew_if_worn(index, &mut last_renewal).await;
                next_adapt = Instant::now() + ADAPT_EVERY;
            }
            while shard.lock_ready().len() < shard.target.load(Ordering::Relaxed) {
                match pool.instantiate(index).await {
                    Ok(ready) => shard.lock_ready().push(ready),
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use super::{Ready, SandboxPool};
    use crate::sandbox::{FetchConfig, MemoryKv, RunRequest, Sandbox, SandboxConfig};

    const DOUBLE: &str = "export default (input) => input.n * 2";

    fn sharded(shards: usize) -> Sandbox {
        let config = SandboxConfig {
            pool_min: 4,
            pool_max: 4,
            ..SandboxConfig::default()
        };
        let db = Arc::new(MemoryKv::default());
        Sandbox::start_sharded(config, FetchConfig::default(), db, shards).expect("starts")
    }

    fn request(sandbox: &Sandbox, n: u64) -> RunRequest {
        RunRequest {
            tenant: "t1".into(),
            input: format!("{{\"n\":{n}}}"),
            context: "{}".into(),
            limits: sandbox.config().default_limits(),
        }
    }

    /// Waits until every shard has as many instances ready as it aims for.
    async fn filled(sandbox: &Sandbox) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sandbox.pool_stats().ready < sandbox.pool_stats().target {
            assert!(Instant::now() < deadline, "{:?}", sandbox.pool_stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Takes the ready instances of `shard` away (torn down as usual).
    fn empty(pool: &SandboxPool, shard: usize) {
        let taken: Vec<Ready> = pool.shards[shard].lock_ready().drain(..).collect();
        for ready in taken {
            pool.retire(ready.store, None);
        }
    }

    /// On a runtime of one thread the refill tasks run only when the test
    /// awaits something pending, so between emptying shards and leasing,
    /// nothing refills them.
    #[tokio::test]
    async fn a_thread_borrows_from_another_shard_before_making_an_instance() {
        let sandbox = sharded(2);
        let bytecode = sandbox.compile(DOUBLE).await.unwrap();
        filled(&sandbox).await;
        let pool = sandbox.pool.clone();
        let home = pool.home_shard();
        assert_eq!(sandbox.pool_stats().shards, 2);
        let (borrowed, misses) = (pool.stats().borrowed, pool.stats().misses);

        empty(&pool, home);
        let outcome = sandbox.run(&bytecode, request(&sandbox, 21)).await;
        assert_eq!(outcome.result.unwrap().output, "42");
        let stats = pool.stats();
        assert_eq!(stats.borrowed, borrowed + 1, "{stats:?}");
        assert_eq!(stats.misses, misses, "{stats:?}");
        // Its own shard, found empty, aims for more.
        assert!(pool.shards[home].target.load(super::Ordering::Relaxed) >= 2);

        filled(&sandbox).await;
        empty(&pool, 0);
        empty(&pool, 1);
        let outcome = sandbox.run(&bytecode, request(&sandbox, 5)).await;
        assert_eq!(outcome.result.unwrap().output, "10");
        let stats = pool.stats();
        assert_eq!(stats.borrowed, borrowed + 1, "{stats:?}");
        assert_eq!(stats.misses, misses + 1, "{stats:?}");
        assert_eq!(stats.in_use, 0, "{stats:?}");
    }

    /// Each shard renews its own engine: the shard whose slots runaway
    /// recursions wore gets a fresh one, while another shard, whose idle
    /// slot served only a small run, keeps its engine.
    #[tokio::test]
    async fn a_worn_shard_renews_its_own_engine_and_no_other() {
        let sandbox = sharded(2);
        let small = sandbox.compile(DOUBLE).await.unwrap();
        let runaway = sandbox
            .compile("function f(n) { return f(n + 1) + 1; } export default () => f(0)")
            .await
            .unwrap();
        filled(&sandbox).await;
        let pool = sandbox.pool.clone();
        let home = pool.home_shard();
        let other = 1 - home;
        let engines = |pool: &SandboxPool| {
            pool.shards
                .iter()
                .map(|s| s.generation())
                .collect::<Vec<_>>()
        };
        let before = engines(&pool);

        // A small run on an instance borrowed from the other shard leaves
        // that shard an idle slot that is not worn.
        empty(&pool, home);
        let outcome = sandbox.run(&small, request(&sandbox, 1)).await;
        assert_eq!(outcome.result.unwrap().output, "2");
        assert_eq!(pool.stats().borrowed, 1, "{:?}", pool.stats());
        // Runaway recursions on this thread's own instances wear its slots
        // (enough of them that the worn outnumber the idle slots that are
        // not, whichever slots the pool reuses).
        for _ in 0..6 {
            filled(&sandbox).await;
            let outcome = sandbox.run(&runaway, request(&sandbox, 0)).await;
            assert!(outcome.result.is_err(), "the recursion ends in an error");
        }
        assert_eq!(pool.stats().borrowed, 1, "{:?}", pool.stats());

        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.shards[home].renewals.load(super::Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "never renewed: {:?}",
                pool.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Past the other shard's next check too.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let after = engines(&pool);
        assert!(!Arc::ptr_eq(&before[home], &after[home]));
        assert!(Arc::ptr_eq(&before[other], &after[other]));
        assert_eq!(
            pool.shards[other].renewals.load(super::Ordering::Relaxed),
            0
        );
        assert_eq!(pool.stats().renewals, 1, "{:?}", pool.stats());
        // The renewed shard serves from its new engine.
        filled(&sandbox).await;
        let outcome = sandbox.run(&small, request(&sandbox, 4)).await;
        assert_eq!(outcome.result.unwrap().output, "8");
    }

    /// Two worker threads get a shard each and keep it.
    #[test]
    fn worker_threads_each_have_a_shard_of_their_own() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let sandbox = Sandbox::start(
                SandboxConfig::default(),
                FetchConfig::default(),
                Arc::new(MemoryKv::default()),
            )
            .unwrap();
            assert_eq!(sandbox.pool_stats().shards, 2);
            let bytecode = sandbox.compile(DOUBLE).await.unwrap();
            // Each task blocks its worker until the other has started, so
            // the two run on different threads; each runs a script and
            // reports its thread's shard before and after.
            let both = Arc::new(Barrier::new(2));
            let tasks: Vec<_> = (0..2u64)
                .map(|n| {
                    let (sandbox, bytecode, both) =
                        (sandbox.clone(), bytecode.clone(), both.clone());
                    tokio::spawn(async move {
                        both.wait();
                        let before = sandbox.pool.home_shard();
                        let outcome = sandbox.run(&bytecode, request(&sandbox, n)).await;
                        assert_eq!(outcome.result.unwrap().output, (n * 2).to_string());
                        (
                            std::thread::current().id(),
                            before,
                            sandbox.pool.home_shard(),
                        )
                    })
                })
                .collect();
            let mut seen = Vec::new();
            for task in tasks {
                seen.push(task.await.unwrap());
            }
            assert_ne!(seen[0].0, seen[1].0, "{seen:?}");
            assert_ne!(seen[0].1, seen[1].1, "{seen:?}");
            assert!(
                seen.iter().all(|(_, before, after)| before == after),
                "{seen:?}"
            );
        });
    }
}

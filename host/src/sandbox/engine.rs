//! The wasmtime engine policy: every knob that decides how guests are
//! compiled, allocated and interrupted lives here and nowhere else.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// The guest component, built by `just guest` (guest-js-engine/build.sh) and
/// embedded so the binary needs nothing else to run scripts.
pub const GUEST_COMPONENT: &[u8] = include_bytes!("../../guest/scriptbox-guest.wasm");

/// How much fuel a guest burns between yields to the async executor: about
/// 1 ms of CPU at about 10 M fuel per ms (docs/sandbox.md). Each yield
/// lets other runs on the same thread make progress, and is when a run's
/// deadline (a timer around the call, see `Sandbox::run`) can end it.
///
/// Deadlines ride on fuel rather than on epoch interruption because the
/// epoch check costs every function entry and loop back-edge nearly as much
/// as fuel's own check (`cargo bench -p scriptbox-benches --bench sandbox`,
/// fib: about 10 % of the run against fuel's 14 %), and fuel is metered
/// anyway.
pub const YIELD_EVERY_FUEL: u64 = 10_000_000;

/// Core instances in one guest instance: the module and wit-component's
/// shim and fixup modules (one spare).
const CORE_INSTANCES: u32 = 4;

/// Pool sizing that the engine needs to know up front.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Most component instances alive at once: running, ready and being torn
    /// down. Each reserves address space (about 4 GiB) for its memory.
    pub instance_slots: u32,
    /// The largest memory cap any run may have, in MiB.
    pub max_memory_mb: u32,
    /// Whether guests consume fuel. Always on when serving: fuel is a run's
    /// CPU budget. Off only to measure what metering costs.
    pub meter_fuel: bool,
}

/// Builds the engine: Cranelift, fuel, async, and the pooling allocator
/// with copy-on-write memory images.
pub fn build_engine(limits: EngineLimits) -> Result<Engine> {
    let slots = limits.instance_slots.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // A guest component holds its module and the two small shim modules
        // wit-component adds to lower its imports; only the module has a
        // memory (there is no WASI adapter: docs/guest.md, "No WASI").
        .max_core_instances_per_component(CORE_INSTANCES)
        .total_core_instances(slots * CORE_INSTANCES)
        .max_memories_per_component(1)
        .total_memories(slots)
        .max_tables_per_component(CORE_INSTANCES)
        .total_tables(slots * CORE_INSTANCES)
        .total_stacks(slots)
        .max_memory_size((limits.max_memory_mb as usize) << 20)
        .table_elements(20_000)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        // Keep the guest's working set resident between uses of a slot:
        // without this, page faults and madvise on every instance dominate
        // and two threads run slower than one. With PAGEMAP_SCAN (Linux 6.7+)
        // only the pages a run touched are reset, not the whole range, which
        // matters because the guest's 4 MiB shadow stack sits below its data
        // and is mostly untouched.
        .linear_memory_keep_resident(16 << 20)
        .pagemap_scan(Enabled::Auto)
        .table_keep_resident(64 << 10)
        .max_unused_warm_slots(slots);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .cranelift_opt_level(OptLevel::Speed)
        .consume_fuel(limits.meter_fuel)
        .memory_init_cow(true)
        // QuickJS-ng has no stack check on WASI, so this is what stops
        // runaway recursion (about 10,000 JS frames). It must trip before the
        // guest's 4 MiB shadow stack does (guest-js-engine/build.sh).
        .max_wasm_stack(8 << 20)
        .async_stack_size(9 << 20)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the wasmtime engine")
}

/// Loads the guest into the engines of one configuration, which the pool
/// builds more than once (it renews its engine: `pool.rs`). With a cache
/// directory, as [`load_guest`]; without one, the first engine compiles the
/// guest and later ones deserialise what it compiled, in milliseconds
/// instead of seconds.
pub struct GuestLoader {
    cache_dir: Option<PathBuf>,
    compiled: OnceLock<Vec<u8>>,
}

impl GuestLoader {
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        Self {
            cache_dir,
            compiled: OnceLock::new(),
        }
    }

    pub fn load(&self, engine: &Engine) -> Result<Component> {
        if self.cache_dir.is_some() {
            return load_guest(engine, self.cache_dir.as_deref());
        }
        if let Some(bytes) = self.compiled.get() {
            // SAFETY: the bytes were serialised in this process from the
            // guest as compiled by an engine of this same configuration (a
            // loader serves one); wasmtime checks their header and version.
            return unsafe { Component::deserialize(engine, bytes) }
                .map_err(anyhow::Error::from)
                .context("loading the compiled guest");
        }
        let component = load_guest(engine, None)?;
        let _ = self.compiled.set(component.serialize()?);
        Ok(component)
    }
}

/// Loads the guest component, compiling it once per engine configuration and
/// caching the machine code on disk (`cache_dir`): deserialising takes
/// milliseconds where compiling takes about a second.
fn load_guest(engine: &Engine, cache_dir: Option<&Path>) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, GUEST_COMPONENT)
            .map_err(anyhow::Error::from)
            .context("compiling the guest");
    };
    let path = dir.join(format!("guest-{:016x}.cwasm", artifact_key(engine)));
    if path.exists() {
        // SAFETY: the file is one this function wrote for this exact guest
        // and engine configuration (the key is in its name); wasmtime checks
        // its header and version before use.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "recompiling the guest: the cached artifact is unusable");
            }
        }
    }
    let component = Component::new(engine, GUEST_COMPONENT)
        .map_err(anyhow::Error::from)
        .context("compiling the guest")?;
    if let Err(error) = write_atomically(&path, &component.serialize()?) {
        tracing::warn!(path = %path.display(), %error, "could not cache the compiled guest");
    }
    Ok(component)
}

/// The default place for compiled artifacts: `$SCRIPTBOX_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/scriptbox`, else `~/.cache/scriptbox`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SCRIPTBOX_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("scriptbox"))
}

fn artifact_key(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    GUEST_COMPONENT.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hasher.finish()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a cache directory the first engine compiles the guest and
    /// keeps the result; a later engine of the same configuration (a pool
    /// shard, a renewal) loads that instead of compiling again.
    #[test]
    fn without_a_cache_directory_later_engines_load_the_first_compilation() {
        let limits = EngineLimits {
            instance_slots: 1,
            max_memory_mb: 16,
            meter_fuel: true,
        };
        let loader = GuestLoader::new(None);
        let first = build_engine(limits).unwrap();
        let compiled = loader.load(&first).unwrap();
        assert!(loader.compiled.get().is_some(), "the compilation is kept");

        let second = build_engine(limits).unwrap();
        let loaded = loader
            .load(&second)
            .expect("a second engine loads the kept code");
        let exports = |component: &Component, engine: &Engine| {
            let mut names: Vec<String> = component
                .component_type()
                .exports(engine)
                .map(|(name, _)| name.to_string())
                .collect();
            names.sort();
            names
        };
        assert_eq!(exports(&loaded, &second), exports(&compiled, &first));
        assert!(!exports(&loaded, &second).is_empty());
    }

    /// The guest asks nothing of the host but the world in `wit/`: no WASI
    /// (docs/guest.md, "No WASI").
    #[test]
    fn the_guest_imports_only_its_world() {
        let engine = Engine::default();
        let component = Component::new(&engine, GUEST_COMPONENT).expect("the guest compiles");
        let mut imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        imports.sort();
        let world = ["cache", "clock", "db", "http", "log", "random"]
            .map(|interface| format!("scriptbox:sandbox/{interface}@0.1.0"));
        assert_eq!(imports, world);
    }
}

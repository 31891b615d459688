//! Turns the guest core module into the artifact the host embeds:
//!
//! 1. Wizer instantiates the module, calls `wizer-initialize` (which starts
//!    QuickJS and installs the script globals) and snapshots the memory, so
//!    every instance starts with an initialised engine.
//! 2. `wit-component` wraps the snapshot as a component of the world in
//!    `wit/`, with the WASI preview1 adapter that ships in a crate matching
//!    the host's wasmtime (nothing is downloaded).
//!
//! Usage: `scriptbox-guest-builder CORE.wasm OUT.wasm`

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
use wasmtime::{Config, Engine, Linker, Store};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder, p1::WasiP1Ctx};
use wasmtime_wizer::Wizer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [core_path, out_path] = args.as_slice() else {
        bail!("usage: scriptbox-guest-builder CORE.wasm OUT.wasm");
    };
    let core = std::fs::read(core_path).with_context(|| format!("reading {core_path}"))?;
    let initialised = wizen(&core).await.context("pre-initialising with Wizer")?;
    let component = wit_component::ComponentEncoder::default()
        .module(&initialised)
        .context("reading the component type of the guest")?
        .adapter(
            "wasi_snapshot_preview1",
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("adding the WASI preview1 adapter")?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    let tmp = format!("{out_path}.tmp");
    std::fs::write(&tmp, &component).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, out_path).with_context(|| format!("renaming to {out_path}"))?;
    eprintln!(
        "guest: {} bytes core, {} bytes after Wizer, {} bytes as a component -> {out_path}",
        core.len(),
        initialised.len(),
        component.len()
    );
    Ok(())
}

async fn wizen(core: &[u8]) -> Result<Vec<u8>> {
    let config = Config::new();
    let engine = Engine::new(&config)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx| cx)?;
    // A WASI context with no environment, fixed clocks and seeded
    // randomness: whatever initialisation reads lands in the snapshot, and
    // the snapshot must be the same on every build. (Nothing security
    // relevant is drawn at init: `Math.random` seeds itself at first use and
    // `crypto.randomUUID` reads the host's randomness on every call.)
    let wasi = WasiCtxBuilder::new()
        .secure_random(StdRng::seed_from_u64(0))
        .insecure_random(StdRng::seed_from_u64(1))
        .insecure_random_seed(2)
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .build_p1();
    let mut store = Store::new(&engine, wasi);
    let wizened = Wizer::new()
        .init_func("wizer-initialize")
        .run(&mut store, core, async |store, module| {
            // The WIT imports (log, http, ...) must not be called while
            // initialising; trap if they are.
            linker.define_unknown_imports_as_traps(module)?;
            linker.instantiate_async(store, module).await
        })
        .await?;
    Ok(wizened)
}

/// A clock that always reads the Unix epoch.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

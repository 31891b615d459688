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
use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
use wasmtime::{Config, Engine, Linker, Store};
use wasmtime_wasi::{WasiCtxBuilder, p1::WasiP1Ctx};
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
    // An empty WASI context: initialisation must not depend on the
    // environment, or the snapshot would not be reproducible.
    let mut store = Store::new(&engine, WasiCtxBuilder::new().build_p1());
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

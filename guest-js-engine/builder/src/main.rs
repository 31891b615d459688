//! Turns the guest core module into the artifact the host embeds:
//!
//! 1. The module's WASI imports are pointed at its own definitions
//!    (`wasi_imports`), so it imports nothing but the world in `wit/`.
//! 2. Wizer instantiates the module, calls `wizer-initialize` (which starts
//!    QuickJS and installs the script globals) and snapshots the memory, so
//!    every instance starts with an initialised engine.
//! 3. `wit-component` wraps the snapshot as a component of the world in
//!    `wit/`. The module imports nothing but that world (it answers its C
//!    library's WASI calls itself), so the component is the module and the
//!    small shim modules that lower its imports: no WASI adapter.
//!
//! Usage: `scriptbox-guest-builder CORE.wasm OUT.wasm`

mod wasi_imports;

use anyhow::{Context, Result, bail};
use wasmtime::{Config, Engine, Linker, Store};
use wasmtime_wizer::Wizer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [core_path, out_path] = args.as_slice() else {
        bail!("usage: scriptbox-guest-builder CORE.wasm OUT.wasm");
    };
    let core = std::fs::read(core_path).with_context(|| format!("reading {core_path}"))?;
    let core = wasi_imports::resolve(&core).context("resolving the guest's WASI imports")?;
    let initialised = wizen(&core).await.context("pre-initialising with Wizer")?;
    let component = wit_component::ComponentEncoder::default()
        .module(&initialised)
        .context("reading the component type of the guest")?
        .validate(true)
        .encode()
        .context("encoding the component (does the module import anything outside the world?)")?;
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
    let linker: Linker<()> = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    // Initialisation must not reach the host: every import traps, so the
    // snapshot holds nothing that depends on the build machine or the time
    // (the guest reads its clock as zero until the host calls an export,
    // and draws no randomness until a script asks for it).
    let wizened = Wizer::new()
        .init_func("wizer-initialize")
        .run(&mut store, core, async |store, module| {
            let mut linker = linker.clone();
            linker.define_unknown_imports_as_traps(module)?;
            linker.instantiate_async(store, module).await
        })
        .await?;
    Ok(wizened)
}

//! Points the guest's WASI imports at the guest's own definitions.
//!
//! The guest answers the WASI preview 1 calls of its libraries itself
//! (guest-js-engine/runtime/src/system.rs), defining each function under the
//! name wasi-libc imports it by, `__imported_wasi_snapshot_preview1_<name>`,
//! so the linker already resolves the C library's calls. Rust's standard
//! library imports `random_get` under a mangled name of its own, which no
//! crate can define, so that import survives linking. This pass replaces
//! every remaining `wasi_snapshot_preview1` function import with the guest's
//! export of the same function and drops those exports: the result imports
//! nothing but the WIT world, and exports nothing else either.

use std::collections::HashMap;

use anyhow::{Result, bail};
use wasm_encoder::reencode::{self, Reencode, RoundtripReencoder};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

const WASI: &str = "wasi_snapshot_preview1";
/// The prefix of the names the guest defines WASI functions under.
const DEFINED: &str = "__imported_wasi_snapshot_preview1_";

/// Resolves `module`'s WASI imports against its own exports. Fails naming
/// any WASI function the guest imports but does not define.
pub fn resolve(module: &[u8]) -> Result<Vec<u8>> {
    let mut imports = Vec::new();
    let mut exports = HashMap::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload? {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    if let TypeRef::Func(_) = import.ty {
                        imports.push((import.module.to_string(), import.name.to_string()));
                    }
                }
            }
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export?;
                    if export.kind == ExternalKind::Func {
                        exports.insert(export.name.to_string(), export.index);
                    }
                }
            }
            _ => {}
        }
    }

    // Where each imported function goes: kept imports shift down past the
    // dropped ones, dropped ones become the definition they are exported as.
    let dropped = imports.iter().filter(|(module, _)| module == WASI).count() as u32;
    let mut kept = 0;
    let mut imported_to = Vec::with_capacity(imports.len());
    for (module, name) in &imports {
        if module != WASI {
            imported_to.push(kept);
            kept += 1;
            continue;
        }
        let Some(&defined) = exports.get(&format!("{DEFINED}{name}")) else {
            bail!("the guest imports {WASI}::{name} but does not define it as `{DEFINED}{name}`");
        };
        imported_to.push(defined - dropped);
    }

    let mut resolver = Resolver {
        imported_to,
        dropped,
    };
    let mut out = wasm_encoder::Module::new();
    resolver
        .parse_core_module(&mut out, Parser::new(0), module)
        .map_err(|e| anyhow::anyhow!("rewriting the module: {e:?}"))?;
    Ok(out.finish())
}

struct Resolver {
    /// New index of each imported function, by old index.
    imported_to: Vec<u32>,
    /// How many imports go.
    dropped: u32,
}

type Reencoded<T> = Result<T, reencode::Error<<RoundtripReencoder as Reencode>::Error>>;

impl Reencode for Resolver {
    type Error = <RoundtripReencoder as Reencode>::Error;

    fn function_index(&mut self, func: u32) -> Reencoded<u32> {
        Ok(match self.imported_to.get(func as usize) {
            Some(&to) => to,
            None => func - self.dropped,
        })
    }

    fn parse_import_section(
        &mut self,
        section_out: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Reencoded<()> {
        for import in section.into_imports() {
            let import = import?;
            if import.module == WASI {
                continue;
            }
            section_out.import(import.module, import.name, self.entity_type(import.ty)?);
        }
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Reencoded<()> {
        if export.name.starts_with(DEFINED) {
            return Ok(());
        }
        reencode::utils::parse_export(self, exports, export)
    }
}

//! TypeScript: types are erased, not compiled. `swc_ts_fast_strip` (the
//! stripper Node's and Deno's type stripping are built on) replaces every
//! type annotation, interface and type alias with whitespace, so each line
//! and column of the output is where it was in the source: syntax errors and
//! stack traces point at the TypeScript the author wrote. Syntax that needs
//! code generated (`enum`, `namespace` with values, parameter properties)
//! is refused, naming the construct. Nothing is type-checked.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use swc_common::errors::{DiagnosticBuilder, Emitter, Handler};
use swc_common::sync::Lrc;
use swc_common::{GLOBALS, Globals, SourceMap, Span};
use swc_ts_fast_strip::{Mode, Options, operate};

/// The language a script is written in.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Language {
    #[default]
    JavaScript,
    TypeScript,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
        }
    }

    /// The extension of a file in this language, for stack frames.
    pub fn extension(self) -> &'static str {
        match self {
            Language::JavaScript => "js",
            Language::TypeScript => "ts",
        }
    }

    /// The language of a file, from its extension (`.ts`, `.mts`: TypeScript).
    pub fn of_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ts" | "mts") => Language::TypeScript,
            _ => Language::JavaScript,
        }
    }
}

/// Why a TypeScript source could not be stripped: the first problem, where
/// it is (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StripError {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

/// A diagnostic's message and where it points.
type Found = (String, Option<Span>);

/// Diagnostics the stripper reports, kept with their spans.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<Found>>>);

impl Emitter for Collected {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let found = (db.message(), db.span.primary_span());
        self.0.lock().expect("not poisoned").push(found);
    }
}

/// `source` as JavaScript: `source` itself for JavaScript; for TypeScript,
/// the source with its types replaced by whitespace.
pub fn to_javascript(language: Language, source: &str) -> Result<String, StripError> {
    match language {
        Language::JavaScript => Ok(source.to_owned()),
        Language::TypeScript => strip(source),
    }
}

/// Erases `source`'s TypeScript syntax, keeping every position.
pub fn strip(source: &str) -> Result<String, StripError> {
    let map: Lrc<SourceMap> = Default::default();
    let collected = Collected::default();
    let handler = Handler::with_emitter(true, false, Box::new(collected.clone()));
    let options = Options {
        module: Some(true),
        mode: Mode::StripOnly,
        ..Default::default()
    };
    let stripped = GLOBALS.set(&Globals::new(), || {
        operate(&map, &handler, source.to_owned(), options)
    });
    match stripped {
        Ok(output) => Ok(output.code),
        Err(error) => {
            let found = collected.0.lock().expect("not poisoned").first().cloned();
            let (message, span) = found.unwrap_or((error.message, None));
            let (line, column) = span
                .map(|span| {
                    let at = map.lookup_char_pos(span.lo());
                    (at.line as u32, at.col_display as u32 + 1)
                })
                .unwrap_or((0, 0));
            Err(StripError {
                message: explain(&message),
                line,
                column,
            })
        }
    }
}

/// The stripper's message, with what to do about syntax it cannot erase.
fn explain(message: &str) -> String {
    if message.contains("not supported in strip-only mode") {
        format!(
            "{message}: scriptbox erases TypeScript types but does not generate code; \
             use a plain object or union of literals instead of an enum, a module \
             object instead of a namespace, and assign constructor fields yourself"
        )
    } else {
        message.to_owned()
    }
}

/// Whether `source`, which failed to compile as JavaScript, would compile
/// as TypeScript: it parses as TypeScript and has types to erase.
pub fn looks_like_typescript(source: &str) -> bool {
    strip(source).is_ok_and(|stripped| stripped != source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_erased_in_place() {
        let source = "interface User { name: string }\n\
                      type Id = string;\n\
                      export default function (input: User, ctx: any): { hi: string } {\n\
                      \x20 const n = input.name as string;\n\
                      \x20 return { hi: n! };\n\
                      }\n";
        let js = strip(source).unwrap();
        assert_eq!(js.lines().count(), source.lines().count());
        for (stripped, original) in js.lines().zip(source.lines()) {
            assert_eq!(
                stripped.len(),
                original.len(),
                "{stripped:?} vs {original:?}"
            );
        }
        assert!(js.contains("export default function (input"), "{js}");
        assert!(!js.contains("interface") && !js.contains(": User"), "{js}");
        // The return is in the same place.
        let line = js.lines().nth(4).unwrap();
        assert_eq!(
            line.find("return"),
            source.lines().nth(4).unwrap().find("return")
        );
    }

    #[test]
    fn code_generating_syntax_is_refused_naming_it() {
        let error = strip("const a = 1;\nenum Color { Red, Green }\nexport default () => a;\n")
            .unwrap_err();
        assert!(error.message.contains("enum"), "{error:?}");
        assert!(
            error.message.contains("does not generate code"),
            "{error:?}"
        );
        assert_eq!(error.line, 2, "{error:?}");
    }

    #[test]
    fn syntax_errors_have_their_position() {
        let error = strip("const a: number = 1;\nconst b = (;\n").unwrap_err();
        assert_eq!(error.line, 2, "{error:?}");
        assert!(error.column > 0, "{error:?}");
    }

    #[test]
    fn typescript_is_recognised_and_javascript_passes_through() {
        assert!(looks_like_typescript("let x: number = 1;"));
        assert!(!looks_like_typescript("let x = 1;"));
        assert_eq!(
            to_javascript(Language::JavaScript, "let x: number").unwrap(),
            "let x: number"
        );
        assert_eq!(
            Language::of_path(std::path::Path::new("a/b.ts")),
            Language::TypeScript
        );
        assert_eq!(
            Language::of_path(std::path::Path::new("b.js")),
            Language::JavaScript
        );
    }
}

//! The scriptbox guest: QuickJS (through `javy`) behind the `engine` export
//! of `wit/scriptbox.wit`.
//!
//! Life cycle:
//! - At build time Wizer calls `wizer-initialize`, which creates the QuickJS
//!   runtime, registers the native functions and evaluates `prelude.js`. The
//!   snapshot of that memory is what every instance starts from, so a run pays
//!   nothing for set-up.
//! - `compile` turns source into bytecode (nothing runs).
//! - `run` loads bytecode the host compiled, evaluates the module, calls its
//!   default export and drains the job queue until the promise settles.
//!
//! The host creates a fresh instance for every call, so nothing a script does
//! here outlives its run.

mod alloc;
mod json;
mod native;
mod system;

use std::cell::OnceCell;

use javy::quickjs::promise::PromiseState;
use javy::quickjs::{
    Ctx, Error as JsError, Function, Module, Object, Persistent, Promise, Value, WriteOptions,
};
use javy::{Config, Runtime};

use exports::scriptbox::sandbox::engine::{
    CompileError, ErrorKind, Guest, Reply, RunError, RunOptions, RunOutput,
};

wit_bindgen::generate!({
    world: "script-runtime",
    path: "../../wit",
});

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator::new();

/// The name scripts are compiled under; syntax errors and stacks refer to it.
const SCRIPT_NAME: &str = "script.js";

struct Engine {
    runtime: Runtime,
    /// The helpers returned by `prelude.js`.
    helpers: Persistent<Object<'static>>,
    /// Objects shaped like those every run builds ([`SHAPES`]), kept so
    /// their shapes stay in the snapshot.
    _shapes: Persistent<Value<'static>>,
}

/// Objects with the keys, in the order, of every run's `ctx` (as the host
/// serialises `RunContext`) and of a webhook's `input` and its usual
/// headers. Made once at build time and kept alive: the property names
/// (atoms) and the chain of shapes QuickJS makes as properties are added
/// are then in the snapshot, and a run building an object with the same
/// keys in the same order finds each atom and shape instead of making new
/// ones (about 360 of the 2,000 fuel a key costs). Objects with other keys
/// work as before.
const SHAPES: &str = r#"[
    {"scriptId":"","executionId":"","tenantId":"","trigger":"","attempt":0,"env":{},"cron":""},
    {"method":"","url":"","path":"","headers":{},"query":{},"body":null},
    {"host":"","user-agent":"","accept":"","content-type":"","content-length":""}
]"#;

thread_local! {
    static ENGINE: OnceCell<Engine> = const { OnceCell::new() };
}

fn build_engine() -> Engine {
    let mut config = Config::default();
    // No `max_stack_size`: QuickJS-ng ignores it on WASI. Runaway recursion
    // is stopped by the host's wasm stack limit instead (see build.sh for
    // why the shadow stack is larger than the recursion that limit allows).
    config
        .text_encoding(true)
        .bytecode_stripping(javy::BytecodeStripping::Source);
    let runtime = Runtime::new(config).expect("the QuickJS runtime starts");
    let helpers = runtime.context().with(|ctx| {
        let host = native::host_object(&ctx).expect("native functions register");
        let install: Function = ctx
            .eval(include_str!("prelude.js"))
            .expect("prelude.js evaluates to a function");
        let helpers: Object = install
            .call((host,))
            .expect("prelude.js installs the globals");
        Persistent::save(&ctx, helpers)
    });
    let shapes = runtime.context().with(|ctx| {
        let shapes = json::parse(&ctx, SHAPES).expect("SHAPES is JSON");
        Persistent::save(&ctx, shapes)
    });
    Engine {
        runtime,
        helpers,
        _shapes: shapes,
    }
}

fn with_engine<R>(f: impl FnOnce(&Engine) -> R) -> R {
    ENGINE.with(|cell| f(cell.get_or_init(build_engine)))
}

/// Called once by Wizer at build time; its memory becomes the snapshot.
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn wizer_initialize() {
    with_engine(|_| ());
}

struct Component;

impl Guest for Component {
    fn compile(source: String) -> Result<Vec<u8>, CompileError> {
        system::host_is_here();
        with_engine(|engine| {
            engine.runtime.context().with(|ctx| {
                let written = Module::declare(ctx.clone(), SCRIPT_NAME, source).and_then(|m| {
                    m.write(WriteOptions {
                        strip_source: true,
                        ..WriteOptions::default()
                    })
                });
                written.map_err(|e| compile_error(&ctx, e))
            })
        })
    }

    fn run(
        bytecode: Vec<u8>,
        input: String,
        context: String,
        options: RunOptions,
    ) -> Result<RunOutput, RunError> {
        system::host_is_here();
        with_engine(|engine| {
            let result = engine.runtime.context().with(|ctx| {
                let helpers = engine.helpers.clone().restore(&ctx).map_err(|e| {
                    run_error(&ctx, e, ErrorKind::JsError, "restoring helpers failed")
                })?;
                run_module(&ctx, &helpers, &bytecode, &input, &context, options)
            });
            // Settle anything the script left queued, so work it started but
            // did not await still happens inside the run.
            let _ = engine.runtime.resolve_pending_jobs();
            result
        })
    }
}

fn run_module<'js>(
    ctx: &Ctx<'js>,
    helpers: &Object<'js>,
    bytecode: &[u8],
    input: &str,
    context: &str,
    options: RunOptions,
) -> Result<RunOutput, RunError> {
    let thrown = |e: JsError| run_error(ctx, e, ErrorKind::JsError, "");

    // SAFETY: the host only passes bytecode that `compile` produced in this
    // same guest build; it never accepts bytecode from users.
    let module = unsafe { Module::load(ctx.clone(), bytecode) }.map_err(|e| {
        run_error(
            ctx,
            e,
            ErrorKind::InvalidScript,
            "the bytecode could not be loaded",
        )
    })?;
    let (module, evaluated) = module.eval().map_err(thrown)?;
    settle(ctx, evaluated).map_err(thrown)?;

    let main: Value = module.get("default").map_err(thrown)?;
    if !(main.is_function() || main.is_object()) {
        return Err(RunError {
            kind: ErrorKind::InvalidScript,
            message: "the script has no default export function or object of handlers \
                      (write `export default async function (input, ctx) { ... }` or \
                      `export default { async fetch(request, env, ctx) { ... } }`)"
                .into(),
            stack: None,
        });
    }

    let input = json::parse(ctx, input).map_err(thrown)?;
    let context = json::parse(ctx, context).map_err(thrown)?;
    // The function form is called directly; the handler form goes through
    // the prelude's dispatch.
    let returned: Value = match main.as_function() {
        Some(main) => main.call((input, context)).map_err(thrown)?,
        None => {
            let invoke: Function = helpers.get("invoke").map_err(thrown)?;
            invoke.call((main, input, context)).map_err(thrown)?
        }
    };
    let result = settle_value(ctx, returned).map_err(thrown)?;

    let to_reply: Function = helpers.get("toReply").map_err(thrown)?;
    let reply: Value = to_reply.call((result.clone(),)).map_err(thrown)?;
    if !reply.is_null() {
        let reply = settle_value(ctx, reply).map_err(thrown)?;
        let reply = read_reply(ctx, reply, options.max_output_bytes)?;
        let json = format!(
            "{{\"status\":{},\"body\":{}}}",
            reply.status,
            serde_json::to_string(&reply.body).unwrap_or_else(|_| "null".into())
        );
        return Ok(RunOutput {
            json,
            reply: Some(reply),
        });
    }

    let json = output_json(ctx, result)?;
    if json.len() > options.max_output_bytes as usize {
        return Err(output_limit(json.len(), options.max_output_bytes));
    }
    Ok(RunOutput { json, reply: None })
}

/// Turns the script's return value into JSON. `undefined` (no return) is
/// `null`; functions, symbols, BigInts and cycles are `output-error`.
fn output_json<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<String, RunError> {
    if value.is_undefined() {
        return Ok("null".into());
    }
    let kind = value.type_name();
    match ctx.json_stringify(value) {
        Ok(Some(json)) => json.to_string().map_err(|e| RunError {
            kind: ErrorKind::OutputError,
            message: format!("the return value is not valid text: {e}"),
            stack: None,
        }),
        Ok(None) => Err(RunError {
            kind: ErrorKind::OutputError,
            message: format!("the script returned a {kind}, which has no JSON form"),
            stack: None,
        }),
        Err(e) => {
            let detail = describe_exception(ctx, e);
            Err(RunError {
                kind: ErrorKind::OutputError,
                message: format!("the return value cannot be turned into JSON: {}", detail.0),
                stack: None,
            })
        }
    }
}

fn output_limit(len: usize, max: u32) -> RunError {
    RunError {
        kind: ErrorKind::OutputLimit,
        message: format!("the output is {len} bytes, over the limit of {max} bytes"),
        stack: None,
    }
}

fn read_reply<'js>(ctx: &Ctx<'js>, reply: Value<'js>, max: u32) -> Result<Reply, RunError> {
    let bad = |e: JsError| run_error(ctx, e, ErrorKind::OutputError, "");
    let reply = reply.into_object().ok_or_else(|| RunError {
        kind: ErrorKind::OutputError,
        message: "the Response could not be read".into(),
        stack: None,
    })?;
    let status: u16 = reply.get("status").map_err(bad)?;
    let body: String = reply.get("body").map_err(bad)?;
    let pairs: Vec<Vec<String>> = reply.get("headers").map_err(bad)?;
    let headers = pairs
        .into_iter()
        .filter_map(|mut pair| {
            let value = pair.pop()?;
            let name = pair.pop()?;
            Some((name, value))
        })
        .collect();
    if body.len() > max as usize {
        return Err(output_limit(body.len(), max));
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Drains the job queue until `promise` settles; rejects with its reason.
fn settle<'js>(ctx: &Ctx<'js>, promise: Promise<'js>) -> Result<Value<'js>, JsError> {
    loop {
        match promise.state() {
            PromiseState::Resolved | PromiseState::Rejected => {
                return promise.result::<Value>().expect("the promise settled");
            }
            PromiseState::Pending => {
                if !ctx.execute_pending_job() {
                    return Err(never_settles(ctx));
                }
            }
        }
    }
}

fn settle_value<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<Value<'js>, JsError> {
    match value.as_promise() {
        Some(promise) => settle(ctx, promise.clone()),
        None => Ok(value),
    }
}

/// Nothing outside the guest can resolve a promise later (host calls finish
/// before they return), so a promise still pending with an empty job queue
/// never settles: fail now instead of waiting out the deadline.
fn never_settles(ctx: &Ctx<'_>) -> JsError {
    javy::quickjs::Exception::throw_message(
        ctx,
        "the script's promise never settled (it awaits something that nothing resolves)",
    )
}

/// The message and stack of whatever was thrown, Error or not.
fn describe_exception(ctx: &Ctx<'_>, error: JsError) -> (String, Option<String>) {
    if !error.is_exception() {
        return (error.to_string(), None);
    }
    let thrown = ctx.catch();
    if let Some(exception) = thrown.as_exception() {
        let name: String = exception
            .get("name")
            .unwrap_or_else(|_| "Error".to_string());
        let message = exception.message().unwrap_or_default();
        let stack = exception.stack().filter(|s| !s.trim().is_empty());
        let message = if message.is_empty() {
            name
        } else {
            format!("{name}: {message}")
        };
        return (message, stack);
    }
    // `throw "text"`, `throw 42`, `throw {code: 1}`: say what was thrown.
    let text = match ctx.json_stringify(thrown.clone()) {
        Ok(Some(json)) if !thrown.is_string() => json.to_string().unwrap_or_default(),
        _ => thrown
            .as_string()
            .and_then(|s| s.to_string().ok())
            .unwrap_or_else(|| format!("a thrown {}", thrown.type_name())),
    };
    (format!("Uncaught {text}"), None)
}

fn run_error(ctx: &Ctx<'_>, error: JsError, kind: ErrorKind, context: &str) -> RunError {
    let (message, stack) = describe_exception(ctx, error);
    let kind = classify(&message).unwrap_or(kind);
    let message = if context.is_empty() {
        message
    } else {
        format!("{context}: {message}")
    };
    RunError {
        kind,
        message,
        stack,
    }
}

/// Errors QuickJS raises for exhausted resources get their own kinds.
fn classify(message: &str) -> Option<ErrorKind> {
    if message.contains("stack overflow") || message.contains("Maximum call stack size exceeded") {
        Some(ErrorKind::StackOverflow)
    } else if message.ends_with("out of memory") {
        Some(ErrorKind::MemoryLimit)
    } else {
        None
    }
}

fn compile_error(ctx: &Ctx<'_>, error: JsError) -> CompileError {
    let (message, stack) = describe_exception(ctx, error);
    let (line, column) = stack.as_deref().and_then(location_in).unwrap_or((0, 0));
    CompileError {
        message,
        line,
        column,
    }
}

/// Finds `script.js:LINE:COLUMN` in a QuickJS stack.
fn location_in(stack: &str) -> Option<(u32, u32)> {
    let at = stack.find(SCRIPT_NAME)? + SCRIPT_NAME.len();
    let mut parts = stack[at..].strip_prefix(':')?.splitn(2, ':');
    let line = parts.next()?.parse().ok()?;
    let column: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((line, column.parse().ok()?))
}

export!(Component);

//! The script contract (docs/sandbox.md) and isolation between runs.

use scriptbox::sandbox::{CompileFailure, ErrorKind, LogLevel};
use scriptbox_tests::{output, run, run_as, sandbox};
use serde_json::json;

#[tokio::test]
async fn the_default_export_gets_input_and_ctx_and_may_be_async() {
    let sandbox = sandbox();
    let script = "export default async function (input, ctx) {
        await null;
        return { sum: input.a + input.b, trigger: ctx.trigger, tenant: ctx.tenantId, attempt: ctx.attempt };
    }";
    let outcome = run(&sandbox, script, json!({ "a": 2, "b": 3 })).await;
    assert_eq!(
        output(&outcome),
        json!({ "sum": 5, "trigger": "manual", "tenant": "t1", "attempt": 0 })
    );
}

/// The guest parses `input` itself (integers as QuickJS integers, so
/// arithmetic on them takes the fast paths); what a script sees must be
/// exactly what `JSON.parse` makes of the same text.
#[tokio::test]
async fn the_input_is_what_json_parse_makes_of_it() {
    let sandbox = sandbox();
    let value = json!({
        "10": true, "z": 1, "__proto__": { "polluted": 1 }, "constructor": "c",
        "ints": [0, -1, 2147483647, 2147483648u64, -2147483648i64, -2147483649i64,
                 9007199254740993u64, u64::MAX, i64::MIN],
        "floats": [0.1, -0.0, 1.5e300, 5e-324, 0.30000000000000004, 25.0],
        "text": ["", "h\u{e9}", "\u{1F600}", "a\"b\\c\n"],
        "nested": [[[]], {}, { "a": { "b": [null, false] } }],
    });
    let script = "export default (input) => {
        const expected = JSON.parse(input.text);
        const differences = [];
        const compare = (a, b, path) => {
            if (typeof a !== typeof b || !Object.is(a, b) && (typeof a !== 'object' || a === null || b === null)) {
                differences.push(`${path}: ${String(a)} vs ${String(b)}`);
                return;
            }
            if (typeof a !== 'object' || a === null) return;
            if (Array.isArray(a) !== Array.isArray(b)) differences.push(`${path}: array or not`);
            if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) differences.push(`${path}: prototype`);
            const keys = Reflect.ownKeys(a), expectedKeys = Reflect.ownKeys(b);
            if (keys.join() !== expectedKeys.join()) differences.push(`${path}: keys ${keys} vs ${expectedKeys}`);
            for (const key of expectedKeys) {
                const d = Object.getOwnPropertyDescriptor(a, key) ?? {};
                const e = Object.getOwnPropertyDescriptor(b, key);
                for (const flag of ['writable', 'enumerable', 'configurable']) {
                    if (d[flag] !== e[flag]) differences.push(`${path}.${key}: ${flag}`);
                }
                compare(a[key], b[key], `${path}.${key}`);
            }
        };
        compare(input.value, expected, 'input');
        return { differences, polluted: ({}).polluted ?? null, sum: input.value.z + input.value.ints[2] };
    }";
    let input = json!({ "value": value, "text": value.to_string() });
    let outcome = run(&sandbox, script, input).await;
    assert_eq!(
        output(&outcome),
        json!({ "differences": [], "polluted": null, "sum": 2147483648u64 })
    );
}

#[tokio::test]
async fn console_output_is_captured_with_levels() {
    let sandbox = sandbox();
    let script = "export default () => {
        console.log('hello', 1, { a: [1, 2] });
        console.info('info');
        console.warn('careful');
        console.error(new Error('boom'));
        console.debug('details');
    }";
    let outcome = run(&sandbox, script, json!(null)).await;
    let lines: Vec<(LogLevel, &str)> = outcome
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(lines[0], (LogLevel::Info, "hello 1 {\"a\":[1,2]}"));
    assert_eq!(lines[1], (LogLevel::Info, "info"));
    assert_eq!(lines[2], (LogLevel::Warn, "careful"));
    assert_eq!(lines[3].0, LogLevel::Error);
    assert!(lines[3].1.starts_with("Error: boom"), "{}", lines[3].1);
    assert_eq!(lines[4], (LogLevel::Debug, "details"));
}

#[tokio::test]
async fn syntax_errors_come_back_with_line_and_column() {
    let sandbox = sandbox();
    let source = "export default () => {\n  const x = ;\n}";
    match sandbox.compile(source).await {
        Err(CompileFailure::Syntax(e)) => {
            assert_eq!(e.line, 2, "{e:?}");
            assert!(e.column > 0, "{e:?}");
            assert!(e.message.starts_with("SyntaxError"), "{e:?}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_module_without_a_default_function_fails_clearly() {
    let sandbox = sandbox();
    let failure = run(&sandbox, "export const x = 1;", json!(null))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.kind, ErrorKind::JsError);
    assert!(
        failure.message.contains("no default export function"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_returned_response_becomes_the_reply() {
    let sandbox = sandbox();
    let script =
        "export default () => new Response('created', { status: 201, headers: { 'X-Id': '7' } })";
    let outcome = run(&sandbox, script, json!(null)).await;
    let success = outcome.result.expect("the run succeeds");
    let reply = success.reply.expect("a reply");
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body, "created");
    assert_eq!(reply.headers, vec![("x-id".to_string(), "7".to_string())]);
    let json: serde_json::Value = serde_json::from_str(&success.output).unwrap();
    assert_eq!(json, json!({ "status": 201, "body": "created" }));
}

#[tokio::test]
async fn globals_of_the_contract_exist() {
    let sandbox = sandbox();
    let script = "export default () => {
        const bytes = new TextEncoder().encode('héllo');
        const id = crypto.randomUUID();
        return {
            bytes: bytes.length,
            text: new TextDecoder().decode(bytes),
            uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id),
            fresh: id !== crypto.randomUUID(),
            fetch: typeof fetch === typeof sdk.http.fetch,
            now: Math.abs(Date.now() - new Date().getTime()) < 5000,
        };
    }";
    let outcome = run(&sandbox, script, json!(null)).await;
    assert_eq!(
        output(&outcome),
        json!({ "bytes": 6, "text": "héllo", "uuid": true, "fresh": true, "fetch": true, "now": true })
    );
}

#[tokio::test]
async fn random_values_differ_between_runs() {
    let sandbox = sandbox();
    let script = "export default () => [Math.random(), crypto.randomUUID()]";
    let a = output(&run(&sandbox, script, json!(null)).await);
    let b = output(&run(&sandbox, script, json!(null)).await);
    assert_ne!(a[0], b[0], "Math.random is not frozen into the snapshot");
    assert_ne!(a[1], b[1]);
}

#[tokio::test]
async fn db_and_cache_persist_per_tenant() {
    let sandbox = sandbox();
    let counter = "export default async () => {
        const n = Number(await sdk.db.get('count') ?? 0) + 1;
        await sdk.db.set('count', String(n));
        await sdk.cache.set('last', String(n), { ttlMs: 60000 });
        return { n, cached: await sdk.cache.get('last'), keys: await sdk.db.list('co') };
    }";
    let limits = sandbox.config().default_limits();
    let first = run_as(&sandbox, "t1", counter, json!(null), limits).await;
    assert_eq!(
        output(&first),
        json!({ "n": 1, "cached": "1", "keys": ["count"] })
    );
    let second = run_as(&sandbox, "t1", counter, json!(null), limits).await;
    assert_eq!(
        output(&second),
        json!({ "n": 2, "cached": "2", "keys": ["count"] })
    );
    let other = run_as(&sandbox, "t2", counter, json!(null), limits).await;
    assert_eq!(
        output(&other),
        json!({ "n": 1, "cached": "1", "keys": ["count"] })
    );
    assert_eq!(first.usage.api.db.calls, 3);
    assert_eq!(first.usage.api.cache.calls, 2);

    let bad = "export default async () => { try { await sdk.db.set('', 'x'); } catch (e) { return e.message; } }";
    assert_eq!(
        output(&run(&sandbox, bad, json!(null)).await),
        json!("key must not be empty")
    );
    let not_string = "export default async () => { try { await sdk.db.set('k', 5); } catch (e) { return e.message; } }";
    assert!(
        output(&run(&sandbox, not_string, json!(null)).await)
            .as_str()
            .unwrap()
            .contains("value must be a string")
    );
}

#[tokio::test]
async fn nothing_a_run_writes_is_visible_to_the_next() {
    let sandbox = sandbox();
    let polluter = "export default () => {
        globalThis.leaked = 'secret';
        Object.prototype.injected = 'yes';
        JSON.stringify = () => '\"hijacked\"';
        Array.prototype.map = () => 'hijacked';
        console.log = () => {};
        return 'done';
    }";
    let probe = "export default () => ({
        leaked: typeof globalThis.leaked,
        injected: ({}).injected === undefined,
        stringify: JSON.stringify({ a: 1 }),
        map: [1, 2].map((x) => x * 2),
    })";
    let limits = sandbox.config().default_limits();
    let polluted = run_as(&sandbox, "t1", polluter, json!(null), limits).await;
    assert!(polluted.result.is_ok());
    let expected =
        json!({ "leaked": "undefined", "injected": true, "stringify": "{\"a\":1}", "map": [2, 4] });
    for tenant in ["t1", "t2"] {
        let outcome = run_as(&sandbox, tenant, probe, json!(null), limits).await;
        assert_eq!(output(&outcome), expected, "tenant {tenant}");
    }
}

#[tokio::test]
async fn concurrent_runs_each_get_their_own_instance() {
    let sandbox = sandbox();
    let script = "export default async (input) => { globalThis.mine = input.n; await null; return globalThis.mine * 2; }";
    let bytecode = sandbox.compile(script).await.unwrap();
    let limits = sandbox.config().default_limits();
    let runs = (0..200).map(|n| {
        let sandbox = sandbox.clone();
        let bytecode = bytecode.clone();
        tokio::spawn(async move {
            let request = scriptbox::sandbox::RunRequest {
                tenant: "t1".into(),
                input: json!({ "n": n }).to_string(),
                context: "{}".into(),
                limits,
            };
            (n, sandbox.run(&bytecode, request).await)
        })
    });
    for handle in runs.collect::<Vec<_>>() {
        let (n, outcome) = handle.await.unwrap();
        assert_eq!(output(&outcome), json!(n * 2));
    }
    let stats = sandbox.pool_stats();
    assert_eq!(stats.in_use, 0);
    assert!(stats.max == 4);
}

#[tokio::test]
async fn compiled_bytecode_is_cached_per_script_version() {
    let sandbox = sandbox();
    let v1 = sandbox
        .compile_cached("s1", 1, "export default () => 1")
        .await
        .unwrap();
    assert!(sandbox.is_cached("s1", 1));
    let again = sandbox
        .compile_cached("s1", 1, "ignored: cached")
        .await
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&v1, &again));
    sandbox.forget("s1", 1);
    assert!(!sandbox.is_cached("s1", 1));
    assert!(!sandbox.is_cached("s1", 2));
}

/// The guest answers its C library's clock calls from the host: `new Date()`
/// is the host's time, not the build machine's clock frozen into the snapshot.
#[tokio::test]
async fn the_clock_scripts_see_is_the_hosts() {
    let sandbox = sandbox();
    let script = "export default () => ({ date: new Date().getTime(), now: Date.now() })";
    let epoch_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as f64
    };
    let before = epoch_ms();
    let out = output(&run(&sandbox, script, json!(null)).await);
    let after = epoch_ms();
    for key in ["date", "now"] {
        let ms = out[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {out}"));
        assert!(
            (before..=after).contains(&ms),
            "{key} = {ms} is not between {before} and {after}"
        );
    }
}

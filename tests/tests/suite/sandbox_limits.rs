//! Every limit from both sides: just under succeeds, over fails with its own
//! error kind, and the sandbox keeps serving afterwards.

use scriptbox::sandbox::{ErrorKind, RunLimits, RunOutcome, Sandbox};
use scriptbox_tests::{output, run, run_as, sandbox};
use serde_json::json;

const OK_SCRIPT: &str = "export default (input) => ({ ok: true, n: input.n + 1 })";

fn failure_kind(outcome: &RunOutcome) -> ErrorKind {
    match &outcome.result {
        Ok(success) => panic!("expected a failure, got {}", success.output),
        Err(failure) => failure.kind,
    }
}

/// After any failure, a normal run on the same sandbox still succeeds.
async fn still_serves(sandbox: &Sandbox) {
    let outcome = run(sandbox, OK_SCRIPT, json!({ "n": 41 })).await;
    assert_eq!(output(&outcome), json!({ "ok": true, "n": 42 }));
}

fn limits(sandbox: &Sandbox) -> RunLimits {
    sandbox.config().default_limits()
}

/// The default limits with memory capped at `mb` MiB.
fn memory_capped(sandbox: &Sandbox, mb: u32) -> RunLimits {
    RunLimits {
        memory_mb: mb,
        ..limits(sandbox)
    }
}

/// Allocates `mb` MiB in 1 MiB strings and keeps them alive.
fn allocate(mb: u32) -> String {
    format!(
        "export default () => {{
            const keep = [];
            for (let i = 0; i < {mb}; i++) keep.push(new Uint8Array(1 << 20));
            return keep.length;
        }}"
    )
}

#[tokio::test]
async fn memory_under_the_cap_succeeds_and_over_it_fails_with_memory_limit() {
    let sandbox = sandbox();
    let capped = memory_capped(&sandbox, 32);
    let under = run_as(&sandbox, "t1", &allocate(16), json!(null), capped).await;
    assert_eq!(output(&under), json!(16));
    assert!(under.usage.memory_peak_bytes > 16 << 20);
    assert!(under.usage.memory_peak_bytes <= 32 << 20);

    let over = run_as(&sandbox, "t1", &allocate(40), json!(null), capped).await;
    assert_eq!(failure_kind(&over), ErrorKind::MemoryLimit);
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn a_memory_bomb_fails_with_memory_limit() {
    let sandbox = sandbox();
    let bomb = "export default () => { const keep = []; while (true) keep.push(new Array(10000).fill(keep.length)); }";
    let outcome = run(&sandbox, bomb, json!(null)).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::MemoryLimit);
    still_serves(&sandbox).await;
}

/// Rounds of small blocks of many sizes (both sides of the guest
/// allocator's 1 KiB limit for size classes), each round dropped before the
/// next, plus a string grown one character at a time: about 75 MiB
/// allocated in all, so under a 32 MiB cap it succeeds only if freed blocks
/// are handed out again, and each value is checked so a block handed out
/// twice or moved without its contents fails it.
const CHURN: &str = "export default () => {
    let total = 0;
    for (let round = 0; round < 50; round++) {
        const live = [];
        for (let i = 0; i < 2000; i++) {
            const len = (i * 7 + round) % 1500;
            live.push({ i, s: String.fromCharCode(97 + (i % 26)).repeat(len) });
        }
        for (const o of live) {
            const len = (o.i * 7 + round) % 1500;
            const ch = String.fromCharCode(97 + (o.i % 26));
            if (o.s.length !== len || (len > 0 && (o.s[0] !== ch || o.s[len - 1] !== ch))) {
                throw new Error(`round ${round} block ${o.i}: ${o.s.length} bytes`);
            }
            total += len;
        }
    }
    let grown = '';
    for (let k = 0; k < 3000; k++) grown += 'ab'[k % 2];
    if (grown.length !== 3000 || grown.slice(-4) !== 'abab') throw new Error('grown string');
    return total;
}";

#[tokio::test]
async fn freed_memory_is_reused_and_blocks_keep_their_contents() {
    let sandbox = sandbox();
    let capped = memory_capped(&sandbox, 32);
    let outcome = run_as(&sandbox, "t1", CHURN, json!(null), capped).await;
    let expected: u64 = (0..50u64)
        .flat_map(|round| (0..2000u64).map(move |i| (i * 7 + round) % 1500))
        .sum();
    assert_eq!(output(&outcome), json!(expected));
    assert!(outcome.usage.memory_peak_bytes <= 32 << 20);
    still_serves(&sandbox).await;
}

const LOOP_N: &str =
    "export default (input) => { let x = 0; for (let i = 0; i < input.n; i++) x += i; return x; }";

#[tokio::test]
async fn fuel_under_the_cap_succeeds_and_over_it_fails_with_cpu_limit() {
    let sandbox = sandbox();
    let measured = run(&sandbox, LOOP_N, json!({ "n": 100_000 })).await;
    assert_eq!(output(&measured), json!(4_999_950_000u64));
    let needed = measured.usage.fuel_used;

    let enough = RunLimits {
        fuel: needed + needed / 10,
        ..limits(&sandbox)
    };
    let under = run_as(&sandbox, "t1", LOOP_N, json!({ "n": 100_000 }), enough).await;
    assert_eq!(output(&under), json!(4_999_950_000u64));

    let short = RunLimits {
        fuel: needed / 2,
        ..limits(&sandbox)
    };
    let over = run_as(&sandbox, "t1", LOOP_N, json!({ "n": 100_000 }), short).await;
    assert_eq!(failure_kind(&over), ErrorKind::CpuLimit);
    assert_eq!(over.usage.fuel_used, needed / 2);
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel() {
    let sandbox = sandbox();
    let forever = "export default () => { while (true) {} }";
    let limited = RunLimits {
        fuel: 200_000_000,
        timeout_ms: 60_000,
        ..limits(&sandbox)
    };
    let outcome = run_as(&sandbox, "t1", forever, json!(null), limited).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::CpuLimit);
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn a_run_past_its_deadline_fails_with_timeout_and_one_within_it_succeeds() {
    let sandbox = sandbox();
    let unlimited_fuel = RunLimits {
        fuel: 40_000_000_000,
        timeout_ms: 5_000,
        ..limits(&sandbox)
    };
    let quick = run_as(&sandbox, "t1", LOOP_N, json!({ "n": 1000 }), unlimited_fuel).await;
    assert_eq!(output(&quick), json!(499_500));

    let tight = RunLimits {
        timeout_ms: 100,
        ..unlimited_fuel
    };
    let forever = "export default () => { while (true) {} }";
    let outcome = run_as(&sandbox, "t1", forever, json!(null), tight).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::Timeout);
    assert!(
        outcome.usage.wall.as_millis() >= 100 && outcome.usage.wall.as_millis() < 2_000,
        "interrupted near its deadline, not at it: {:?}",
        outcome.usage.wall
    );
    still_serves(&sandbox).await;
}

/// One thread, two runs: a CPU-bound one that runs until its deadline, and a
/// quick one started beside it. The busy run yields every so often (on fuel),
/// so the quick one finishes long before the busy one is ended.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_run_yields_so_another_run_on_its_thread_finishes_first() {
    let sandbox = sandbox();
    let busy_limits = RunLimits {
        fuel: 40_000_000_000,
        timeout_ms: 1_500,
        ..limits(&sandbox)
    };
    let forever = "export default () => { while (true) {} }";
    let started = std::time::Instant::now();
    let busy = async {
        let outcome = run_as(&sandbox, "t1", forever, json!(null), busy_limits).await;
        (outcome, started.elapsed())
    };
    let quick = async {
        // Let the busy run start first.
        tokio::task::yield_now().await;
        let outcome = run(&sandbox, OK_SCRIPT, json!({ "n": 1 })).await;
        (outcome, started.elapsed())
    };
    let ((busy, busy_ended), (quick, quick_ended)) = tokio::join!(busy, quick);
    assert_eq!(failure_kind(&busy), ErrorKind::Timeout);
    assert_eq!(output(&quick), json!({ "ok": true, "n": 2 }));
    assert!(
        quick_ended + std::time::Duration::from_millis(500) < busy_ended,
        "the quick run ended at {quick_ended:?}, the busy one at {busy_ended:?}"
    );
}

#[tokio::test]
async fn deep_recursion_works_and_unbounded_recursion_is_a_stack_overflow() {
    let sandbox = sandbox();
    let depth =
        "function f(n) { return n === 0 ? 0 : f(n - 1) + 1; } export default (input) => f(input.n)";
    assert_eq!(
        output(&run(&sandbox, depth, json!({ "n": 8000 })).await),
        json!(8000)
    );

    let recurse = "function f(n) { return f(n + 1) + 1; } export default () => f(0)";
    let outcome = run(&sandbox, recurse, json!(null)).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::StackOverflow);

    // Many arguments per call use the interpreter's own stack faster than
    // the wasm stack; that overflow is a stack overflow too.
    let wide = "function f(n, a, b, c, d, e, g, h, i, j, k, l, m, o, p, q, r, s, t, u, v) {
            return f(n + 1, a, b, c, d, e, g, h, i, j, k, l, m, o, p, q, r, s, t, u, v) + 1; }
        export default () => f(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)";
    let outcome = run(&sandbox, wide, json!(null)).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::StackOverflow);
    still_serves(&sandbox).await;
}

/// A runaway recursion writes most of the guest's 4 MiB shadow stack, and
/// every later teardown of its memory slot resets what it wrote: the pool
/// renews its engine once its idle slots reset that much, and runs go on
/// from the new engine, with bytecode compiled before. Small runs alone
/// never renew it. The pool has one shard here, shared by both threads, so
/// exactly one engine is worn and renewed (each shard renews its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_worn_by_a_runaway_recursion_are_renewed() {
    use scriptbox::sandbox::{FetchConfig, MemoryKv, RENEW_ABOVE_BYTES, SandboxConfig};
    use std::time::{Duration, Instant};

    let config = SandboxConfig {
        pool_min: 1,
        pool_max: 4,
        ..SandboxConfig::default()
    };
    let db = std::sync::Arc::new(MemoryKv::default());
    let sandbox = Sandbox::start_sharded(config, FetchConfig::default(), db, 1).unwrap();
    let mut metrics = scriptbox::metrics::Metrics::new();
    metrics.attach_sandbox(&sandbox);
    // `/metrics` reports the same two figures as the pool.
    let exported = |name: &str| -> f64 {
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let small = sandbox.compile(OK_SCRIPT).await.unwrap();
    let runaway = sandbox
        .compile("function f(n) { return f(n + 1) + 1; } export default () => f(0)")
        .await
        .unwrap();
    let limits = sandbox.config().default_limits();
    let request = move |n: u64| scriptbox::sandbox::RunRequest {
        tenant: "t1".into(),
        input: json!({ "n": n }).to_string(),
        context: "{}".into(),
        limits,
    };

    // Small runs over three of the pool's checks (one a second).
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(3_200) {
        let outcome = sandbox.run(&small, request(n)).await;
        assert_eq!(output(&outcome), json!({ "ok": true, "n": n + 1 }));
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = sandbox.pool_stats();
    assert_eq!(stats.renewals, 0, "{stats:?}");
    assert!(stats.idle_slot_reset_bytes > 0, "{stats:?}");
    assert!(stats.idle_slot_reset_bytes < RENEW_ABOVE_BYTES, "{stats:?}");
    assert_eq!(exported("scriptbox_sandbox_pool_renewals_total"), 0.0);
    let reset = exported("scriptbox_sandbox_idle_slot_reset_bytes");
    assert!(reset > 0.0 && reset < RENEW_ABOVE_BYTES as f64, "{reset}");

    // Runaway recursions, four at a time (the pool's size), a few rounds.
    for _ in 0..3 {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let (sandbox, runaway) = (sandbox.clone(), runaway.clone());
                tokio::spawn(async move { sandbox.run(&runaway, request(0)).await })
            })
            .collect();
        for run in runs {
            assert_eq!(failure_kind(&run.await.unwrap()), ErrorKind::StackOverflow);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox.pool_stats().renewals == 0 {
        assert!(
            Instant::now() < deadline,
            "never renewed: {:?}",
            sandbox.pool_stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bytecode compiled from the old engine runs in the new one.
    for n in 0..20 {
        let outcome = sandbox.run(&small, request(n)).await;
        assert_eq!(output(&outcome), json!({ "ok": true, "n": n + 1 }));
    }
    let stats = sandbox.pool_stats();
    assert_eq!(stats.renewals, 1, "{stats:?}");
    assert!(stats.idle_slot_reset_bytes < RENEW_ABOVE_BYTES, "{stats:?}");
    assert_eq!(stats.in_use, 0, "{stats:?}");
    assert_eq!(exported("scriptbox_sandbox_pool_renewals_total"), 1.0);
    // Rendering again does not count the renewal twice.
    assert_eq!(exported("scriptbox_sandbox_pool_renewals_total"), 1.0);
}

#[tokio::test]
async fn output_over_the_limit_fails_with_output_limit() {
    let sandbox = sandbox();
    let small = RunLimits {
        max_output_bytes: 1000,
        ..limits(&sandbox)
    };
    let fits = "export default () => 'x'.repeat(900)";
    let outcome = run_as(&sandbox, "t1", fits, json!(null), small).await;
    assert_eq!(output(&outcome), json!("x".repeat(900)));

    let huge = "export default () => 'x'.repeat(2000)";
    let outcome = run_as(&sandbox, "t1", huge, json!(null), small).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::OutputLimit);
    still_serves(&sandbox).await;
}

/// The last log line of a run that wrote more than its budget.
fn truncation_note(outcome: &scriptbox::sandbox::RunOutcome) -> String {
    outcome.logs.last().expect("a log line").message.clone()
}

#[tokio::test]
async fn logs_past_the_byte_budget_are_counted_not_kept() {
    let sandbox = sandbox();
    let small = RunLimits {
        max_log_bytes: 10_000,
        ..limits(&sandbox)
    };
    let chatty = "export default (input) => { for (let i = 0; i < input.n; i++) console.log('x'.repeat(100)); return input.n; }";
    // 50 lines of 100 bytes cost 50 * (100 + 64) = 8,200 bytes: all kept.
    let fits = run_as(&sandbox, "t1", chatty, json!({ "n": 50 }), small).await;
    assert_eq!(output(&fits), json!(50));
    assert_eq!(fits.logs.len(), 50);

    // The run goes on past the budget and completes; 60 lines fit.
    let outcome = run_as(&sandbox, "t1", chatty, json!({ "n": 100_000 }), small).await;
    assert_eq!(output(&outcome), json!(100_000));
    assert_eq!(outcome.logs.len(), 61, "60 lines, then the note");
    assert_eq!(truncation_note(&outcome), "[truncated: 99940 more lines]");
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn empty_log_lines_cost_their_overhead_and_the_line_count_is_capped() {
    let sandbox = sandbox();
    let limits = limits(&sandbox);
    assert_eq!(limits.max_log_lines, 1_000);
    // Empty lines: the line cap (1,000) comes before the byte budget
    // (262,144 / 64 = 4,096 lines).
    let empty =
        "export default () => { for (let i = 0; i < 200000; i++) console.log(); return 1; }";
    let outcome = run_as(&sandbox, "t1", empty, json!(null), limits).await;
    assert_eq!(output(&outcome), json!(1));
    assert_eq!(outcome.logs.len(), 1_001);
    assert_eq!(truncation_note(&outcome), "[truncated: 199000 more lines]");

    // With a higher line cap, the overhead bounds empty lines by bytes.
    let many = RunLimits {
        max_log_lines: 1_000_000,
        ..limits
    };
    let outcome = run_as(&sandbox, "t1", empty, json!(null), many).await;
    assert_eq!(outcome.logs.len(), 4_096 + 1);

    // An endless loop of empty lines ends on its fuel (or its deadline, on a
    // slow machine), with bounded logs.
    let endless = "export default () => { for (;;) console.log(); }";
    let outcome = run_as(&sandbox, "t1", endless, json!(null), limits).await;
    let kind = failure_kind(&outcome);
    assert!(
        matches!(kind, ErrorKind::CpuLimit | ErrorKind::Timeout),
        "{kind}"
    );
    assert_eq!(outcome.logs.len(), 1_001);
    assert!(truncation_note(&outcome).starts_with("[truncated: "));
    let stored = serde_json::to_string(&outcome.logs).unwrap();
    assert!(stored.len() < 100_000, "{} bytes of logs", stored.len());
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn a_promise_that_never_settles_fails_at_once() {
    let sandbox = sandbox();
    let stuck = "export default async () => { await new Promise(() => {}); return 1; }";
    let outcome = run(&sandbox, stuck, json!(null)).await;
    assert_eq!(failure_kind(&outcome), ErrorKind::JsError);
    let failure = outcome.result.unwrap_err();
    assert!(
        failure.message.contains("never settled"),
        "{}",
        failure.message
    );
    assert!(
        outcome.usage.wall.as_secs() < 2,
        "does not wait for the deadline"
    );
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn throwing_a_non_error_value_fails_with_what_was_thrown() {
    let sandbox = sandbox();
    for (thrown, expected) in [
        ("'plain text'", "Uncaught plain text"),
        ("42", "Uncaught 42"),
        ("({ code: 7 })", "Uncaught {\"code\":7}"),
    ] {
        let script = format!("export default () => {{ throw {thrown}; }}");
        let outcome = run(&sandbox, &script, json!(null)).await;
        let failure = outcome.result.unwrap_err();
        assert_eq!(failure.kind, ErrorKind::JsError);
        assert_eq!(failure.message, expected);
    }
    still_serves(&sandbox).await;
}

#[tokio::test]
async fn a_thrown_error_carries_its_message_and_stack() {
    let sandbox = sandbox();
    let script =
        "function inner() { throw new TypeError('bad input'); }\nexport default () => inner();";
    let failure = run(&sandbox, script, json!(null)).await.result.unwrap_err();
    assert_eq!(failure.kind, ErrorKind::JsError);
    assert_eq!(failure.message, "TypeError: bad input");
    let stack = failure.stack.expect("a stack");
    assert!(stack.contains("inner"), "{stack}");
    assert!(stack.contains("script.js:1"), "{stack}");
}

#[tokio::test]
async fn non_json_return_values_fail_with_output_error() {
    let sandbox = sandbox();
    for script in [
        "export default () => () => 1",
        "export default () => Symbol('x')",
        "export default () => 10n",
        "export default () => { const a = {}; a.self = a; return a; }",
    ] {
        let outcome = run(&sandbox, script, json!(null)).await;
        assert_eq!(failure_kind(&outcome), ErrorKind::OutputError, "{script}");
    }
    let nothing = run(&sandbox, "export default () => {}", json!(null)).await;
    assert_eq!(output(&nothing), json!(null));
    still_serves(&sandbox).await;
}

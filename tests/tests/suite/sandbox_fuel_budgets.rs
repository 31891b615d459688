//! Fuel budgets of fixture scripts, pinned: a change to the guest, QuickJS or
//! the engine that makes these cost more than 3 % extra fails here, and one
//! that makes them cheaper asks for the figures to be updated.

use scriptbox_tests::{output, run, sandbox};
use serde_json::json;

const TOLERANCE: f64 = 0.03;

fn assert_budget(name: &str, used: u64, pinned: u64) {
    let ratio = used as f64 / pinned as f64;
    assert!(
        (1.0 - TOLERANCE..=1.0 + TOLERANCE).contains(&ratio),
        "{name}: used {used} fuel, pinned {pinned} ({:+.1} %); update the pin if the change is intended",
        (ratio - 1.0) * 100.0
    );
}

#[tokio::test]
async fn fixture_scripts_stay_within_their_fuel_budgets() {
    let sandbox = sandbox();
    let fixtures = [
        (
            "trivial",
            include_str!("../../fixtures/trivial.js"),
            json!({ "n": 1 }),
            json!({ "ok": true, "n": 2 }),
            73_751u64,
        ),
        (
            "fib20",
            include_str!("../../fixtures/fib.js"),
            json!({ "n": 20 }),
            json!(6765),
            16_059_813,
        ),
        (
            "json",
            include_str!("../../fixtures/json.js"),
            json!({ "items": 200 }),
            json!(200),
            11_276_386,
        ),
        (
            "strings",
            include_str!("../../fixtures/strings.js"),
            json!({ "n": 2000 }),
            json!(2000),
            11_914_799,
        ),
    ];
    let mut report = Vec::new();
    for (name, source, input, expected, pinned) in fixtures {
        let outcome = run(&sandbox, source, input).await;
        assert_eq!(output(&outcome), expected, "{name}");
        report.push(format!("{name}={}", outcome.usage.fuel_used));
        assert_budget(name, outcome.usage.fuel_used, pinned);
    }
    eprintln!("fuel used: {}", report.join(" "));
}

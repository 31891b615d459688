//! The `run`, `check` and `cron next` commands, through the real binary.

use crate::common;

use common::scriptbox;

fn script(name: &str, source: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("scriptbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap();
    path
}

#[test]
fn run_prints_the_result_on_stdout_and_logs_on_stderr() {
    let file = script(
        "ok.js",
        "export default (input) => { console.log('got', input.n); console.warn('w'); return { n: input.n + 1 }; }",
    );
    let out = scriptbox()
        .args(["run", file.to_str().unwrap(), "--input", r#"{"n":1}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"n":2}"#);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "got 1\nwarn: w\n");
}

#[test]
fn a_failing_script_exits_1_with_the_error_kind() {
    let file = script(
        "throw.js",
        "export default async () => {\n  await sdk.db.set('k', 5);\n}",
    );
    let out = scriptbox()
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("js_error: TypeError: value must be a string"),
        "{stderr}"
    );
    // The stack locates the script by the path it was run from, and shows
    // none of the runtime's own frames.
    assert!(
        stderr.contains(&format!("at default ({}:2:", file.display())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("eval_script") && !stderr.contains("(script.js"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let spin = script("spin.js", "export default () => { while (true) {} }");
    let out = scriptbox()
        .args(["run", spin.to_str().unwrap(), "--fuel", "1000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("cpu_limit:"));
}

#[test]
fn typescript_files_run_with_their_types_erased() {
    let file = script(
        "typed.ts",
        "interface In { n: number }\n\nexport default (input: In): number => {\n  \
         if (input.n > 1) throw new Error('too big');\n  return input.n + 1;\n};\n",
    );
    let out = scriptbox()
        .args(["run", file.to_str().unwrap(), "--input", r#"{"n":1}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    // The error points at line 4 of the .ts file.
    let out = scriptbox()
        .args(["run", file.to_str().unwrap(), "--input", r#"{"n":5}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("({}:4:", file.display())),
        "{stderr}"
    );
    let out = scriptbox()
        .args(["check", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn bad_usage_exits_2() {
    let file = script("fine.js", "export default () => 1");
    let cases: [&[&str]; 4] = [
        &["run", file.to_str().unwrap(), "--input", "{not json"],
        &["run", "/nonexistent/script.js"],
        &["run", file.to_str().unwrap(), "--memory-mb", "100000"],
        &["run"],
    ];
    for args in cases {
        let out = scriptbox().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn check_reports_ok_or_the_syntax_error_with_its_position() {
    let good = script("good.js", "export default () => 1");
    let out = scriptbox()
        .args(["check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    let bad = script("bad.js", "export default () => {\n  return 1 +;\n}");
    let out = scriptbox()
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.js:2:") && stderr.contains("SyntaxError"),
        "{stderr}"
    );
}

fn cron_next(args: &[&str]) -> (Option<i32>, String, String) {
    let out = scriptbox()
        .args(["cron", "next"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cron_next_prints_fire_times_with_their_offset() {
    let (code, stdout, _) = cron_next(&[
        "0 3 * * ?",
        "--after",
        "2012-11-04T00:00:00-04:00",
        "--zone",
        "America/New_York",
        "--count",
        "2",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        "2012-11-04T03:00:00-05:00\n2012-11-05T03:00:00-05:00\n"
    );

    let (code, stdout, _) = cron_next(&["@every 5m", "--after", "2012-07-09T14:45:00Z"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "2012-07-09T14:50:00Z\n");

    // A fixed offset in --after is the location without --zone.
    let (_, stdout, _) = cron_next(&["14 14 * * *", "--after", "2016-01-03T14:09:03+05:30"]);
    assert_eq!(stdout, "2016-01-03T14:14:00+05:30\n");

    let (code, stdout, _) = cron_next(&["0 0 30 2 *", "--after", "2012-07-09T00:00:00Z"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "none\n");

    // Without --after: from now.
    let (code, stdout, _) = cron_next(&["* * * * *", "--count", "3"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.lines().all(|l| l.ends_with(":00Z")), "{stdout}");
}

#[test]
fn cron_next_agrees_with_every_example() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/cron-examples.tsv");
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if line.starts_with('#') {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        let mut args = vec![columns[0], "--after", columns[1]];
        if let Some(zone) = columns.get(3) {
            args.extend(["--zone", zone]);
        }
        let (code, stdout, stderr) = cron_next(&args);
        assert_eq!(code, Some(0), "{line}: {stderr}");
        let expected = match columns[2] {
            "0001-01-01T00:00:00Z" => "none",
            time => time,
        };
        assert_eq!(stdout.trim(), expected, "{line}");
    }
}

#[test]
fn an_invalid_cron_expression_exits_2_saying_why() {
    let (code, stdout, stderr) = cron_next(&["0 0 * * 7"]);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "invalid cron expression: end of range (7) above maximum (6): 7\n"
    );
    let (code, _, stderr) = cron_next(&["tz=UTC 0 0 * * *"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("invalid cron expression: expected exactly 5 fields"),
        "{stderr}"
    );
    let (code, _, stderr) = cron_next(&["@daily", "--zone", "Nowhere/Land"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("unknown time zone Nowhere/Land"),
        "{stderr}"
    );
}

#[test]
fn stats_print_usage_and_fuel_per_millisecond() {
    let fib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fib.js");
    let out = scriptbox()
        .args(["run", fib.to_str().unwrap(), "--input", "20", "--stats"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6765");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| -> u128 {
        let start = stderr
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{stderr}"));
        stderr[start + name.len() + 1..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (fuel, cpu_us) = (field("fuel_used"), field("cpu_us"));
    assert!(fuel > 1_000_000 && cpu_us > 0, "{stderr}");
    assert_eq!(field("fuel_per_ms"), fuel * 1_000 / cpu_us, "{stderr}");
}

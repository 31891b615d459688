//! The `run` and `check` commands, through the real binary.

use std::process::Command;

fn scriptbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scriptbox"))
}

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
        "export default () => { throw new Error('nope'); }",
    );
    let out = scriptbox()
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("js_error: Error: nope"), "{stderr}");
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

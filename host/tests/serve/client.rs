//! The command line as a client of a live node, through the real binary:
//! `tenant` commands, `login`, `deploy`, `scripts`, `invoke`,
//! `executions`, `logs --follow`; and `cron next` as the API shows times.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Lines, create_tenant, lines_of, scriptbox, serve};
use serde_json::Value;

/// A folder of its own for one test: database, scripts, saved login.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scriptbox-client-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `scriptbox ARGS` with the login kept in `dir` and no URL or key from
/// the environment.
fn client(dir: &Path, args: &[&str]) -> Output {
    scriptbox()
        .env("SCRIPTBOX_CONFIG_DIR", dir.join("config"))
        .env_remove("SCRIPTBOX_URL")
        .env_remove("SCRIPTBOX_API_KEY")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, source: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn tenant_commands_name_their_database_refuse_duplicates_and_rotate_keys() {
    let dir = folder("tenants");
    let db = format!("sqlite://{}", dir.join("node.db").display());
    let first = scriptbox()
        .args(["tenant", "create", "acme", "--database", &db])
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let full = dir.join("node.db");
    assert!(
        stdout(&first).contains(&format!("in sqlite://{}", full.display())),
        "{}",
        stdout(&first)
    );
    // The file was new: the command says a server must use it.
    assert!(
        stderr(&first).contains("did not exist"),
        "{}",
        stderr(&first)
    );

    // A second create: refused, naming the database and the fix; nothing on
    // stdout, so `KEY=$(... | tail -n1)` does not take a message for a key.
    let again = scriptbox()
        .args(["tenant", "create", "acme", "--database", &db])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stdout(&again).is_empty(), "{}", stdout(&again));
    assert!(
        stderr(&again).contains("already exists") && stderr(&again).contains("rotate-key acme"),
        "{}",
        stderr(&again)
    );

    create_tenant(&db, "zeta");
    let list = scriptbox()
        .args(["tenant", "list", "--database", &db])
        .output()
        .unwrap();
    let lines: Vec<String> = stdout(&list).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("NAME")
            && lines[1].starts_with("acme ")
            && lines[2].starts_with("zeta ")
    );

    let missing = scriptbox()
        .args(["tenant", "rotate-key", "nobody", "--database", &db])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no tenant named"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn a_rotated_key_replaces_the_old_one() {
    let dir = folder("rotate");
    let db = format!("sqlite://{}", dir.join("node.db").display());
    let old = create_tenant(&db, "acme");
    let rotated = scriptbox()
        .args(["tenant", "rotate-key", "acme", "--database", &db])
        .output()
        .unwrap();
    assert_eq!(rotated.status.code(), Some(0), "{rotated:?}");
    let new = stdout(&rotated).lines().last().unwrap().trim().to_owned();
    assert!(new.starts_with("sbx_") && new != old);
    let server = serve(&db).await;
    let port = server.port;
    let status = |key: String| async move {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/api/tenant"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(new).await, 200);
    assert_eq!(status(old).await, 401);
}

#[tokio::test]
async fn deploy_invoke_list_and_follow_a_script_from_files() {
    let dir = folder("deploy");
    let db = format!("sqlite://{}", dir.join("node.db").display());
    let key = create_tenant(&db, "acme");
    let server = serve(&db).await;
    let url = format!("http://127.0.0.1:{}", server.port);

    // Before login: told how to log in.
    let out = client(&dir, &["scripts"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("scriptbox login URL"),
        "{}",
        stderr(&out)
    );

    // A wrong key is refused with the hint, and nothing is saved.
    let out = client(&dir, &["login", &url, "--api-key", "sbx_wrong"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("401") && stderr(&out).contains("database this server uses"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("config/login.toml").exists());

    // Nothing listens there: said so.
    let out = client(
        &dir,
        &["scripts", "--url", "http://127.0.0.1:9", "--api-key", &key],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));

    // The key from stdin; saved for the owner only.
    let mut login = scriptbox()
        .env("SCRIPTBOX_CONFIG_DIR", dir.join("config"))
        .args(["login", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(login.stdin.take().unwrap(), "{key}").unwrap();
    let out = login.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("as tenant acme"), "{}", stdout(&out));
    let saved = dir.join("config/login.toml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Deploy creates, named after the file; deploying again updates it.
    let hello = write(
        &dir,
        "hello.js",
        "export default (input) => { console.log('hi', input?.name ?? 'nobody'); \
         return { hello: input?.name ?? 'world' }; }",
    );
    let out = client(&dir, &["deploy", &hello]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("created hello (version 1, id "),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("scriptbox invoke hello"));
    let out = client(&dir, &["deploy", &hello]);
    assert!(
        stdout(&out).starts_with("updated hello (version 2, id "),
        "{}",
        stdout(&out)
    );

    // A syntax error: the server's message, with the line.
    let broken = write(
        &dir,
        "broken.js",
        "export default () => {\n  return 1 +;\n}",
    );
    let out = client(&dir, &["deploy", &broken]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));

    // Invoke: output on stdout, logs and the outcome on stderr.
    let out = client(&dir, &["invoke", "hello", "--input", r#"{"name":"Ada"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let output: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(output["hello"], "Ada");
    assert!(
        stderr(&out).starts_with("hi Ada\ncompleted in "),
        "{}",
        stderr(&out)
    );
    // Without input, the example's `?.` keeps it working.
    let out = client(&dir, &["invoke", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("world"));
    let out = client(&dir, &["invoke", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no script named \"nope\""),
        "{}",
        stderr(&out)
    );

    // A failing run exits 1 with its error.
    let fails = write(
        &dir,
        "fails.ts",
        "export default (): never => { throw new Error('boom') }",
    );
    let out = client(&dir, &["deploy", &fails]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = client(&dir, &["invoke", "fails"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("js_error: Error: boom"),
        "{}",
        stderr(&out)
    );

    // A webhook and a schedule: the URL to call, the next fire time in its zone.
    let out = client(
        &dir,
        &["deploy", &hello, "--name", "hook", "--webhook", "/hook"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let webhook = format!("http://127.0.0.1:{}/acme/hook", server.public_port);
    assert!(
        stdout(&out).contains(&format!("webhook: {webhook}")),
        "{}",
        stdout(&out)
    );
    let called = reqwest::Client::new()
        .post(&webhook)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(called.status(), 200);
    let out = client(
        &dir,
        &[
            "deploy",
            &hello,
            "--name",
            "daily",
            "--schedule",
            "30 9 * * *",
            "--zone",
            "Europe/Paris",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("schedule: 30 9 * * * (Europe/Paris); next run "),
        "{text}"
    );
    assert!(
        text.contains("T09:30:00+01:00") || text.contains("T09:30:00+02:00"),
        "in the schedule's zone: {text}"
    );

    // The table and its JSON.
    let out = client(&dir, &["scripts"]);
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    for name in ["hello", "fails", "hook", "daily"] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{table}"
        );
    }
    assert!(table.contains("30 9 * * * (Europe/Paris)"), "{table}");
    let out = client(&dir, &["scripts", "--json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);

    let out = client(&dir, &["executions", "--status", "failed"]);
    let table = stdout(&out);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(
        rows[0].contains("fails") && rows[0].contains("js_error: Error: boom"),
        "{table}"
    );
    let out = client(&dir, &["executions", "--script", "hello", "--json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let out = client(&dir, &["executions", "--status", "sleeping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid status"), "{}", stderr(&out));

    // logs: the history, then each run as it finishes.
    let mut follow = scriptbox()
        .env("SCRIPTBOX_CONFIG_DIR", dir.join("config"))
        .args(["logs", "hello", "--follow", "--limit", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, notes) = (
        lines_of(follow.stdout.take().unwrap()),
        lines_of(follow.stderr.take().unwrap()),
    );
    wait_for(&notes, |l| l.starts_with("following hello"));
    // The last run (no input) is the history.
    wait_for(&lines, |l| l == "  hi nobody");
    let out = client(&dir, &["invoke", "hello", "--input", r#"{"name":"Grace"}"#]);
    assert_eq!(out.status.code(), Some(0));
    wait_for(&lines, |l| l == "  hi Grace");
    let shown = lines.lock().unwrap().clone();
    assert!(
        shown.iter().any(|l| l.contains("  completed  manual  ")),
        "{shown:?}"
    );
    // Another script's runs are not shown.
    client(&dir, &["invoke", "fails"]);
    client(&dir, &["invoke", "hello", "--input", r#"{"name":"Alan"}"#]);
    wait_for(&lines, |l| l == "  hi Alan");
    assert!(!lines.lock().unwrap().iter().any(|l| l.contains("boom")));

    // The stream ends when the server stops; the command says so and exits 0.
    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "logs --follow did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    wait_for(&notes, |l| l.contains("ended the stream"));
}

/// Waits (up to 30 s) for a line that satisfies `what`.
fn wait_for(lines: &Lines, what: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if lines.lock().unwrap().iter().any(|l| what(l)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no such line in {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cron_next_prints_in_the_expressions_zone_and_takes_a_leading_dash() {
    let out = scriptbox()
        .args([
            "cron",
            "next",
            "CRON_TZ=Europe/Paris 30 9 * * MON-FRI",
            "--after",
            "2026-01-05T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "2026-01-05T09:30:00+01:00\n");
    // --zone is the schedule's zone, as a script's `timezone`.
    let out = scriptbox()
        .args([
            "cron",
            "next",
            "30 9 * * *",
            "--zone",
            "Asia/Tokyo",
            "--after",
            "2026-01-05T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "2026-01-05T09:30:00+09:00\n");
    // An expression that starts with '-' reaches the cron parser.
    let out = scriptbox()
        .args(["cron", "next", "-5 * * * *"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.starts_with("invalid cron expression:"), "{text}");
}

#[test]
fn every_argument_has_help_and_serve_shows_its_defaults() {
    // -h: one line per argument, its help beside it.
    let help = |args: &[&str]| {
        let out = scriptbox().args(args).arg("-h").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        stdout(&out)
    };
    let serve = help(&["serve"]);
    for default in ["127.0.0.1:8080", "127.0.0.1:8081", "sqlite://scriptbox.db"] {
        assert!(serve.contains(default), "{serve}");
    }
    for command in [
        vec!["run"],
        vec!["check"],
        vec!["serve"],
        vec!["login"],
        vec!["deploy"],
        vec!["scripts"],
        vec!["invoke"],
        vec!["executions"],
        vec!["logs"],
        vec!["backup"],
        vec!["cron", "next"],
        vec!["tenant", "create"],
        vec!["tenant", "list"],
        vec!["tenant", "rotate-key"],
    ] {
        let text = help(&command);
        // clap prints an argument without help as its name alone on the line.
        for line in text.lines() {
            let line = line.trim();
            let bare = (line.starts_with('-') || line.starts_with('<'))
                && !line.contains("  ")
                && !line.starts_with("-h, --help")
                && !line.starts_with("-V");
            assert!(!bare, "{command:?}: no help for {line:?}\n{text}");
        }
    }
}

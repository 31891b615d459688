//! The client commands: each talks to the API and prints for a person
//! (tables, plain lines) or, with `--json`, the API's own JSON.

use std::collections::HashSet;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, ClientError, ClientResult, Credentials, login, query_value, table};

/// `scriptbox login URL`: checks the key against the server, then saves
/// both. Returns what to print.
pub async fn login(credentials: Credentials) -> ClientResult<String> {
    let client = Client::new(credentials.clone())?;
    let tenant: Value = client.get("/api/tenant").await?;
    let file = login::save(&credentials)?;
    Ok(format!(
        "logged in to {} as tenant {}; saved to {} (readable by you only)",
        client.base(),
        tenant["name"].as_str().unwrap_or("?"),
        file.display()
    ))
}

/// How `deploy` triggers the script, when the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployTrigger {
    Manual,
    Webhook {
        path: String,
    },
    Scheduled {
        schedule: String,
        zone: Option<String>,
    },
}

/// What `deploy` is asked to do.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub name: String,
    pub source: String,
    pub language: &'static str,
    /// `None`: a new script is manual, an existing one keeps its trigger.
    pub trigger: Option<DeployTrigger>,
    /// `None`: a new script declares none, an existing one keeps its own.
    pub secrets: Option<Vec<String>>,
}

impl Deploy {
    /// A deploy of `file` (`.ts` is TypeScript), named after the file
    /// unless `name` is given.
    pub fn of_file(
        file: &Path,
        name: Option<String>,
        trigger: Option<DeployTrigger>,
        secrets: Vec<String>,
    ) -> ClientResult<Self> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| ClientError::Other(format!("cannot read {}: {e}", file.display())))?;
        let name = match name {
            Some(name) => name,
            None => file
                .file_stem()
                .and_then(|stem| stem.to_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    ClientError::Other(format!(
                        "cannot name the script after {}: give --name",
                        file.display()
                    ))
                })?,
        };
        let language = match file.extension().and_then(|e| e.to_str()) {
            Some("ts" | "mts") => "typescript",
            _ => "javascript",
        };
        Ok(Self {
            name,
            source,
            language,
            trigger,
            secrets: (!secrets.is_empty()).then_some(secrets),
        })
    }

    fn body(&self, creating: bool) -> Value {
        let mut body = json!({
            "source": self.source,
            "language": self.language,
        });
        if creating {
            body["name"] = json!(self.name);
        }
        let trigger = match (&self.trigger, creating) {
            (Some(trigger), _) => Some(trigger.clone()),
            (None, true) => Some(DeployTrigger::Manual),
            (None, false) => None,
        };
        match trigger {
            Some(DeployTrigger::Manual) => body["trigger_type"] = json!("manual"),
            Some(DeployTrigger::Webhook { path }) => {
                body["trigger_type"] = json!("webhook");
                body["webhook_path"] = json!(path);
            }
            Some(DeployTrigger::Scheduled { schedule, zone }) => {
                body["trigger_type"] = json!("scheduled");
                body["schedule"] = json!(schedule);
                if let Some(zone) = zone {
                    body["timezone"] = json!(zone);
                }
            }
            None => {}
        }
        if let Some(secrets) = &self.secrets {
            body["secrets"] = json!(secrets);
        }
        body
    }
}

/// The tenant's scripts named `name`: none, or the one.
async fn script_named(client: &Client, name: &str) -> ClientResult<Option<Value>> {
    let page: Value = client
        .get(&format!("/api/scripts?name={}&limit=2", query_value(name)))
        .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    match items.len() {
        0 => Ok(None),
        1 => Ok(items.into_iter().next()),
        _ => Err(ClientError::Other(format!(
            "more than one script is named {name:?}; rename one in the dashboard or the API \
             (names are how the command line finds scripts)"
        ))),
    }
}

/// The script named `name`, or an error saying how to find the names.
async fn existing_script(client: &Client, name: &str) -> ClientResult<Value> {
    script_named(client, name).await?.ok_or_else(|| {
        ClientError::Other(format!(
            "no script named {name:?}; `scriptbox scripts` lists them"
        ))
    })
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or("")
}

/// `scriptbox deploy`: creates the script, or updates the one with its
/// name. Returns what to print.
pub async fn deploy(client: &Client, deploy: &Deploy) -> ClientResult<String> {
    let existing = script_named(client, &deploy.name).await?;
    let (verb, script): (&str, Value) = match &existing {
        None => (
            "created",
            client
                .send_json(Method::POST, "/api/scripts", &deploy.body(true))
                .await?,
        ),
        Some(old) => (
            "updated",
            client
                .send_json(
                    Method::PUT,
                    &format!("/api/scripts/{}", text(old, "id")),
                    &deploy.body(false),
                )
                .await?,
        ),
    };
    let mut out = format!(
        "{verb} {} (version {}, id {})\n",
        text(&script, "name"),
        script["version"],
        text(&script, "id")
    );
    match text(&script, "trigger_type") {
        "webhook" => {
            let url = text(&script, "webhook_url");
            out.push_str(&format!("webhook: {url}\n"));
            out.push_str(&format!(
                "call it:  curl -s {url} -H 'content-type: application/json' -d '{{}}'\n"
            ));
        }
        "scheduled" => {
            let zone = script["timezone"].as_str().unwrap_or("UTC");
            match script["next_run_at"].as_str() {
                Some(next) if script["enabled"] == true => {
                    let next = next_in_zone(client, &script).await.unwrap_or(next.into());
                    out.push_str(&format!(
                        "schedule: {} ({zone}); next run {next}\n",
                        text(&script, "schedule")
                    ));
                }
                _ => out.push_str(&format!(
                    "schedule: {} ({zone}); no next run (disabled, or none within five years)\n",
                    text(&script, "schedule")
                )),
            }
        }
        _ => {}
    }
    out.push_str(&format!(
        "run it:   scriptbox invoke {}\nlogs:     scriptbox logs {} --follow",
        shell_word(text(&script, "name")),
        shell_word(text(&script, "name"))
    ));
    Ok(out)
}

/// The next fire time in the schedule's zone, as the API gives it.
async fn next_in_zone(client: &Client, script: &Value) -> Option<String> {
    let runs: Value = client
        .get(&format!(
            "/api/scripts/{}/next-runs?count=1",
            text(script, "id")
        ))
        .await
        .ok()?;
    runs["items"][0].as_str().map(str::to_owned)
}

/// `word`, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Every script of the tenant, newest first.
async fn all_scripts(client: &Client) -> ClientResult<Vec<Value>> {
    let mut scripts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/scripts?limit=500&cursor={}", query_value(cursor)),
            None => "/api/scripts?limit=500".to_owned(),
        };
        let page: Value = client.get(&path).await?;
        scripts.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(scripts),
        }
    }
}

/// `scriptbox scripts`: a table, or the API's JSON list.
pub async fn scripts(client: &Client, as_json: bool) -> ClientResult<String> {
    let scripts = all_scripts(client).await?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&scripts).unwrap_or_default());
    }
    if scripts.is_empty() {
        return Ok("no scripts yet: `scriptbox deploy FILE.js` adds one".into());
    }
    let rows: Vec<Vec<String>> = scripts
        .iter()
        .map(|s| {
            let trigger = match text(s, "trigger_type") {
                "scheduled" => format!(
                    "{} ({})",
                    text(s, "schedule"),
                    s["timezone"].as_str().unwrap_or("UTC")
                ),
                "webhook" => text(s, "webhook_url").to_owned(),
                _ => "manual".to_owned(),
            };
            vec![
                text(s, "name").to_owned(),
                trigger,
                if s["enabled"] == true { "yes" } else { "no" }.to_owned(),
                s["version"].to_string(),
                table::when(&s["last_executed_at"]),
                text(s, "id").to_owned(),
            ]
        })
        .collect();
    Ok(table::render(
        &["NAME", "TRIGGER", "ENABLED", "VERSION", "LAST RUN", "ID"],
        &rows,
    )
    .trim_end()
    .to_owned())
}

/// What `invoke` prints: the output on stdout, the logs and any error on
/// stderr, and whether the run completed.
pub struct Invoked {
    pub stdout: String,
    pub stderr: String,
    pub completed: bool,
}

/// `scriptbox invoke NAME`: runs the script and waits for its result.
pub async fn invoke(
    client: &Client,
    name: &str,
    input: Option<&str>,
    as_json: bool,
) -> ClientResult<Invoked> {
    let input = match input {
        Some(text) => {
            Some(
                serde_json::from_str::<Value>(text).map_err(|e| ClientError::Status {
                    status: 400,
                    message: format!("--input is not valid JSON: {e}"),
                    retry_after: None,
                })?,
            )
        }
        None => None,
    };
    let script = existing_script(client, name).await?;
    let body = match input {
        Some(input) => json!({ "input": input }),
        None => json!({}),
    };
    let execution: Value = client
        .send_json(
            Method::POST,
            &format!("/api/scripts/{}/run", text(&script, "id")),
            &body,
        )
        .await?;
    let completed = execution["status"] == "completed";
    if as_json {
        return Ok(Invoked {
            stdout: serde_json::to_string_pretty(&execution).unwrap_or_default(),
            stderr: String::new(),
            completed,
        });
    }
    let mut stderr = String::new();
    for line in execution["logs"].as_array().into_iter().flatten() {
        stderr.push_str(&log_line(line));
        stderr.push('\n');
    }
    let stdout = if completed {
        match &execution["output"] {
            Value::String(text) => text.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        }
    } else {
        stderr.push_str(&format!(
            "{}: {}\n",
            text(&execution, "error_type"),
            text(&execution, "error_message")
        ));
        if let Some(stack) = execution["error_stack"].as_str() {
            stderr.push_str(stack.trim_end());
            stderr.push('\n');
        }
        String::new()
    };
    stderr.push_str(&format!(
        "{} in {} (execution {})",
        text(&execution, "status"),
        duration_of(&execution),
        text(&execution, "id")
    ));
    Ok(Invoked {
        stdout,
        stderr,
        completed,
    })
}

/// A run's wall time, with sub-millisecond precision when the API has it.
fn duration_of(execution: &Value) -> String {
    match (
        execution["duration_us"].as_i64(),
        execution["duration_ms"].as_i64(),
    ) {
        (Some(us), _) => table::duration_us(us),
        (None, Some(ms)) => table::duration_us(ms * 1_000),
        (None, None) => "-".into(),
    }
}

/// One console line as `run` prints it: info plain, other levels named.
fn log_line(line: &Value) -> String {
    let message = text(line, "message");
    match text(line, "level") {
        "info" | "" => message.to_owned(),
        level => format!("{level}: {message}"),
    }
}

/// `scriptbox executions`: the newest executions as a table.
pub async fn executions(
    client: &Client,
    script: Option<&str>,
    status: Option<&str>,
    limit: u32,
    as_json: bool,
) -> ClientResult<String> {
    let mut path = format!("/api/executions?limit={limit}");
    if let Some(name) = script {
        let script = existing_script(client, name).await?;
        path.push_str(&format!("&script_id={}", query_value(text(&script, "id"))));
    }
    if let Some(status) = status {
        path.push_str(&format!("&status={}", query_value(status)));
    }
    let page: Value = client.get(&path).await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if as_json {
        return Ok(serde_json::to_string_pretty(&items).unwrap_or_default());
    }
    if items.is_empty() {
        return Ok("no executions".into());
    }
    let names = script_names(client).await?;
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let error = match e["error_type"].as_str() {
                Some(kind) => format!("{kind}: {}", one_line(text(e, "error_message"), 60)),
                None => String::new(),
            };
            vec![
                text(e, "id").to_owned(),
                names
                    .get(text(e, "script_id"))
                    .cloned()
                    .unwrap_or_else(|| text(e, "script_id").to_owned()),
                text(e, "status").to_owned(),
                text(e, "trigger_type").to_owned(),
                table::when(&e["queued_at"]),
                duration_of(e),
                error,
            ]
        })
        .collect();
    Ok(table::render(
        &[
            "ID", "SCRIPT", "STATUS", "TRIGGER", "QUEUED", "DURATION", "ERROR",
        ],
        &rows,
    )
    .trim_end()
    .to_owned())
}

async fn script_names(client: &Client) -> ClientResult<std::collections::HashMap<String, String>> {
    Ok(all_scripts(client)
        .await?
        .into_iter()
        .map(|s| (text(&s, "id").to_owned(), text(&s, "name").to_owned()))
        .collect())
}

/// The first line of `message`, at most `max` characters.
fn one_line(message: &str, max: usize) -> String {
    let line = message.lines().next().unwrap_or("");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// One execution's logs as `logs` prints them: a header line, then each
/// console line indented.
fn execution_block(execution: &Value) -> String {
    let at = match execution["finished_at_ms"].as_i64() {
        Some(ms) => {
            let at = crate::cron::Time::from_unix_ms(ms, crate::cron::Location::Utc);
            table::when(&Value::String(at.to_string()))
        }
        None => table::when(&execution["finished_at"]),
    };
    let mut out = format!(
        "{at}  {}  {}  {}  {}",
        text(execution, "status"),
        text(execution, "trigger_type"),
        duration_of(execution),
        text(execution, "id")
    );
    for line in execution["logs"].as_array().into_iter().flatten() {
        out.push_str("\n  ");
        out.push_str(&log_line(line));
    }
    if let Some(kind) = execution["error_type"].as_str() {
        out.push_str(&format!("\n  {kind}: {}", text(execution, "error_message")));
    }
    out
}

/// `scriptbox logs NAME`: the logs of the script's last `limit`
/// executions, oldest first; with `follow`, then every execution as it
/// finishes, until the server ends the stream. Each block goes to `print`
/// as soon as it is known.
pub async fn logs(
    client: &Client,
    name: &str,
    limit: u32,
    follow: bool,
    mut print: impl FnMut(&str),
    mut note: impl FnMut(&str),
) -> ClientResult<()> {
    let script = existing_script(client, name).await?;
    let id = text(&script, "id").to_owned();
    // Subscribe before reading the history, so nothing falls between them;
    // what is in both is shown once.
    let mut stream = if follow {
        let mut stream = client
            .events(&format!(
                "/api/executions/stream?script_id={}",
                query_value(&id)
            ))
            .await?;
        match stream.next().await? {
            Some(event) if event.name == "ready" => {}
            other => {
                return Err(ClientError::Other(format!(
                    "the server did not start the stream: {other:?}"
                )));
            }
        }
        Some(stream)
    } else {
        None
    };
    let mut shown = HashSet::new();
    if limit > 0 {
        let page: Value = client
            .get(&format!(
                "/api/executions?script_id={}&limit={limit}",
                query_value(&id)
            ))
            .await?;
        let mut items = page["items"].as_array().cloned().unwrap_or_default();
        items.reverse();
        for execution in items.iter().filter(|e| e["finished_at"].is_string()) {
            shown.insert(text(execution, "id").to_owned());
            print(&execution_block(execution));
        }
    }
    let Some(mut stream) = stream.take() else {
        return Ok(());
    };
    note(&format!(
        "following {name}: each execution as it finishes (Ctrl+C to stop)"
    ));
    while let Some(event) = stream.next().await? {
        match event.name.as_str() {
            "execution" => {
                let execution: Value = serde_json::from_str(&event.data)
                    .map_err(|e| ClientError::Other(format!("a bad event from the server: {e}")))?;
                if shown.insert(text(&execution, "id").to_owned()) {
                    print(&execution_block(&execution));
                }
            }
            "missed" => {
                let missed: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                note(&format!(
                    "missed {} executions: this reader fell behind (`scriptbox executions --script {}` lists them)",
                    missed["missed"],
                    shell_word(name)
                ));
            }
            _ => {}
        }
    }
    note("the server ended the stream (it is shutting down)");
    Ok(())
}

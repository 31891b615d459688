// scriptbox dashboard: a small single-page app over the JSON API.
// The API key lives in sessionStorage and goes out only as the bearer token.
"use strict";

const main = document.getElementById("main");
const keyStore = "scriptbox.key";

// Builds an element; strings become text nodes (never HTML).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...children) {
  main.replaceChildren(...children);
  main.focus();
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The signed-in key as the bearer token.
function auth() { return `Bearer ${sessionStorage.getItem(keyStore) || ""}`; }

async function api(method, path, body) {
  const headers = { authorization: auth() };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (res.status === 401) {
    sessionStorage.removeItem(keyStore);
    location.hash = "#/signin";
    throw new ApiError(401, (data && data.error) || "unauthorized");
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return data;
}

function when(ts) { return ts ? new Date(ts).toLocaleString() : "—"; }
// A run's wall time: microseconds when the API has them (duration_us).
function duration(e) {
  const us = e.duration_us ?? (e.duration_ms === null || e.duration_ms === undefined ? null : e.duration_ms * 1000);
  if (us === null) return "—";
  if (us < 1000) return `${us} µs`;
  if (us < 100000) return `${(us / 1000).toFixed(1)} ms`;
  if (us < 1000000) return `${Math.round(us / 1000)} ms`;
  return `${(us / 1000000).toFixed(2)} s`;
}
function bytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}
function status(s) { return h("span", { class: `status-${s}` }, s); }
function errorBox(message) { return h("p", { class: "error", role: "alert" }, message); }

// ---- sign in -------------------------------------------------------------

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "key", type: "password", autocomplete: "off", required: true });
  const form = h("form", { class: "card signin", onsubmit: async (e) => {
      e.preventDefault();
      const key = input.value.trim();
      const res = await fetch("/api/tenant", { headers: { authorization: `Bearer ${key}` } });
      if (res.ok) {
        sessionStorage.setItem(keyStore, key);
        location.hash = "#/scripts";
      } else {
        signIn("That API key was refused. Check it and try again.");
      }
    } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Use your tenant's API key (from ", h("code", {}, "scriptbox tenant create"),
      "). It is kept for this browser tab only."),
    message ? errorBox(message) : null,
    h("label", { for: "key" }, "API key"), input,
    h("div", { class: "row" }, h("button", { type: "submit" }, "Sign in")));
  show(form);
  input.focus();
}

// ---- scripts list --------------------------------------------------------

async function scriptsPage() {
  const [page, tenant] = await Promise.all([api("GET", "/api/scripts?limit=200"), api("GET", "/api/tenant")]);
  const rows = page.items.map((s) => {
    const nextCell = h("td", { class: "optional" }, "—");
    const lastCell = h("td", {}, "—");
    const toggle = h("input", { type: "checkbox", checked: s.enabled, "aria-label": `Enabled: ${s.name}`,
      onchange: async (e) => {
        try { await api("PUT", `/api/scripts/${s.id}`, { enabled: e.target.checked }); }
        catch (err) { e.target.checked = !e.target.checked; alert(err.message); }
      } });
    let trigger = s.trigger_type;
    let where = null;
    if (s.trigger_type === "scheduled") {
      where = h("span", {}, s.schedule, h("span", { class: "muted" }, ` (${s.timezone || "UTC"})`));
      api("GET", `/api/scripts/${s.id}/next-runs?count=3`).then((n) => {
        nextCell.replaceChildren(...n.items.map((t) => h("div", {}, t)), h("div", { class: "muted" }, n.zone));
      }).catch(() => {});
    } else if (s.trigger_type === "webhook") {
      // Served by the public listener, on another origin than this page.
      const url = s.webhook_url;
      where = h("span", {}, h("code", { class: "hook-url" }, url), " ",
        h("button", { type: "button", class: "secondary", onclick: () => navigator.clipboard && navigator.clipboard.writeText(url) },
          "Copy URL"));
    }
    api("GET", `/api/executions?script_id=${s.id}&limit=1`).then((e) => {
      const last = e.items[0];
      if (last) lastCell.replaceChildren(status(last.status), h("div", { class: "muted" }, when(last.finished_at || last.queued_at)));
    }).catch(() => {});
    return h("tr", {},
      h("td", {}, h("a", { href: `#/scripts/${s.id}` }, s.name)),
      h("td", {}, trigger, where ? h("div", {}, where) : null),
      nextCell,
      h("td", {}, toggle),
      lastCell);
  });
  show(
    h("div", { class: "row" }, h("h1", {}, `Scripts of ${tenant.name}`),
      h("button", { type: "button", onclick: () => { location.hash = "#/scripts/new"; } }, "New script")),
    rows.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Trigger"), h("th", { class: "optional" }, "Next runs"),
        h("th", {}, "Enabled"), h("th", {}, "Last run"))),
      h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "No scripts yet."));
}

// ---- one script ----------------------------------------------------------

const starter = `export default async function (input, ctx) {
  console.log("called by", ctx.trigger);
  return { hello: input?.name ?? "world" };
}
`;

function field(id, label, input) {
  input.id = id;
  return h("div", {}, h("label", { for: id }, label), input);
}

async function scriptPage(id) {
  const s = id === "new" ? null : await api("GET", `/api/scripts/${id}`);
  const v = (x) => (x === undefined || x === null ? "" : String(x));
  const name = h("input", { value: v(s && s.name), required: true });
  const trigger = h("select", {}, ...["manual", "scheduled", "webhook"].map((t) =>
    h("option", { value: t, selected: s ? s.trigger_type === t : t === "manual" }, t)));
  const schedule = h("input", { value: v(s && s.schedule), placeholder: "*/5 * * * *" });
  const timezone = h("input", { value: v(s && s.timezone), placeholder: "UTC" });
  const path = h("input", { value: v(s && s.webhook_path), placeholder: "/hooks/example" });
  const source = h("textarea", { class: "code", spellcheck: "false" });
  source.value = s ? s.source : starter;
  const limits = (s && s.limits) || {};
  const fuel = h("input", { type: "number", min: "1", value: v(limits.fuel) });
  const memory = h("input", { type: "number", min: "1", value: v(limits.memory_mb) });
  const timeout = h("input", { type: "number", min: "1", value: v(limits.timeout_ms) });
  const rps = h("input", { type: "number", min: "1", value: v(s && s.rate_limit && s.rate_limit.rps) });
  const burst = h("input", { type: "number", min: "1", value: v(s && s.rate_limit && s.rate_limit.burst) });
  const retries = h("input", { type: "number", min: "0", value: v(s && s.max_retries) });
  const delay = h("input", { type: "number", min: "1", value: v(s && s.retry_delay_ms) });
  const authType = h("select", {}, ...["none", "bearer", "hmac-github", "hmac-stripe", "standard-webhooks"].map((t) =>
    h("option", { value: t, selected: (s && s.webhook_auth ? s.webhook_auth.type : "none") === t }, t)));
  const secret = h("input", { type: "password", autocomplete: "off",
    placeholder: s && s.webhook_auth && s.webhook_auth.type !== "none" ? "set (write-only): leave empty to keep" : "" });
  // Secrets are declared by name; vars are NAME=value lines.
  const secretNames = h("input", { value: ((s && s.secrets) || []).join(", "), placeholder: "STRIPE_KEY, SLACK_TOKEN" });
  const vars = h("textarea", { class: "code", rows: "3", spellcheck: "false", placeholder: "MODE=live" });
  vars.style.minHeight = "3rem";
  vars.value = Object.entries((s && s.vars) || {}).map(([k, x]) => `${k}=${x}`).join("\n");
  const saveMessage = h("div", { "aria-live": "polite" });

  const num = (input) => (input.value === "" ? undefined : Number(input.value));
  // Saves the form; the script as saved, or null when it was refused.
  async function save(e) {
    if (e) e.preventDefault();
    const body = { name: name.value, trigger_type: trigger.value, source: source.value };
    if (trigger.value === "scheduled") { body.schedule = schedule.value; if (timezone.value) body.timezone = timezone.value; }
    if (trigger.value === "webhook") {
      body.webhook_path = path.value;
      if (authType.value === "none" || secret.value) body.webhook_auth = { type: authType.value, secret: secret.value || undefined };
    }
    const lim = { fuel: num(fuel), memory_mb: num(memory), timeout_ms: num(timeout) };
    if (Object.values(lim).some((x) => x !== undefined)) body.limits = lim;
    if (rps.value && burst.value) body.rate_limit = { rps: num(rps), burst: num(burst) };
    if (retries.value !== "") body.max_retries = num(retries);
    if (delay.value) body.retry_delay_ms = num(delay);
    body.secrets = secretNames.value.split(",").map((x) => x.trim()).filter(Boolean);
    body.vars = {};
    for (const line of vars.value.split("\n")) {
      if (!line.trim()) continue;
      const at = line.indexOf("=");
      if (at < 1) { saveMessage.replaceChildren(errorBox(`Vars: "${line}" is not NAME=value`)); return null; }
      body.vars[line.slice(0, at).trim()] = line.slice(at + 1);
    }
    try {
      const saved = s ? await api("PUT", `/api/scripts/${s.id}`, body) : await api("POST", "/api/scripts", body);
      saveMessage.replaceChildren(h("p", { class: "notice", role: "status" }, `Saved version ${saved.version}.`));
      if (!s) location.hash = `#/scripts/${saved.id}`;
      return saved;
    } catch (err) {
      saveMessage.replaceChildren(errorBox(err.message));
      const at = /line (\d+)/.exec(err.message);
      if (at) {
        // Put the cursor on the line the server reported.
        const line = Number(at[1]);
        const lines = source.value.split("\n");
        const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
        source.focus();
        source.setSelectionRange(start, start + (lines[line - 1] || "").length);
        saveMessage.append(h("p", { class: "error syntax-line" }, `Line ${line}: ${lines[line - 1] || ""}`));
      }
      return null;
    }
  }
  let panel = null;
  // Ctrl+Enter (Cmd+Enter) in the editor: save, then run what was saved.
  source.addEventListener("keydown", async (e) => {
    if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
    e.preventDefault();
    const saved = await save();
    if (saved && panel) await panel.run();
  });

  const form = h("form", { onsubmit: save },
    h("div", { class: "grid" },
      field("f-name", "Name", name), field("f-trigger", "Trigger", trigger),
      field("f-schedule", "Schedule (cron, for scheduled)", schedule), field("f-timezone", "Time zone (IANA)", timezone),
      field("f-path", "Webhook path (for webhooks)", path)),
    field("f-source", "Source", source),
    h("p", { class: "muted" }, h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "Enter"), " in the editor saves and runs."),
    h("h2", {}, "Environment (ctx.env)"),
    h("div", { class: "grid" },
      field("f-secrets", "Secrets it may read (comma-separated)", secretNames),
      field("f-vars", "Vars (KEY=value, one per line)", vars)),
    h("p", { class: "muted" }, h("a", { href: "#/secrets" }, "Manage secrets"),
      ": their values are masked as [secret NAME] in output and logs."),
    h("h2", {}, "Limits and retries"),
    h("div", { class: "grid" },
      field("f-fuel", "Fuel", fuel), field("f-memory", "Memory (MiB)", memory), field("f-timeout", "Timeout (ms)", timeout),
      field("f-rps", "Rate limit: requests/s", rps), field("f-burst", "Rate limit: burst", burst),
      field("f-retries", "Max retries", retries), field("f-delay", "Retry delay (ms)", delay),
      field("f-auth", "Webhook auth", authType), field("f-secret", "Webhook secret", secret)),
    h("div", { class: "row" }, h("button", { type: "submit" }, s ? "Save" : "Create"),
      s ? h("button", { type: "button", class: "secondary", onclick: async () => {
        if (confirm(`Delete ${s.name}?`)) { await api("DELETE", `/api/scripts/${s.id}`); location.hash = "#/scripts"; }
      } }, "Delete") : null),
    saveMessage);

  const parts = [h("h1", {}, s ? s.name : "New script"), form];
  if (s) {
    const recent = h("div", {}, await recentRuns(s));
    const refresh = async () => recent.replaceChildren(await recentRuns(s));
    panel = runPanel(s, refresh);
    parts.push(panel, recent);
  }
  show(...parts);
}

function runPanel(s, afterRun) {
  const input = h("textarea", { class: "code", rows: "4" });
  input.style.minHeight = "4rem";
  input.value = "{}";
  const result = h("div", { "aria-live": "polite" });
  async function run() {
    let parsed;
    try { parsed = JSON.parse(input.value || "null"); }
    catch (err) { result.replaceChildren(errorBox(`The input is not JSON: ${err.message}`)); return; }
    result.replaceChildren(h("p", { class: "muted" }, "Running…"));
    try {
      const e = await api("POST", `/api/scripts/${s.id}/run`, { input: parsed });
      result.replaceChildren(executionDetail(e));
      afterRun();
    } catch (err) { result.replaceChildren(errorBox(err.message)); }
  }
  const section = h("section", { class: "card" }, h("h2", {}, "Run now"),
    field("run-input", "Input (JSON)", input),
    h("div", { class: "row" }, h("button", { type: "button", onclick: run }, "Run now")),
    result);
  section.run = run;
  return section;
}

async function recentRuns(s) {
  const page = await api("GET", `/api/executions?script_id=${s.id}&limit=10`);
  return h("section", {}, h("h2", {}, "Recent executions"), executionsTable(page.items, false),
    h("p", {}, h("a", { href: `#/executions?script_id=${s.id}` }, "All executions of this script")));
}

// ---- secrets -------------------------------------------------------------

async function secretsPage() {
  const page = await api("GET", "/api/secrets");
  const message = h("div", { "aria-live": "polite" });
  const name = h("input", { required: true, pattern: "[A-Z_][A-Z0-9_]*", placeholder: "STRIPE_KEY", autocomplete: "off" });
  const value = h("input", { type: "password", required: true, autocomplete: "off" });
  async function put(e) {
    e.preventDefault();
    try {
      await api("PUT", `/api/secrets/${encodeURIComponent(name.value)}`, { value: value.value });
      value.value = "";
      await secretsPage();
    } catch (err) { message.replaceChildren(errorBox(err.message)); }
  }
  const rows = page.items.map((x) => h("tr", {},
    h("td", {}, h("code", {}, x.name)), h("td", {}, when(x.updated_at)),
    h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => { name.value = x.name; value.focus(); } }, "Replace"), " ",
      h("button", { type: "button", class: "secondary", onclick: async () => {
        if (!confirm(`Delete secret ${x.name}?`)) return;
        try { await api("DELETE", `/api/secrets/${encodeURIComponent(x.name)}`); await secretsPage(); }
        catch (err) { message.replaceChildren(errorBox(err.message)); }
      } }, "Delete"))));
  show(h("h1", {}, "Secrets"),
    h("p", { class: "muted" }, "Values are write-only: a script reads the ones it declares as ctx.env.NAME."),
    rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "secrets" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Updated"), h("th", {}, ""))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "No secrets yet."),
    h("form", { class: "card", onsubmit: put }, h("h2", {}, "Set a secret"),
      h("div", { class: "grid" }, field("secret-name", "Name", name), field("secret-value", "Value", value)),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Save secret"))),
    message);
}

// ---- executions ----------------------------------------------------------

function executionsTable(items, withScript) {
  if (!items.length) return h("p", { class: "muted" }, "No executions.");
  return h("div", { class: "table-wrap" }, h("table", { class: "executions" },
    h("thead", {}, h("tr", {}, h("th", {}, "Started"), withScript ? h("th", {}, "Script") : null, h("th", {}, "Trigger"),
      h("th", {}, "Status"), h("th", { class: "optional" }, "Attempt"), h("th", { class: "optional" }, "Duration"))),
    h("tbody", {}, items.map((e) => executionRow(e, withScript)))));
}

function executionRow(e, withScript) {
  return h("tr", {},
    h("td", {}, h("a", { href: `#/executions/${e.id}` }, when(e.started_at || e.queued_at))),
    withScript ? h("td", {}, h("a", { href: `#/scripts/${e.script_id}` }, e.script_id.slice(0, 8))) : null,
    h("td", {}, e.trigger_type), h("td", {}, status(e.status)),
    h("td", { class: "optional" }, e.attempt),
    h("td", { class: "optional" }, duration(e)));
}

// ---- live: /api/executions/stream ------------------------------------------

let liveStream = null; // the AbortController of the open stream, if any
function stopLive() {
  if (liveStream) liveStream.abort();
  liveStream = null;
}

// Reads Server-Sent Events from `path` (with the API key, which EventSource
// cannot send) and calls onEvent(name, data) for each.
async function follow(path, onEvent) {
  stopLive();
  const controller = new AbortController();
  liveStream = controller;
  const res = await fetch(path, { signal: controller.signal,
    headers: { authorization: auth(), accept: "text/event-stream" } });
  if (!res.ok) throw new ApiError(res.status, res.statusText);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") throw err;
  }
}

async function executionsPage(query) {
  const params = new URLSearchParams(query);
  const scripts = await api("GET", "/api/scripts?limit=200");
  const scriptSel = h("select", { id: "filter-script" }, h("option", { value: "" }, "All scripts"),
    ...scripts.items.map((s) => h("option", { value: s.id, selected: params.get("script_id") === s.id }, s.name)));
  const statusSel = h("select", { id: "filter-status" }, h("option", { value: "" }, "Any status"),
    ...["queued", "running", "completed", "failed", "dead"].map((x) =>
      h("option", { value: x, selected: params.get("status") === x }, x)));
  const apply = () => {
    const p = new URLSearchParams();
    if (scriptSel.value) p.set("script_id", scriptSel.value);
    if (statusSel.value) p.set("status", statusSel.value);
    location.hash = `#/executions?${p}`;
  };
  scriptSel.onchange = apply;
  statusSel.onchange = apply;
  const api_params = new URLSearchParams(params);
  api_params.set("limit", "50");
  const page = await api("GET", `/api/executions?${api_params}`);
  const next = page.next_cursor ? h("button", { type: "button", class: "secondary", onclick: () => {
    params.set("cursor", page.next_cursor); location.hash = `#/executions?${params}`;
  } }, "Older") : null;
  const list = h("div", { id: "executions-list" }, executionsTable(page.items, true));
  const liveNote = h("p", { class: "muted", role: "status" });
  const live = h("input", { type: "checkbox", id: "live", checked: params.get("live") === "1" });
  // Live: each execution that finishes is added at the top as it is recorded.
  const startLive = () => {
    liveNote.textContent = "Live: executions appear as they finish.";
    const script = params.get("script_id");
    const path = `/api/executions/stream${script ? `?script_id=${encodeURIComponent(script)}` : ""}`;
    follow(path, (name, data) => {
      if (name === "missed") {
        liveNote.textContent = `Missed ${data.missed} executions while the page was behind: reload to see them.`;
        return;
      }
      if (name !== "execution" || (params.get("status") && data.status !== params.get("status"))) return;
      const started = new Date(data.finished_at_ms - Math.round(data.duration_us / 1000)).toISOString();
      const e = { ...data, queued_at: null, started_at: started };
      const body = list.querySelector("tbody");
      if (body) body.prepend(executionRow(e, true));
      else list.replaceChildren(executionsTable([e], true));
    }).catch((err) => { liveNote.replaceChildren(errorBox(`Live stopped: ${err.message}`)); live.checked = false; });
  };
  live.onchange = () => {
    if (live.checked) startLive();
    else { stopLive(); liveNote.textContent = ""; }
  };
  show(h("h1", {}, "Executions"),
    h("div", { class: "row" }, h("label", { for: "filter-script" }, "Script"), scriptSel,
      h("label", { for: "filter-status" }, "Status"), statusSel,
      h("label", { class: "live", for: "live" }, live, "Live")),
    liveNote, list, h("div", { class: "row" }, next));
  if (live.checked) startLive();
}

function json(value) { return h("pre", {}, JSON.stringify(value, null, 2)); }

function executionDetail(e) {
  const logs = (e.logs || []).map((l) => h("div", { class: `log-${l.level}` }, `[${l.level}] ${l.message}`));
  return h("div", { class: "card execution" },
    h("p", {}, "Status: ", status(e.status), ` · attempt ${e.attempt} · ${e.trigger_type}`),
    e.error_type ? errorBox(`${e.error_type}: ${e.error_message || ""}`) : null,
    h("div", { class: "grid" },
      h("div", {}, h("h2", {}, "Input"), json(e.input)),
      h("div", {}, h("h2", {}, "Output"), json(e.output))),
    h("h2", {}, "Logs"), logs.length ? h("pre", { class: "logs" }, logs) : h("p", { class: "muted" }, "No logs."),
    h("p", { class: "muted" },
      `Queued ${when(e.queued_at)} · started ${when(e.started_at)} · finished ${when(e.finished_at)} · `,
      `duration ${duration(e)} · fuel ${e.fuel_used ?? "—"} · peak memory ${bytes(e.memory_peak_bytes)}`));
}

async function executionPage(id) {
  const e = await api("GET", `/api/executions/${id}`);
  const retryMessage = h("div", { "aria-live": "polite" });
  const retry = ["failed", "dead"].includes(e.status) ? h("button", { type: "button", onclick: async () => {
    try {
      const again = await api("POST", `/api/executions/${e.id}/retry`);
      location.hash = `#/executions/${again.id}`;
    } catch (err) { retryMessage.replaceChildren(errorBox(err.message)); }
  } }, "Retry") : null;
  show(h("h1", {}, "Execution"),
    h("p", {}, h("a", { href: `#/scripts/${e.script_id}` }, "Its script")),
    executionDetail(e), h("div", { class: "row" }, retry), retryMessage);
}

// ---- overview charts (SVG drawn here from /api/stats) ---------------------

const svgNs = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const palette = { completed: "#1e7b3a", failed: "#b3261e", dead: "#6b1a14", running: "#8a5a00", queued: "#c9a227",
                  p50: "#2457c5", p95: "#7a3db8", in_use: "#2457c5", size: "#9aa3b2", lag: "#b3561e" };

// A chart of `points` (x = index), as stacked bars or lines, with a y axis.
function chart(title, cls, labels, series, kind, unit) {
  const w = 600, hgt = 180, left = 48, bottom = 22, top = 10;
  const n = labels.length || 1;
  const totals = labels.map((_, i) => kind === "bars"
    ? series.reduce((a, sr) => a + (sr.values[i] || 0), 0)
    : Math.max(0, ...series.map((sr) => sr.values[i] || 0)));
  const max = Math.max(1, ...totals);
  const x = (i) => left + (i + 0.5) * (w - left) / n;
  const y = (v) => top + (hgt - top - bottom) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${w} ${hgt}`, class: `chart ${cls}`, role: "img", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", { x1: left, x2: w, y1: y(max * f), y2: y(max * f), stroke: "#e3e7ee" }),
      s("text", { x: left - 4, y: y(max * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#5b6475" },
        `${+(max * f).toFixed(max < 10 ? 1 : 0)}${unit}`));
  }
  if (kind === "bars") {
    const bw = Math.max(1, (w - left) / n - 1);
    labels.forEach((_, i) => {
      let acc = 0;
      for (const sr of series) {
        const v = sr.values[i] || 0;
        if (!v) continue;
        svg.append(s("rect", { class: "bar", x: x(i) - bw / 2, width: bw, y: y(acc + v), height: y(acc) - y(acc + v),
          fill: palette[sr.name] || "#888" }, s("title", {}, `${labels[i]} ${sr.name}: ${v}`)));
        acc += v;
      }
    });
  } else {
    for (const sr of series) {
      const pts = sr.values.map((v, i) => (v === null || v === undefined ? null : `${x(i)},${y(v)}`)).filter(Boolean);
      if (pts.length > 1) svg.append(s("polyline", { class: "line", points: pts.join(" "), fill: "none",
        stroke: palette[sr.name] || "#888", "stroke-width": 2 }));
      // A lone point has no line to draw: mark it.
      if (pts.length === 1) { const [px, py] = pts[0].split(","); svg.append(s("circle", { cx: px, cy: py, r: 3, fill: palette[sr.name] })); }
    }
  }
  if (labels.length) {
    svg.append(s("text", { x: left, y: hgt - 6, "font-size": 10, fill: "#5b6475" }, labels[0]),
      s("text", { x: w, y: hgt - 6, "font-size": 10, fill: "#5b6475", "text-anchor": "end" }, labels[labels.length - 1]));
  }
  // Colours through the CSSOM: the page's CSP allows no style attributes.
  // The colour is a box beside the name; the name stays in the text colour,
  // legible whatever the series' colour.
  const swatch = (sr) => {
    const box = h("span", { class: "swatch", "aria-hidden": "true" });
    box.style.background = palette[sr.name] || "#888";
    return h("span", { class: "legend-item" }, box, sr.name);
  };
  const legend = h("p", { class: "muted" }, series.map(swatch));
  return h("section", { class: "card" }, h("h2", {}, title), svg, legend);
}

async function overviewPage() {
  const st = await api("GET", "/api/stats?minutes=60");
  const labels = st.minutes.map((m) => new Date(m.t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  const statuses = ["completed", "failed", "dead", "running", "queued"];
  const runs = chart("Runs per minute by status", "chart-runs", labels,
    statuses.map((name) => ({ name, values: st.minutes.map((m) => m.runs[name] || 0) })), "bars", "");
  const durations = chart("Duration p50 / p95", "chart-duration", labels,
    [{ name: "p50", values: st.minutes.map((m) => m.p50_ms) }, { name: "p95", values: st.minutes.map((m) => m.p95_ms) }],
    "lines", " ms");
  const kinds = Object.entries(st.errors_by_kind);
  const errors = h("section", { class: "card" }, h("h2", {}, "Errors by kind (last hour)"),
    kinds.length ? h("table", { class: "errors-by-kind" }, h("tbody", {}, kinds.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v)))))
      : h("p", { class: "muted" }, "No errors."));
  const poolLabels = st.pool.map((p) => new Date(p.t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  const pool = chart("Sandbox pool: in use vs size (this node)", "chart-pool", poolLabels,
    [{ name: "size", values: st.pool.map((p) => p.size) }, { name: "in_use", values: st.pool.map((p) => p.in_use) }], "lines", "");
  const lag = chart("Scheduler lag p95", "chart-lag", labels,
    [{ name: "lag", values: st.minutes.map((m) => m.lag_p95_ms) }], "lines", " ms");
  show(h("h1", {}, "Overview: the last hour"), runs, durations, errors, pool, lag);
}

// ---- routing -------------------------------------------------------------

async function route() {
  stopLive();
  const hash = location.hash.slice(1) || "/scripts";
  const [path, query] = hash.split("?");
  if (!sessionStorage.getItem(keyStore) || path === "/signin") return signIn();
  document.getElementById("nav").hidden = false;
  try {
    let m;
    if (path === "/scripts") await scriptsPage();
    else if (path === "/overview") await overviewPage();
    else if ((m = /^\/scripts\/([\w-]+)$/.exec(path))) await scriptPage(m[1]);
    else if (path === "/executions") await executionsPage(query || "");
    else if (path === "/secrets") await secretsPage();
    else if ((m = /^\/executions\/([\w-]+)$/.exec(path))) await executionPage(m[1]);
    else show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/scripts" }, "Scripts")));
  } catch (err) {
    if (err.status !== 401) show(errorBox(err.message));
  }
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(keyStore);
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();

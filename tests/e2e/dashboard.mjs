// Drives the dashboard in headless Chromium:
// node dashboard.mjs BASE_URL KEY OTHER_KEY SCREENSHOT_DIR PUBLIC_URL
// Exits non-zero with a message on the first expectation that fails.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

// axe-core, evaluated through the DevTools protocol (the page's CSP, rightly,
// lets no injected <script> run).
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const [base, key, otherKey, shots, publicBase] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const failed = [];
page.on("pageerror", (e) => failed.push(`page error: ${e.message}`));
// The dashboard runs under its Content-Security-Policy; a violation is a bug.
page.on("console", (m) => {
  if (/Content Security Policy/i.test(m.text())) failed.push(`CSP violation: ${m.text()}`);
});
const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
}
const text = (selector) => page.locator(selector).first().innerText({ timeout: 10000 });
// No serious or critical accessibility violations on the page as shown.
async function accessible(what) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
  });
  expect(found.length === 0, `${what} is accessible: ${found.join("; ")}`);
}

try {
  await page.goto(base);
  // Signed out: the sign-in form and nothing else.
  await page.getByLabel("API key").waitFor();
  expect(!(await page.locator("#nav").isVisible()), "no navigation while signed out");
  const signin = await text(".signin");
  expect(!signin.includes("`"), `no literal backticks on the sign-in page: ${signin}`);
  await accessible("the sign-in page");
  // A wrong key is refused.
  await page.getByLabel("API key").fill("sbx_not_a_key");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  expect((await text("[role=alert]")).includes("refused"), "a wrong key is refused");
  await shot("01-signin-refused");

  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: /Scripts of acme/ }).waitFor();
  expect(await page.locator("#nav").isVisible(), "navigation once signed in");
  await shot("02-scripts-empty");

  // Create a script with a syntax error on line 3: the error names it.
  await page.getByRole("button", { name: "New script" }).click();
  await page.getByLabel("Name").fill("greeter");
  await page.getByLabel("Source").fill("export default (input) => {\n  console.log('hi', input.name);\n  return { hello: input.name ;\n};\n");
  await page.getByRole("button", { name: "Create" }).click();
  await page.locator(".syntax-line").waitFor();
  const syntax = await text("[role=alert]");
  expect(/line 3/.test(syntax), `the syntax error names line 3: ${syntax}`);
  expect((await text(".syntax-line")).startsWith("Line 3:"), "the offending line is shown");
  await shot("03-syntax-error");

  // Fix it and create.
  await page.getByLabel("Source").fill("export default (input) => {\n  console.log('hi', input.name);\n  return { hello: input.name };\n};\n");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "greeter" }).waitFor();

  // Run it with an input: output, logs, usage inline.
  await page.getByLabel("Input (JSON)").fill('{"name": "Ada"}');
  await page.getByRole("button", { name: "Run now" }).click();
  await page.locator(".execution .status-completed").waitFor();
  const run = await text(".execution");
  expect(run.includes('"hello": "Ada"'), `the output is shown: ${run}`);
  expect(run.includes("[info] hi Ada"), `the logs are shown: ${run}`);
  // Sub-millisecond precision, memory in KiB/MiB.
  expect(/fuel \d+/.test(run), `fuel is shown: ${run}`);
  expect(/duration \d+(\.\d)? (µs|ms)/.test(run) && !/duration 0 ms/.test(run), `the duration is precise: ${run}`);
  expect(/peak memory \d+\.\d (KiB|MiB)/.test(run), `memory in KiB or MiB: ${run}`);
  await shot("04-run-now");
  await accessible("a script's page");

  // Ctrl+Enter in the editor saves and runs the new source.
  await page.getByLabel("Source").fill("export default (input) => {\n  console.log('from the keyboard');\n  return 7;\n};\n");
  await page.getByLabel("Source").press("Control+Enter");
  await page.waitForFunction(() => /from the keyboard/.test(document.querySelector(".execution")?.innerText || ""));
  expect((await text("[role=status]")).includes("Saved version 2"), "Ctrl+Enter saved first");
  const greeter = page.url().split("/").pop();

  // A failing script, run, then retried from the executions page.
  await page.goto(`${base}/#/scripts/new`);
  await page.getByLabel("Name").fill("broken");
  await page.getByLabel("Source").fill("export default () => { throw new Error('nope') }\n");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "broken" }).waitFor();
  await page.getByRole("button", { name: "Run now" }).click();
  await page.locator(".execution .status-failed").waitFor();

  await page.getByRole("link", { name: "Executions", exact: true }).click();
  await page.getByRole("heading", { name: "Executions" }).waitFor();
  await page.locator("table.executions tbody tr").nth(2).waitFor();
  const rows = await page.locator("table.executions tbody tr").count();
  expect(rows === 3, `every run is listed (${rows})`);
  await accessible("the executions page");

  // Live: a run made elsewhere appears at the top as it finishes.
  await page.getByLabel("Live").check();
  await page.getByText("Live: executions appear as they finish.").waitFor();
  const made = await fetch(`${base}/api/scripts/${greeter}/run`, {
    method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}",
  }).then((r) => r.json());
  await page.locator(`table.executions tbody tr:first-child a[href="#/executions/${made.id}"]`).waitFor();
  expect((await page.locator("table.executions tbody tr").count()) === 4, "the live run was added once");
  await shot("05-executions-live");
  await page.getByLabel("Live").uncheck();
  await page.reload();
  await page.locator("table.executions tbody tr").nth(3).waitFor();
  await page.getByLabel("Status").selectOption("failed");
  await page.waitForFunction(() => document.querySelectorAll("table.executions tbody tr").length === 1);
  await shot("05-executions-failed");
  await page.locator("table.executions tbody tr a").first().click();
  await page.getByRole("heading", { name: "Execution" }).waitFor();
  expect((await text(".execution")).includes("js_error: Error: nope"), "the error kind and message are shown");
  await page.getByRole("button", { name: "Retry" }).click();
  await page.waitForFunction(() => /attempt 1/.test(document.querySelector(".execution")?.innerText || ""));
  await shot("06-retried");

  // A scheduled script in Paris and a webhook script.
  await page.goto(`${base}/#/scripts/new`);
  await page.getByLabel("Name").fill("nightly");
  await page.getByLabel("Trigger").selectOption("scheduled");
  await page.getByLabel("Schedule (cron, for scheduled)").fill("30 2 * * *");
  await page.getByLabel("Time zone (IANA)").fill("Europe/Paris");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "nightly" }).waitFor();
  await page.goto(`${base}/#/scripts/new`);
  await page.getByLabel("Name").fill("hook");
  await page.getByLabel("Trigger").selectOption("webhook");
  await page.getByLabel("Webhook path (for webhooks)").fill("/hooks/in");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "hook" }).waitFor();

  // The scripts list: last runs, next three fire times with the zone, the
  // webhook URL, and an enabled toggle that works from the keyboard.
  await page.getByRole("link", { name: "Scripts", exact: true }).click();
  await page.locator("td .status-failed").waitFor();
  await page.locator("td .status-completed").waitFor();
  const nightly = page.locator("tr", { hasText: "nightly" });
  await nightly.getByText("Europe/Paris").last().waitFor();
  const fires = (await nightly.innerText()).match(/T02:30:00\+0[12]:00/g) || [];
  expect(fires.length === 3, `three fire times at 02:30 Paris time: ${await nightly.innerText()}`);
  const hookUrl = await page.locator("tr", { hasText: "hook" }).locator("code.hook-url").innerText();
  expect(hookUrl === `${publicBase}/acme/hooks/in`, `the webhook URL on the public listener: ${hookUrl}`);
  const toggle = page.getByLabel("Enabled: nightly");
  await toggle.focus();
  await page.keyboard.press("Space");
  await page.waitForTimeout(300);
  await page.reload();
  await page.getByLabel("Enabled: nightly").waitFor();
  expect(!(await page.getByLabel("Enabled: nightly").isChecked()), "the script was disabled from the keyboard");
  await shot("07-scripts");

  // The overview charts are drawn from the service's data.
  await page.getByRole("link", { name: "Overview", exact: true }).click();
  await page.getByRole("heading", { name: /Overview/ }).waitFor();
  await page.locator("svg.chart-runs rect.bar").first().waitFor();
  const bars = await page.locator("svg.chart-runs rect.bar").count();
  expect(bars >= 2, `run bars for completed and failed (${bars})`);
  await page.locator("svg.chart-duration polyline, svg.chart-duration circle").first().waitFor({ state: "attached" });
  expect((await text("table.errors-by-kind")).includes("js_error"), "errors by kind list js_error");
  await page.locator("svg.chart-pool polyline, svg.chart-pool circle").first().waitFor({ state: "attached" });
  await shot("08-overview");
  await accessible("the overview");

  // A narrow window still reads.
  await page.getByRole("link", { name: "Scripts", exact: true }).click();
  await page.locator("td .status-completed").waitFor();
  await page.setViewportSize({ width: 420, height: 800 });
  await shot("09-scripts-narrow");
  await page.setViewportSize({ width: 1280, height: 800 });

  // Secrets: set one (its value is never shown again), declare it on a
  // script with a var, run it: the script read it, the run shows it masked.
  await page.getByRole("link", { name: "Secrets", exact: true }).click();
  await page.getByRole("heading", { name: "Secrets" }).waitFor();
  await page.getByLabel("Name").fill("API_TOKEN");
  await page.getByLabel("Value").fill("tok_dashboard_secret_1");
  await page.getByRole("button", { name: "Save secret" }).click();
  await page.locator("table.secrets", { hasText: "API_TOKEN" }).waitFor();
  expect(!(await text("main")).includes("tok_dashboard_secret_1"), "a secret's value is not shown");
  await shot("10-secrets");
  await accessible("the secrets page");
  await page.goto(`${base}/#/scripts/new`);
  await page.getByLabel("Name").fill("uses-token");
  await page.getByLabel("Source").fill(
    "export default (input, ctx) => { console.log(ctx.env.API_TOKEN); return [ctx.env.MODE, ctx.env.API_TOKEN.length] }\n");
  await page.getByLabel("Secrets it may read").fill("API_TOKEN");
  await page.getByLabel("Vars").fill("MODE=live");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "uses-token" }).waitFor();
  await page.getByRole("button", { name: "Run now" }).click();
  await page.locator(".execution .status-completed").waitFor();
  const masked = await text(".execution");
  expect(masked.includes("[info] [secret API_TOKEN]"), `the secret is masked in the logs: ${masked}`);
  expect(masked.includes('"live"') && masked.includes("22"), `the var and the secret reached the run: ${masked}`);
  expect(!masked.includes("tok_dashboard_secret_1"), "the secret's value is not shown");
  await shot("11-secret-masked");

  // Another tenant sees none of it.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").fill(otherKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: /Scripts of globex/ }).waitFor();
  const other = await text("main");
  expect(!other.includes("greeter") && !other.includes("broken"), "another tenant's scripts are not shown");
  expect(other.includes("No scripts yet."), "the other tenant has none");
  await shot("12-other-tenant");
  expect(failed.length === 0, `no page errors: ${failed.join("; ")}`);
  console.log("dashboard: all checks passed");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}

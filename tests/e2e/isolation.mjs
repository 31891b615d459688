// A tenant's webhook page is the attacker; a signed-in dashboard is the victim.
// node isolation.mjs ADMIN_URL PUBLIC_URL KEY
// The webhook pages (created by the Rust test) record what they could reach
// in document.body.dataset.result; this script loads them in the same
// browser as the signed-in dashboard and checks they reached nothing.
import { chromium } from "playwright-core";

const [admin, pub, key] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const context = await browser.newContext();
const page = await context.newPage();
function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
}
async function resultOf(url) {
  await page.goto(url);
  await page.waitForFunction(() => document.body && document.body.dataset.result, null, { timeout: 15000 });
  return JSON.parse(await page.evaluate(() => document.body.dataset.result));
}

try {
  // The victim: the dashboard, signed in; its key is in sessionStorage.
  await page.goto(admin);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: /Scripts of acme/ }).waitFor();
  const stored = await page.evaluate(() => Object.values(sessionStorage).join(" "));
  expect(stored.includes(key), "the dashboard keeps the key in sessionStorage (the thing to protect)");

  // The attacker's page, one click away.
  const attack = await resultOf(`${pub}/acme/page`);
  console.log("attacker page:", JSON.stringify(attack));
  expect(attack.origin === "null", `the tenant page has an opaque origin (got ${attack.origin})`);
  expect(attack.sessionStorage.startsWith("blocked"), `sessionStorage is out of reach: ${attack.sessionStorage}`);
  expect(attack.localStorage.startsWith("blocked"), `localStorage is out of reach: ${attack.localStorage}`);
  expect(attack.cookie.startsWith("blocked"), `cookies are out of reach: ${attack.cookie}`);
  expect(attack.serviceWorker.startsWith("blocked"), `no service worker can be registered: ${attack.serviceWorker}`);
  expect(!JSON.stringify(attack).includes(key), "the key appears nowhere the attacker could read");
  expect(attack.framedKey.startsWith("blocked"), `the framed dashboard's storage is out of reach: ${attack.framedKey}`);
  expect(attack.openedKey.startsWith("blocked"), `an opened dashboard's storage is out of reach: ${attack.openedKey}`);
  expect(attack.api === "refused", `the API refuses the attacker without the key: ${attack.api}`);

  // Another tenant's page on the shared public origin sees nothing the first wrote.
  const other = await resultOf(`${pub}/globex/page`);
  console.log("other tenant's page:", JSON.stringify(other));
  expect(other.localStorage.startsWith("blocked"), `storage is out of reach for the other tenant too: ${other.localStorage}`);

  // Nothing was left behind: no service worker anywhere, dashboard still signed in.
  expect(context.serviceWorkers().length === 0, `no service workers (${context.serviceWorkers().length})`);
  await page.goto(admin);
  await page.getByRole("heading", { name: /Scripts of acme/ }).waitFor();
  const controlled = await page.evaluate(async () => {
    const regs = navigator.serviceWorker ? await navigator.serviceWorker.getRegistrations() : [];
    return regs.length + (navigator.serviceWorker && navigator.serviceWorker.controller ? 1 : 0);
  });
  expect(controlled === 0, `no service worker controls the dashboard (${controlled})`);
  console.log("ok");
} catch (error) {
  console.error(error.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}

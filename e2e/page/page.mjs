// page.mjs drives Debian's chromium (headless, through playwright-core)
// against edge's status page, for e2e/page_test.go. It prints one line per
// check and exits non-zero on the first failure.
//
// Environment:
//   ADMIN_URL    edge's admin listener, "http://127.0.0.1:PORT"
//   MODE         "open" (no token set) or "token" (a token is set)
//   NAMES        the certificate names the page must show, comma-separated
//   DOWN         (open) the backend URL that is down at first
//   SIGNAL_DIR   (open) where seen-down is written once the page shows DOWN
//                down; the test then starts that backend
//   TOKEN        (token) the admin token, to log in with
//   SHOTS        the directory the screenshots go to
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined || v === "") throw new Error(`page.mjs: ${k} is not set`);
  return v;
};
const adminURL = env("ADMIN_URL");
const mode = env("MODE");
const names = env("NAMES").split(",");
const shots = env("SHOTS");
const UPDATE_MS = 30000; // the page refreshes every 3 s

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
  // playwright-core makes a fresh --user-data-dir per launch
});
let failed = false;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const consoleErrors = [];
  // Answers the page expects: no shared store (file storage) has no locks to
  // list; without a session the API and a wrong login answer 401.
  const expected = { "/api/locks": [404], "/api/certificates": [401], "/api/pools": [401], "/api/events": [401], "/api/cluster": [401], "/login": [401] };
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (r.status() >= 400 && !(expected[path] || []).includes(r.status())) {
      consoleErrors.push(`${r.status()} for ${path}`);
    }
  });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // Chromium logs every 4xx fetch; the response handler judges those.
    if (m.text().startsWith("Failed to load resource: the server responded with a status of")) return;
    consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
  await page.goto(adminURL + "/", { waitUntil: "load" });

  if (mode === "open") {
    await runOpen(page, ctx);
  } else if (mode === "token") {
    await runToken(page, ctx);
  } else {
    throw new Error("page.mjs: MODE must be open or token");
  }
  if (navigations !== 1) throw new Error(`the page navigated ${navigations} times; it must update without reloading`);
  // CSP violations and script errors show up here.
  if (consoleErrors.length) throw new Error("console errors: " + consoleErrors.join(" | "));
  console.log("ok: no reload, no console error");
} catch (err) {
  failed = true;
  console.error("FAIL: " + (err && err.stack ? err.stack : err));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);

async function expectNames(page) {
  await page.waitForSelector("#content:not([hidden]) .cert", { timeout: UPDATE_MS });
  const shown = await page.$$eval(".cert-name", (els) => els.map((e) => e.textContent));
  for (const n of names) {
    if (!shown.includes(n)) throw new Error(`certificate name ${n} not shown (shown: ${shown.join(", ")})`);
  }
  console.log("ok: every certificate name shown: " + names.join(", "));
}

async function backendState(page, url) {
  return page.$eval(`tr.backend[data-url="${url}"]`, (tr) => tr.dataset.state + " " + tr.querySelector(".state").textContent)
    .catch(() => "missing");
}

async function runOpen(page, ctx) {
  const down = env("DOWN");
  const signalDir = env("SIGNAL_DIR");
  await expectNames(page);
  if (await page.isVisible("#login")) throw new Error("the login form shows though no token is set");
  // The active check marks it down within a second of edge's start.
  await page.waitForFunction((u) => {
    const tr = document.querySelector(`tr.backend[data-url="${u}"]`);
    return tr && tr.dataset.state === "down";
  }, down, { timeout: UPDATE_MS });
  console.log("ok: backend marked down: " + (await backendState(page, down)));
  await page.screenshot({ path: join(shots, "page-down.png"), fullPage: true });
  // A mark on this document: a reload would lose it.
  await page.evaluate(() => { window.__sameDocument = true; });
  writeFileSync(join(signalDir, "seen-down"), "1");
  await page.waitForFunction((u) => {
    const tr = document.querySelector(`tr.backend[data-url="${u}"]`);
    return window.__sameDocument === true && tr && tr.dataset.state === "up";
  }, down, { timeout: UPDATE_MS });
  console.log("ok: the page updated by itself to " + (await backendState(page, down)));
  const changed = await page.$eval(`tr.backend[data-url="${down}"] .changed`, (td) => td.textContent);
  if (!changed.includes("ago")) throw new Error(`the backend's last change shows ${JSON.stringify(changed)}`);
  console.log("ok: its last change: " + changed);
  const events = await page.$$eval("#event-list .event", (els) => els.map((e) => e.dataset.kind));
  if (!events.includes("obtained")) throw new Error("recent events lack obtained: " + events.join(", "));
  console.log("ok: recent events: " + events.join(", "));
  const cluster = await page.textContent("#cluster-body");
  if (!cluster.includes("This edge: ") || !cluster.includes("not shared")) throw new Error("cluster section: " + cluster);
  console.log("ok: cluster: " + cluster);
  await page.screenshot({ path: join(shots, "page.png"), fullPage: true });
  // Readable on a phone: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`on a 390 px wide screen the page is ${overflow} px too wide`);
  await page.screenshot({ path: join(shots, "page-phone.png"), fullPage: true });
  console.log("ok: fits a 390 px screen");
}

async function runToken(page, ctx) {
  const token = env("TOKEN");
  await page.waitForSelector("#login", { state: "visible", timeout: UPDATE_MS });
  if (await page.isVisible("#content")) throw new Error("without a session the page shows its sections");
  const text = await page.evaluate(() => document.body.innerText);
  for (const n of names) {
    if (text.includes(n)) throw new Error(`without a session the page shows ${n}`);
  }
  if (text.includes("127.0.0.1:")) throw new Error("without a session the page shows a backend address");
  const api = await page.evaluate(async () => (await fetch("/api/certificates")).status);
  if (api !== 401) throw new Error(`/api/certificates without a session: ${api}, want 401`);
  console.log("ok: without the token the page shows the login form and nothing private");
  await page.screenshot({ path: join(shots, "page-login.png"), fullPage: true });

  await page.fill("#token", "not-the-token");
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#login-error:not([hidden])", { timeout: UPDATE_MS });
  if ((await ctx.cookies()).some((c) => c.name === "edge_session")) throw new Error("a wrong token made a session");
  console.log("ok: a wrong token is refused");

  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  await expectNames(page);
  if (await page.isVisible("#login")) throw new Error("the login form still shows after logging in");
  const cookie = (await ctx.cookies()).find((c) => c.name === "edge_session");
  if (!cookie || !cookie.httpOnly || cookie.sameSite !== "Strict" || cookie.value.includes(token)) {
    throw new Error("session cookie: " + JSON.stringify(cookie && { ...cookie, value: "…" }));
  }
  if (await page.evaluate(() => document.cookie.includes("edge_session"))) throw new Error("the session cookie is readable by script");
  console.log("ok: logged in; the cookie is HttpOnly, SameSite=Strict and holds no token");
  await page.waitForSelector('#event-list .event[data-kind="reloaded"]', { timeout: UPDATE_MS });
  console.log("ok: the reload that set the token is among the recent events");
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])", { timeout: UPDATE_MS });
  if ((await page.$$(".cert-name")).length) throw new Error("after logout certificate names remain on the page");
  console.log("ok: logout clears the page");
}

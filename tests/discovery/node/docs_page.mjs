// Loads the gateway's docs page in headless Chromium (Debian's chromium via
// puppeteer-core) and checks: every request answered, no console error, no
// page error, no CSP violation, the assign operation shown. Saves a
// screenshot.
//   node docs_page.mjs --url http://127.0.0.1:PORT/docs --out DIR
//        [--chromium /usr/bin/chromium]
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import puppeteer from "puppeteer-core";

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const url = args.url;
const out = args.out;
const chromium = args.chromium || "/usr/bin/chromium";
if (!url || !out) {
  console.error("usage: docs_page.mjs --url URL --out DIR [--chromium PATH]");
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "das-chromium-"));
const problems = [];
let browser;
try {
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1600 });
  page.on("console", (m) => {
    console.log(`console.${m.type()}: ${m.text()}`);
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) =>
    problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    console.log(`${r.status()} ${r.url().slice(0, 100)}`);
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
    if (r.url() === url) {
      const csp = r.headers()["content-security-policy"] || "";
      if (!csp.includes("default-src 'none'") || !csp.includes("script-src 'self'") ||
          csp.includes("unsafe-eval") || csp.includes("unsafe-inline"))
        problems.push(`weak or missing Content-Security-Policy: ${csp}`);
    }
  });
  await page.goto(url, { waitUntil: "networkidle0", timeout: 60000 });
  // swagger-ui renders one block per operation; the assign operation's
  // path and summary must be on the page.
  await page.waitForSelector(".opblock-summary-path", { timeout: 60000 });
  const ops = await page.$$eval(".opblock-summary-path",
    (els) => els.map((e) => e.textContent.replace(/\u200b/g, "").trim()));
  const title = await page.$eval(".info .title", (e) => e.textContent.trim())
    .catch(() => "");
  console.log(`title: ${title}`);
  console.log(`${ops.length} operations shown`);
  const assign = "/v1.0/customers/{customerTenantId}/users/{userId}/devices/pbx/{deviceId}/assign";
  if (!ops.includes(assign)) problems.push(`assign operation ${assign} not shown`);
  const text = await page.evaluate(() => document.body.innerText);
  if (!text.includes("Assign a PBX device as the user's softphone"))
    problems.push("assign summary not shown");
  // Open the assign operation so the screenshot shows it in full.
  const blocks = await page.$$(".opblock-summary");
  for (const b of blocks) {
    const p = await b.$eval(".opblock-summary-path",
      (e) => e.textContent.replace(/\u200b/g, "").trim()).catch(() => "");
    if (p === assign) {
      await b.click();
      await page.waitForSelector(".opblock.is-open .responses-table",
        { timeout: 30000 });
      const open = await page.$(".opblock.is-open");
      const opShot = path.join(out, "docs-assign-operation.png");
      await open.screenshot({ path: opShot });
      console.log(`screenshot: ${opShot}`);
      break;
    }
  }
  const shot = path.join(out, "docs-page.png");
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);
} catch (e) {
  problems.push(`exception: ${e.message}`);
} finally {
  if (browser) await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
for (const p of problems) console.log(`FAIL ${p}`);
if (problems.length) process.exit(1);
console.log("docs page ok: loaded, no console error, assign operation shown");

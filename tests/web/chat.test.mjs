// chat.test.mjs — `fieldlm serve`'s chat page (GET /) in headless Debian chromium, driven by
// playwright-core (pinned in package-lock.json). Run by tests/test_serve_web.c (make test) as
// `FLM_BIN=build/fieldlm FLM_TMPDIR=DIR node tests/web/chat.test.mjs` from the repository root;
// exits 0 when every check passed, prints "FAIL: ..." and exits 1 otherwise.
// Checks: the page loads with nothing fetched from anywhere but the server; a typed question
// gets a streamed answer that grows over several DOM updates and equals `fieldlm run --greedy`
// for the same system prompt; the system-prompt box is what the request carries (and an empty
// box sends none); the stop button ends the generation and the server frees the slot; a
// screenshot is saved in FLM_TMPDIR (its path printed).
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startServer, stopServer, waitIdle, metrics, runGreedy, SYS } from "./lib.mjs";

const CHROMIUM = process.env.FLM_CHROMIUM || "/usr/bin/chromium";
const OUTDIR = process.env.FLM_TMPDIR || mkdtempSync(join(tmpdir(), "fieldlm-web-"));
const QUESTION = "Stem borer in paddy (crop: Paddy (Dhan))";
const SYS2 = "You are a plant protection officer. Name one pesticide.";
const N = 64;

let server, browser, failed = false;

async function main() {
  server = await startServer(["-c", "4096", "--parallel", "1", "-t", "1"]);
  const base = server.base;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
                                    args: ["--no-sandbox", "--disable-background-networking"] });
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  // Nothing but this server: any other request is refused and counted as a failure.
  const foreign = [];
  await page.route("**/*", (route) => {
    const u = new URL(route.request().url());
    if (u.origin === base) return route.continue();
    foreign.push(u.href);
    return route.abort();
  });
  const bodies = []; // the JSON bodies the page POSTs to /v1/chat/completions
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/v1/chat/completions")) bodies.push(JSON.parse(r.postData()));
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  const resp = await page.goto(base + "/");
  assert.equal(resp.status(), 200, "GET / answers 200");
  assert.match(resp.headers()["content-type"] || "", /text\/html/);
  await page.waitForFunction(() => document.getElementById("model").textContent === "kcc-advisor");

  // Records the length of the newest answer's text at every DOM change of #log.
  await page.evaluate(() => {
    window.__lengths = [];
    new MutationObserver(() => {
      const all = document.querySelectorAll("#log .assistant");
      const last = all[all.length - 1];
      if (last && last.firstChild && last.firstChild.nodeType === 3) window.__lengths.push(last.firstChild.nodeValue.length);
    }).observe(document.getElementById("log"), { childList: true, subtree: true, characterData: true });
  });

  const answerOf = (i) => page.evaluate((k) => {
    const d = document.querySelectorAll("#log .assistant")[k];
    return { text: d.firstChild && d.firstChild.nodeType === 3 ? d.firstChild.nodeValue : "",
             meta: (d.querySelector(".meta") || {}).textContent || "", cls: d.className, state: d.dataset.state };
  }, i);

  // 1. The settings: a system prompt of our own, greedy, N tokens; then a question typed and sent with Enter.
  await page.click("details summary");
  await page.fill("#system", SYS2);
  await page.fill("#temperature", "0");
  await page.fill("#maxtokens", String(N));
  await page.fill("#question", QUESTION);
  await page.press("#question", "Enter");
  await page.waitForSelector("#log .assistant[data-state=done]", { timeout: 60000 });
  const a1 = await answerOf(0);
  assert.equal(a1.cls, "msg assistant", "the first answer is not an error: " + a1.text);
  const want1 = runGreedy(SYS2, QUESTION, N);
  assert.ok(want1.length > 0);
  assert.equal(a1.text, want1, "the page's answer equals `fieldlm run --greedy --system SYS2`");
  assert.match(a1.meta, /\d+ tokens in [\d.]+ s/, "the answer's meta line shows the usage");
  const lengths = await page.evaluate(() => window.__lengths.filter((n) => n > 0));
  const growth = lengths.filter((n, i) => i === 0 || n > lengths[i - 1]);
  console.log(`answer 1: ${a1.text.length} characters over ${growth.length} growing DOM updates (${growth.join(",")})`);
  assert.ok(growth.length >= 3, `the streamed answer grew over several DOM updates (${growth.join(",")})`);
  assert.equal(bodies.length, 1);
  assert.deepEqual(bodies[0].messages, [{ role: "system", content: SYS2 }, { role: "user", content: QUESTION }],
                   "the request carries the system-prompt box and the question");
  assert.equal(bodies[0].stream, true);
  assert.equal(bodies[0].temperature, 0);
  assert.equal(bodies[0].max_tokens, N);

  // 2. A new chat with the default system prompt: the answer follows the box (differs from
  // the first, equals `fieldlm run --greedy` with SYS); an emptied box sends no system message.
  await page.click("#clear");
  await page.fill("#system", SYS);
  await page.fill("#question", QUESTION);
  await page.click("#send");
  await page.waitForSelector("#log .assistant[data-state=done]", { timeout: 60000 });
  const a2 = await answerOf(0);
  assert.equal(a2.text, runGreedy(SYS, QUESTION, N), "the answer follows the system-prompt box");
  assert.notEqual(a2.text, a1.text, "another system prompt, another answer");
  await page.click("#clear");
  await page.fill("#system", "");
  await page.fill("#maxtokens", "4");
  await page.fill("#question", "Hello");
  await page.click("#send");
  await page.waitForSelector("#log .assistant[data-state=done]", { timeout: 60000 });
  assert.deepEqual(bodies[2].messages, [{ role: "user", content: "Hello" }], "an empty box sends no system message");

  // 3. Stop: a long sampled answer (temperature 2, up to 3500 tokens), stopped after its first
  // tokens arrive; the page shows "stopped", the server counts a cancelled generation and its
  // slot is free again. A sampled answer may still end on its own before the click lands (an
  // end-of-sequence token): then that attempt does not count and the test asks again (8 at most).
  await page.fill("#system", SYS);
  await page.fill("#temperature", "2");
  await page.fill("#maxtokens", "3500");
  let stopped = null, attempts = 0;
  while (!stopped && attempts < 8) {
    attempts++;
    await page.click("#clear");
    const before = await metrics(base);
    await page.fill("#question", "Describe every pest of paddy, wheat, cotton and chilli in detail.");
    await page.click("#send");
    assert.equal(await page.isEnabled("#send"), false, "the send button is disabled while generating");
    await page.waitForFunction(() => {
      const d = document.querySelector("#log .assistant");
      return d && (d.dataset.state === "done" || (d.firstChild && d.firstChild.nodeType === 3 && d.firstChild.nodeValue.length > 0));
    }, null, { timeout: 60000 });
    const clicked = await page.click("#stop", { timeout: 1000 }).then(() => true, () => false);
    await page.waitForSelector("#log .assistant[data-state=done]", { timeout: 10000 });
    const a3 = await answerOf(0);
    const h = await waitIdle(base, 10000);
    const after = await metrics(base);
    const cancelled = after.get("fieldlm_generations_cancelled_total") - before.get("fieldlm_generations_cancelled_total");
    const gen = after.get("fieldlm_generated_tokens_total") - before.get("fieldlm_generated_tokens_total");
    if (!clicked || a3.meta !== "stopped" || cancelled === 0) {
      console.log(`stop attempt ${attempts}: the answer ended on its own (${gen} tokens) before the stop landed; again`);
      continue;
    }
    assert.equal(cancelled, 1, "the server cancelled the stopped generation");
    assert.equal(h.slots_processing, 0, "the slot is freed after stop");
    assert.equal(h.slots_idle, 1);
    assert.equal(h.queue_length, 0);
    assert.ok(gen < 3500, "generation ended before max_tokens");
    assert.equal(await page.isEnabled("#stop"), false, "the stop button is disabled again");
    assert.equal(await page.isEnabled("#send"), true, "the send button is enabled again");
    stopped = { chars: a3.text.length, gen };
  }
  assert.ok(stopped, `the stop button stopped a generation in one of ${attempts} attempts`);
  console.log(`stop: ${stopped.chars} characters shown, ${stopped.gen} tokens generated of at most 3500 (attempt ${attempts})`);

  // 4. The page still works after a stop (a short greedy answer), then the screenshot.
  await page.fill("#temperature", "0");
  await page.fill("#maxtokens", String(N));
  await page.fill("#question", QUESTION);
  await page.click("#send");
  await page.waitForFunction(() => [...document.querySelectorAll("#log .assistant")].every((d) => d.dataset.state === "done")
                                   && document.querySelectorAll("#log .assistant").length === 2, null, { timeout: 60000 });
  const a4 = await answerOf(1);
  assert.equal(a4.cls, "msg assistant", "an answer after a stop: " + a4.text);
  assert.ok(a4.text.length > 0);
  const shot = join(OUTDIR, "chat-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log("screenshot: " + shot);

  assert.deepEqual(foreign, [], "the page fetched nothing from elsewhere");
  assert.deepEqual(pageErrors, [], "no script errors on the page");
}

try {
  await main();
  console.log("chat page: all checks passed");
} catch (e) {
  failed = true;
  console.log("FAIL: " + (e && e.stack ? e.stack : e));
  if (server) console.log("server stderr:\n" + server.log().slice(-4000));
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) {
    const code = await stopServer(server);
    if (code !== 0) { failed = true; console.log(`FAIL: the server exited ${code} on SIGTERM\n` + server.log().slice(-4000)); }
  }
}
process.exit(failed ? 1 : 0);

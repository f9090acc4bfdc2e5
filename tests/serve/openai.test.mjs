// openai.test.mjs — `fieldlm serve` driven by the real `openai` npm package (pinned in
// package-lock.json), with node's built-in test runner. Run by tests/test_serve.c
// (make test) as `FLM_BIN=build/fieldlm node --test tests/serve/*.test.mjs` from the repository root.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import OpenAI from "openai";

const BIN = process.env.FLM_BIN || "build/fieldlm";
const MODEL = "models/kcc-advisor";
const KEY = "test-key-123";
const SYS = "You are an agricultural advisor for smallholder farmers. Answer briefly and practically.";
const QUESTIONS = [
  "Stem borer in paddy (crop: Paddy (Dhan))",
  "Leaf curl in chilli (crop: Chillies)",
  "Fertilizer dose for wheat (crop: Wheat)",
];

let server, base, client;

// Starts the server on a free port and reads the port from its "listening on" line.
function startServer(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ["serve", "-m", MODEL, "--port", "0", "-t", "1", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error("the server did not start:\n" + err)), 60000);
    p.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !p.port) {
        p.port = Number(m[1]);
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.on("exit", (code) => { clearTimeout(timer); if (!p.port) reject(new Error(`the server exited (${code}):\n${err}`)); });
  });
}

function stopServer(p) {
  return new Promise((resolve) => {
    if (p.exitCode !== null) return resolve(p.exitCode);
    p.on("exit", (code) => resolve(code));
    p.kill("SIGTERM");
  });
}

async function metrics() {
  const r = await fetch(base + "/metrics", { headers: { Authorization: "Bearer " + KEY } });
  assert.equal(r.status, 200);
  const text = await r.text();
  const get = (name) => {
    const m = text.match(new RegExp("^" + name + " (\\S+)$", "m"));
    return m ? Number(m[1]) : NaN;
  };
  return { text, get };
}

function messages(q) {
  return [{ role: "system", content: SYS }, { role: "user", content: q }];
}

// `fieldlm run --greedy` for the same messages: the reference answer.
function runGreedy(q, n) {
  const out = execFileSync(BIN, ["run", "-m", MODEL, "--greedy", "-n", String(n), "-t", "1", "--system", SYS, "-p", q],
                           { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return out.endsWith("\n") ? out.slice(0, -1) : out;
}

async function streamText(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { text, finish, usage, role };
}

before(async () => {
  server = await startServer(["-c", "2048", "--parallel", "2", "--api-key", KEY]);
  base = `http://127.0.0.1:${server.port}`;
  client = new OpenAI({ apiKey: KEY, baseURL: base + "/v1", maxRetries: 0, timeout: 120000 });
});

after(async () => {
  const code = await stopServer(server);
  assert.equal(code, 0, "the server exits 0 on SIGTERM");
});

test("models lists the served model", async () => {
  const page = await client.models.list();
  const ids = [];
  for await (const m of page) ids.push(m.id);
  assert.deepEqual(ids, ["kcc-advisor"]);
  const m = await client.models.retrieve("kcc-advisor");
  assert.equal(m.object, "model");
});

test("without the API key: 401", async () => {
  const anon = new OpenAI({ apiKey: "wrong-key", baseURL: base + "/v1", maxRetries: 0 });
  await assert.rejects(anon.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    anon.chat.completions.create({ model: "kcc-advisor", messages: messages("hi"), max_tokens: 2 }),
    (e) => e.status === 401 && /API key/.test(e.message));
});

test("greedy: non-streamed == streamed == fieldlm run --greedy", async () => {
  const want = runGreedy(QUESTIONS[0], 48);
  const params = { model: "kcc-advisor", messages: messages(QUESTIONS[0]), temperature: 0, max_tokens: 48 };
  const r = await client.chat.completions.create(params);
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, want);
  const s = await streamText(params);
  assert.equal(s.role, "assistant");
  assert.equal(s.text, want);
  assert.equal(s.finish, r.choices[0].finish_reason);
  assert.deepEqual(s.usage.prompt_tokens, r.usage.prompt_tokens);
  assert.deepEqual(s.usage.completion_tokens, r.usage.completion_tokens);
});

test("max_tokens: finish_reason length and exact usage", async () => {
  const r = await client.chat.completions.create({ model: "kcc-advisor", messages: messages(QUESTIONS[1]),
                                                   temperature: 0, max_tokens: 5 });
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 5);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 5);
  // the prompt's tokens are the rendered template's: more than the question alone
  const tok = await (await fetch(base + "/tokenize", { method: "POST", headers: { Authorization: "Bearer " + KEY },
                                                        body: JSON.stringify({ content: QUESTIONS[1] }) })).json();
  assert.ok(r.usage.prompt_tokens > tok.tokens.length, `${r.usage.prompt_tokens} > ${tok.tokens.length}`);
  // the completion's tokens are the text's tokens
  const text = await (await fetch(base + "/tokenize", { method: "POST", headers: { Authorization: "Bearer " + KEY },
                                                         body: JSON.stringify({ content: r.choices[0].message.content }) })).json();
  assert.ok(Math.abs(text.tokens.length - 5) <= 1, `5 tokens of text, re-encoded: ${text.tokens.length}`);
  const s = await client.chat.completions.create({ model: "kcc-advisor", messages: messages(QUESTIONS[1]),
                                                   max_completion_tokens: 3 });
  assert.equal(s.usage.completion_tokens, 3);
  assert.equal(s.choices[0].finish_reason, "length");
});

test("stop: a string or a list ends the answer before it (finish_reason stop)", async () => {
  const full = (await client.chat.completions.create({ model: "kcc-advisor", messages: messages(QUESTIONS[0]),
                                                       temperature: 0, max_tokens: 40 })).choices[0].message.content;
  const words = full.split(" ");
  assert.ok(words.length > 3, full);
  const stopAt = " " + words[2];
  const want = full.slice(0, full.indexOf(stopAt));
  const r = await client.chat.completions.create({ model: "kcc-advisor", messages: messages(QUESTIONS[0]),
                                                   temperature: 0, max_tokens: 40, stop: stopAt });
  assert.equal(r.choices[0].message.content, want);
  assert.equal(r.choices[0].finish_reason, "stop");
  const s = await streamText({ model: "kcc-advisor", messages: messages(QUESTIONS[0]), temperature: 0, max_tokens: 40,
                               stop: ["no such text", stopAt] });
  assert.equal(s.text, want);
  assert.equal(s.finish, "stop");
});

test("seed: the same seed gives the same sampled text", async () => {
  const p = { model: "kcc-advisor", messages: messages(QUESTIONS[2]), temperature: 1, max_tokens: 24, seed: 1234 };
  const a = await client.chat.completions.create(p);
  const b = await client.chat.completions.create(p);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test("logprobs: each token's log-probability and alternatives", async () => {
  const r = await client.chat.completions.create({ model: "kcc-advisor", messages: messages(QUESTIONS[0]),
                                                   temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, 6);
  assert.equal(content.map((e) => e.token).join(""), r.choices[0].message.content);
  for (const e of content) {
    assert.ok(e.logprob <= 0);
    assert.equal(e.top_logprobs.length, 3);
    // greedy without penalties: the chosen token is the most likely one
    assert.equal(e.top_logprobs[0].token, e.token);
    assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6);
    assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
  }
});

test("breaking out of a stream stops the generation; the next request works", async () => {
  const before_ = await metrics();
  const stream = await client.completions.create({ model: "kcc-advisor", prompt: "Farmer's notebook, day 1:",
                                                   max_tokens: 1500, temperature: 1, seed: 3, stream: true });
  let n = 0;
  for await (const chunk of stream) {
    if (chunk.choices[0] && chunk.choices[0].text) n++;
    if (n >= 5) break; // the client closes the connection
  }
  assert.equal(n, 5);
  let m;
  const t0 = Date.now();
  do {
    await new Promise((r) => setTimeout(r, 20));
    m = await metrics();
  } while ((m.get("fieldlm_slots_busy") !== 0 ||
            m.get("fieldlm_generations_cancelled_total") !== before_.get("fieldlm_generations_cancelled_total") + 1) &&
           Date.now() - t0 < 5000);
  assert.equal(m.get("fieldlm_slots_busy"), 0, "the slot is free again");
  assert.equal(m.get("fieldlm_generations_cancelled_total"), before_.get("fieldlm_generations_cancelled_total") + 1);
  const generated = m.get("fieldlm_generated_tokens_total") - before_.get("fieldlm_generated_tokens_total");
  assert.ok(generated < 200, `the generation stopped early (${generated} tokens, not 1500)`);
  const r = await client.chat.completions.create({ model: "kcc-advisor", messages: messages("hi"), max_tokens: 2 });
  assert.equal(r.usage.completion_tokens, 2);
});

test("concurrent requests (--parallel 2) give the same greedy text as alone", async () => {
  const params = (q) => ({ model: "kcc-advisor", messages: messages(q), temperature: 0, max_tokens: 32 });
  const alone = [];
  for (const q of QUESTIONS) alone.push((await client.chat.completions.create(params(q))).choices[0].message.content);
  // all at once, streamed and not: two run in the slots, one waits in the queue
  const together = await Promise.all([
    client.chat.completions.create(params(QUESTIONS[0])).then((r) => r.choices[0].message.content),
    streamText(params(QUESTIONS[1])).then((s) => s.text),
    client.chat.completions.create(params(QUESTIONS[2])).then((r) => r.choices[0].message.content),
    streamText(params(QUESTIONS[0])).then((s) => s.text),
  ]);
  assert.deepEqual(together, [alone[0], alone[1], alone[2], alone[0]]);
  assert.equal(alone[0], runGreedy(QUESTIONS[0], 32));
});

test("a multi-turn chat reuses the slot's cache (cached_tokens)", async () => {
  const first = await client.chat.completions.create({ model: "kcc-advisor", messages: messages(QUESTIONS[2]),
                                                       temperature: 0, max_tokens: 12 });
  const turn2 = [...messages(QUESTIONS[2]), { role: "assistant", content: first.choices[0].message.content },
                 { role: "user", content: "And for maize?" }];
  const second = await client.chat.completions.create({ model: "kcc-advisor", messages: turn2, temperature: 0, max_tokens: 4 });
  const cached = second.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached >= first.usage.prompt_tokens, `cached ${cached} of the first turn's ${first.usage.prompt_tokens}`);
});

test("bad requests: OpenAI errors the client understands", async () => {
  await assert.rejects(client.chat.completions.create({ model: "kcc-advisor", messages: [{ role: "wizard", content: "x" }] }),
                       (e) => e instanceof OpenAI.BadRequestError && /roles are system, user and assistant/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: "kcc-advisor", messages: messages("x"), n: 2 }),
                       (e) => e.status === 400 && e.param === "n");
});

// serve-load.mjs — load bench of `fieldlm serve`: CLIENTS concurrent chat clients for DURATION
// seconds on the bundled model, each asking Kisan Call Centre questions (data/agri-kcc) one after
// another as streamed chat completions. Reports requests/s, time to first token (p50/p90/p99, as
// the client sees it: from sending the request to the first content chunk), tokens/s per client,
// the server's own /metrics, and its RSS over time. Not a timed test: it fails only on errors (a
// non-200 answer, a broken stream, a dead server, a slot still busy at the end, a non-zero exit).
// Usage (from the repository root; bench/serve-load.sh wraps it):
//   node bench/serve-load.mjs            8 clients, 300 s, --parallel 2
//   DURATION=30 CLIENTS=8 PARALLEL=2 MAX_TOKENS=128 THREADS=1 JSON=out.json node bench/serve-load.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { startServer, stopServer, alive, rssKiB, waitIdle, metrics, SYS, BIN, MODEL } from "../tests/web/lib.mjs";

const env = (k, d) => (process.env[k] !== undefined && process.env[k] !== "" ? Number(process.env[k]) : d);
const CLIENTS = env("CLIENTS", 8), DURATION = env("DURATION", 300), PARALLEL = env("PARALLEL", 2);
const MAX_TOKENS = env("MAX_TOKENS", 128), THREADS = env("THREADS", 0), CTX = env("CTX", 2048);
const RSS_EVERY = Math.max(1, Math.min(10, DURATION / 30)); // seconds between RSS samples

// The questions: QueryText of the KCC records, a Latin-script sentence of 12..200 characters
// (the model answers English questions), with the crop as the demo asks them.
function questions() {
  const out = [];
  for (const f of ["data/agri-kcc/KCC_PUN_01_2025.csv", "data/agri-kcc/KCC_TELANGANA_01_2025.raw_kcc.csv"]) {
    const rows = parseCsv(readFileSync(f, "utf8"));
    const head = rows[0], qi = head.indexOf("QueryText"), ci = head.indexOf("Crop");
    for (const r of rows.slice(1)) {
      const q = (r[qi] || "").replace(/\s+/g, " ").trim();
      if (q.length >= 12 && q.length <= 200 && /^[\x20-\x7e]+$/.test(q)) out.push(r[ci] ? `${q} (crop: ${r[ci].trim()})` : q);
    }
  }
  if (!out.length) throw new Error("no questions found in data/agri-kcc");
  return out;
}

// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and newlines.
function parseCsv(text) {
  const rows = [];
  let row = [], field = "", q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') q = false;
      else field += c;
    } else if (c === '"') q = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

const pct = (a, p) => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))];
};

// One streamed chat request; resolves to {ttft, seconds, tokens} or throws with what went wrong.
async function ask(base, question, seed) {
  const t0 = performance.now();
  const r = await fetch(base + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "system", content: SYS }, { role: "user", content: question }],
                           stream: true, stream_options: { include_usage: true }, max_tokens: MAX_TOKENS, seed }),
  });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${(await r.text()).slice(0, 300)}`);
  const dec = new TextDecoder();
  let buf = "", ttft = NaN, tokens = NaN, done = false, finish = null;
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, cut); buf = buf.slice(cut + 2);
      if (!ev.startsWith("data: ")) continue;
      const data = ev.slice(6);
      if (data === "[DONE]") { done = true; continue; }
      const j = JSON.parse(data);
      if (j.error) throw new Error("stream error: " + j.error.message);
      if (j.usage) tokens = j.usage.completion_tokens;
      const c = j.choices && j.choices[0];
      if (c && c.delta && c.delta.content && Number.isNaN(ttft)) ttft = (performance.now() - t0) / 1000;
      if (c && c.finish_reason) finish = c.finish_reason;
    }
  }
  if (!done || !finish || Number.isNaN(tokens)) throw new Error(`the stream ended early (done ${done}, finish ${finish})`);
  return { ttft: Number.isNaN(ttft) ? (performance.now() - t0) / 1000 : ttft, seconds: (performance.now() - t0) / 1000, tokens };
}

async function main() {
  const qs = questions();
  const args = ["-c", String(CTX), "--parallel", String(PARALLEL), "--queue", String(Math.max(16, CLIENTS))];
  if (THREADS > 0) args.push("-t", String(THREADS));
  const server = await startServer(args);
  const base = server.base;
  console.log(`serve-load: ${BIN} serve -m ${MODEL} ${args.join(" ")} (pid ${server.pid}, port ${server.port})`);
  console.log(`serve-load: ${CLIENTS} clients for ${DURATION} s, max_tokens ${MAX_TOKENS}, ${qs.length} KCC questions`);
  const m0 = await metrics(base);
  const rss = [[0, rssKiB(server.pid)]];
  const t0 = performance.now();
  const end = t0 + DURATION * 1000;
  const sampler = setInterval(() => { if (alive(server)) rss.push([(performance.now() - t0) / 1000, rssKiB(server.pid)]); }, RSS_EVERY * 1000);
  const errors = [];
  const perClient = await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const mine = { requests: 0, tokens: 0, seconds: 0, ttft: [] };
    for (let i = 0; performance.now() < end; i++) {
      const q = qs[(c * 7919 + i * 104729) % qs.length];
      try {
        const r = await ask(base, q, c * 100000 + i);
        mine.requests++; mine.tokens += r.tokens; mine.seconds += r.seconds; mine.ttft.push(r.ttft);
      } catch (e) {
        errors.push(`client ${c}: ${e.message}`);
        if (!alive(server)) break;
      }
    }
    return mine;
  }));
  clearInterval(sampler);
  const wall = (performance.now() - t0) / 1000;
  rss.push([wall, alive(server) ? rssKiB(server.pid) : NaN]);

  const requests = perClient.reduce((n, c) => n + c.requests, 0);
  const tokens = perClient.reduce((n, c) => n + c.tokens, 0);
  const ttft = perClient.flatMap((c) => c.ttft);
  const tps = perClient.map((c) => c.tokens / wall);
  const m1 = alive(server) ? await metrics(base) : null;
  const h = alive(server) ? await waitIdle(base, 10000) : null;
  const report = {
    clients: CLIENTS, duration_s: +wall.toFixed(1), parallel: PARALLEL, max_tokens: MAX_TOKENS, requests, errors: errors.length,
    requests_per_s: +(requests / wall).toFixed(3), tokens_per_s_total: +(tokens / wall).toFixed(1),
    ttft_s: { p50: +pct(ttft, 50).toFixed(3), p90: +pct(ttft, 90).toFixed(3), p99: +pct(ttft, 99).toFixed(3), max: +pct(ttft, 100).toFixed(3) },
    tokens_per_s_per_client: { min: +Math.min(...tps).toFixed(1), median: +pct(tps, 50).toFixed(1), max: +Math.max(...tps).toFixed(1) },
    mean_completion_tokens: +(tokens / Math.max(1, requests)).toFixed(1),
    server: m1 ? {
      generated_tokens: m1.get("fieldlm_generated_tokens_total") - m0.get("fieldlm_generated_tokens_total"),
      prompt_tokens: m1.get("fieldlm_prompt_tokens_total") - m0.get("fieldlm_prompt_tokens_total"),
      prompt_tokens_reused: m1.get("fieldlm_prompt_tokens_reused_total") - m0.get("fieldlm_prompt_tokens_reused_total"),
      queue_rejected: m1.get("fieldlm_queue_rejected_total") - m0.get("fieldlm_queue_rejected_total"),
    } : null,
    rss_mib: rss.map(([t, k]) => [+t.toFixed(0), +(k / 1024).toFixed(1)]),
  };
  console.log(`requests: ${requests} in ${wall.toFixed(1)} s = ${report.requests_per_s} requests/s, ${errors.length} errors`);
  console.log(`time to first token: p50 ${report.ttft_s.p50} s, p90 ${report.ttft_s.p90} s, p99 ${report.ttft_s.p99} s, max ${report.ttft_s.max} s`);
  console.log(`tokens/s per client: min ${report.tokens_per_s_per_client.min}, median ${report.tokens_per_s_per_client.median}, ` +
              `max ${report.tokens_per_s_per_client.max} (all clients: ${report.tokens_per_s_total} tokens/s, ` +
              `${report.mean_completion_tokens} tokens per answer)`);
  if (report.server) console.log(`server: ${report.server.generated_tokens} tokens generated, ${report.server.prompt_tokens} prompt tokens ` +
                                 `(${report.server.prompt_tokens_reused} from the KV cache), ${report.server.queue_rejected} refused (queue full)`);
  const show = report.rss_mib.filter((_, i, a) => a.length <= 12 || i % Math.ceil(a.length / 12) === 0 || i === a.length - 1);
  console.log("RSS over time (s: MiB): " + show.map(([t, m]) => `${t}: ${m}`).join(", "));
  if (process.env.JSON) writeFileSync(process.env.JSON, JSON.stringify(report, null, 1) + "\n");

  let bad = errors.length > 0;
  for (const e of errors.slice(0, 10)) console.log("error: " + e);
  if (!alive(server)) { bad = true; console.log("error: the server died:\n" + server.log().slice(-3000)); }
  else if (!h || h.slots_processing !== 0 || h.queue_length !== 0) { bad = true; console.log("error: slots still busy at the end: " + JSON.stringify(h)); }
  if (requests === 0) { bad = true; console.log("error: no request finished"); }
  const code = await stopServer(server);
  if (code !== 0) { bad = true; console.log(`error: the server exited ${code} on SIGTERM`); }
  console.log(bad ? "serve-load: FAILED" : "serve-load: ok");
  process.exit(bad ? 1 : 0);
}

main().catch((e) => { console.log("serve-load: FAILED: " + (e.stack || e)); process.exit(1); });

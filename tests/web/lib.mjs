// lib.mjs — shared by the chat page test, the hostile suite and bench/serve-load.mjs:
// start a real `fieldlm serve` on a free loopback port, read its health, metrics and RSS.
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export const BIN = process.env.FLM_BIN || "build/fieldlm";
export const MODEL = process.env.FLM_MODEL || "models/kcc-advisor";
export const SYS = "You are an agricultural advisor for smallholder farmers. Answer briefly and practically.";

// Starts `fieldlm serve --port 0 ARGS` and reads the port from its "listening on" line.
// Resolves to the child process with .port, .base and .log() (its stderr so far).
export function startServer(args, { bin = BIN, timeoutMs = 120000, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ["serve", "-m", MODEL, "--port", "0", ...args],
                    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
    let err = "";
    p.log = () => err;
    const timer = setTimeout(() => reject(new Error("the server did not start:\n" + err)), timeoutMs);
    p.stderr.on("data", (d) => {
      err += d;
      if (err.length > 1 << 20) err = err.slice(-(1 << 19)); // a sanitizer report is kept, floods are not
      const m = err.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !p.port) {
        p.port = Number(m[1]);
        p.base = `http://127.0.0.1:${p.port}`;
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.on("exit", (code, sig) => {
      clearTimeout(timer);
      if (!p.port) reject(new Error(`the server exited (${code ?? sig}) before listening:\n${err}`));
    });
  });
}

// SIGTERM, then the exit code (null and the signal name when killed by a signal).
export function stopServer(p, timeoutMs = 30000) {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve(p.exitCode ?? p.signalCode);
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("exit", (code, sig) => { clearTimeout(t); resolve(code ?? sig); });
    p.kill("SIGTERM");
  });
}

export function alive(p) { return p.exitCode === null && p.signalCode === null; }

// VmRSS of a process in KiB, from /proc/PID/status.
export function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) : NaN;
}

export async function health(base) {
  const r = await fetch(base + "/health");
  return { ...(await r.json()), http: r.status };
}

// Waits until every slot is idle and the queue is empty (generations cancelled by a hang-up
// are noticed at their next token); returns the last /health answer.
export async function waitIdle(base, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  let h;
  for (;;) {
    h = await health(base);
    if (h.slots_processing === 0 && h.queue_length === 0) return h;
    if (Date.now() > end) return h;
    await new Promise((r) => setTimeout(r, 50));
  }
}

// /metrics as a getter of unlabelled samples: get("fieldlm_slots_busy") → number.
export async function metrics(base, key) {
  const r = await fetch(base + "/metrics", key ? { headers: { Authorization: "Bearer " + key } } : {});
  const text = await r.text();
  const get = (name) => {
    const m = text.match(new RegExp("^" + name + " (\\S+)$", "m"));
    return m ? Number(m[1]) : NaN;
  };
  return { status: r.status, text, get };
}

// `fieldlm run --greedy` for a system prompt and a question: the reference answer.
export function runGreedy(system, question, n, bin = BIN) {
  const args = ["run", "-m", MODEL, "--greedy", "-n", String(n), "-t", "1", "-p", question];
  if (system) args.push("--system", system);
  const out = execFileSync(bin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  return out.endsWith("\n") ? out.slice(0, -1) : out;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

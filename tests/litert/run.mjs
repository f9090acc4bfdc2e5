// run.mjs — runs a fieldlm-written .tflite or .litertlm in LiteRT.js (@litertjs/core,
// WASM + XNNPACK) under Node, the way LiteRT-LM drives a prefill/decode model, and
// compares with a transformers reference (tests/data/*/reference.safetensors).
//
//   node run.mjs MODEL.tflite|MODEL.litertlm REFERENCE.safetensors [--greedy N] [--cases a,b]
//   node run.mjs MODEL.tflite ids:ID,ID,... --logits-out OUT.bin [--prefix P]
//
// The second form dumps LiteRT's logits along a given token sequence (teacher-forced):
// ids[0..P-1) through the prefill signatures (P default: all but the last id), then
// ids[P-1], ids[P], ... one at a time through `decode`; OUT.bin receives one float32
// row of the vocabulary per decode step (n - P + 1 rows, position P-1 first), and
// stdout {"rows":…, "vocab":…, "errors":[…]}.
//
// Prints one JSON object on stdout: per case the max |logit - reference| at the last
// prompt position, the greedy tokens compared (stopping at the first reference margin
// below 1e-3, a near-tie), how many agree, and the first disagreement. Exits 1 when
// LiteRT printed an ERROR line (its run() does not throw) or the model is malformed.
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const coreDir = path.join(here, 'node_modules', '@litertjs', 'core');

// LiteRT's own error lines go to stderr; run() does not throw on them.
let liteErrors = [];
const origErr = process.stderr.write.bind(process.stderr);
process.stderr.write = (chunk, ...rest) => {
  const s = String(chunk);
  if (/ERROR/.test(s)) liteErrors.push(s.trim());
  return origErr(chunk, ...rest);
};
const origConsoleError = console.error;
console.error = (...a) => {
  const s = a.join(' ');
  if (/ERROR/.test(s)) liteErrors.push(s.trim());
  origConsoleError(...a);
};

// The loader knows <script> tags and importScripts(); give it importScripts that
// evaluates the emscripten glue as CommonJS.
globalThis.self = globalThis;
globalThis.importScripts = (url) => {
  const file = url.startsWith('file:') ? fileURLToPath(url) : url;
  const code = fs.readFileSync(file, 'utf8');
  const module = {exports: {}};
  const req = createRequire(file);
  new Function('module', 'exports', 'require', '__filename', '__dirname', code)(module, module.exports, req, file, path.dirname(file));
  globalThis.ModuleFactory = module.exports;
};

function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const hdr = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [k, v] of Object.entries(hdr)) {
    if (k === '__metadata__') continue;
    const [a, b] = v.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    out[k] = {shape: v.shape, data: v.dtype === 'I32' ? new Int32Array(ab) : new Float32Array(ab)};
  }
  return out;
}

// The TFLiteModel section of a .litertlm (checks the container on the way).
function tfliteFromLitertlm(buf) {
  if (buf.subarray(0, 8).toString('latin1') !== 'LITERTLM') throw new Error('no LITERTLM magic');
  if (buf.readUInt32LE(8) !== 1) throw new Error('major version is not 1');
  const hend = Number(buf.readBigUInt64LE(24));
  if (hend > 16384) throw new Error(`header ends at ${hend} (> 16 KiB)`);
  const fb = buf.subarray(32, hend);
  const u32 = (p) => fb.readUInt32LE(p), i32 = (p) => fb.readInt32LE(p), u16 = (p) => fb.readUInt16LE(p);
  const field = (t, slot) => {
    const vt = t - i32(t);
    const vl = u16(vt);
    if (4 + 2 * slot >= vl) return 0;
    const o = u16(vt + 4 + 2 * slot);
    return o ? t + o : 0;
  };
  const deref = (p) => p + u32(p);
  const root = deref(0);
  const secmeta = deref(field(root, 1));
  const objs = deref(field(secmeta, 0));
  const n = u32(objs);
  for (let i = 0; i < n; i++) {
    const o = deref(objs + 4 + 4 * i);
    const typ = fb[field(o, 3)];
    if (typ !== 3) continue;
    const begin = Number(fb.readBigUInt64LE(field(o, 1))), end = Number(fb.readBigUInt64LE(field(o, 2)));
    if (begin % 16384) throw new Error('TFLite section not 16 KiB-aligned');
    return buf.subarray(begin, end);
  }
  throw new Error('no TFLiteModel section');
}

const args = process.argv.slice(2);
if (args.length < 2) {
  console.log('usage: node run.mjs MODEL.tflite|MODEL.litertlm REFERENCE.safetensors [--greedy N] [--cases a,b]');
  process.exit(2);
}
const [modelPath, refPath] = args;
let greedyMax = 1e9, caseSel = null, logitsOut = null, prefixLen = -1;
for (let i = 2; i < args.length; i++) {
  if (args[i] === '--greedy') greedyMax = Number(args[++i]);
  else if (args[i] === '--cases') caseSel = args[++i].split(',').map(Number);
  else if (args[i] === '--logits-out') logitsOut = args[++i];
  else if (args[i] === '--prefix') prefixLen = Number(args[++i]);
}

const {loadLiteRt, loadAndCompile, Tensor} = await import(path.join(coreDir, 'dist', 'index.js'));
const tLoad0 = Date.now();
await loadLiteRt(path.join(coreDir, 'wasm') + '/');
let bytes = fs.readFileSync(modelPath);
if (modelPath.endsWith('.litertlm')) bytes = tfliteFromLitertlm(bytes);
const model = await loadAndCompile(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {accelerator: 'wasm'});
const loadSeconds = (Date.now() - tLoad0) / 1000;
const sigs = model.signatures;
const decode = sigs['decode'];
if (!decode) throw new Error('no decode signature');
const prefills = Object.keys(sigs).filter((k) => k.startsWith('prefill_')).map((k) => [Number(k.slice(8)), k]).sort((a, b) => a[0] - b[0]);
const inDet = decode.getInputDetails();
const kvNames = inDet.map((d) => d.name).filter((n) => n.startsWith('kv_cache_'));
const kvShape = inDet.find((d) => d.name === kvNames[0]).shape;
const S = kvShape[1];
const outDet = decode.getOutputDetails();
const vocab = outDet.find((d) => d.name === 'logits').shape[2];
const kvSize = kvShape.reduce((a, b) => a * b, 1);

async function run(sigName, tokens, positions, cache) {
  const feeds = {
    tokens: new Tensor(Int32Array.from(tokens), [1, tokens.length]),
    input_pos: new Tensor(Int32Array.from(positions), [positions.length]),
  };
  for (const n of kvNames) feeds[n] = new Tensor(cache[n], kvShape);
  const out = await model.run(sigName, feeds);
  for (const t of Object.values(feeds)) t.delete();
  let logits = null;
  for (const [name, t] of Object.entries(out)) {
    const a = t.toTypedArray();
    if (name === 'logits') logits = Float32Array.from(a);
    else cache[name] = Float32Array.from(a); // outputs replace the inputs by name, as LiteRT-LM swaps its buffers
    t.delete();
  }
  return logits;
}

// LiteRT-LM's prefill: the largest signature while it fits, then the smallest that holds the rest.
async function prefill(ids, cache) {
  let at = 0;
  while (at < ids.length) {
    const rest = ids.length - at;
    let pick = prefills.filter(([t]) => t <= rest).pop();
    if (!pick) pick = prefills.find(([t]) => t >= rest) || prefills[prefills.length - 1];
    const [T, name] = pick;
    const n = Math.min(T, rest);
    const toks = new Array(T).fill(0), pos = new Array(T).fill(0);
    for (let i = 0; i < n; i++) { toks[i] = ids[at + i]; pos[i] = at + i; }
    await run(name, toks, pos, cache);
    at += n;
  }
}

if (refPath.startsWith('ids:')) {
  const ids = refPath.slice(4).split(',').map(Number);
  if (!logitsOut || ids.length < 2 || ids.some((x) => !Number.isInteger(x) || x < 0 || x >= vocab)) {
    console.log('ids: needs --logits-out OUT and at least two ids within the vocabulary');
    process.exit(2);
  }
  if (ids.length >= S) throw new Error(`${ids.length} ids do not fit the cache of ${S}`);
  const P = prefixLen > 0 ? prefixLen : ids.length;
  const cache = {};
  for (const n of kvNames) cache[n] = new Float32Array(kvSize);
  await prefill(ids.slice(0, P - 1), cache);
  const fd = fs.openSync(logitsOut, 'w');
  let rows = 0;
  for (let p = P - 1; p < ids.length; p++) {
    const logits = await run('decode', [ids[p]], [p], cache);
    fs.writeSync(fd, Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
    rows++;
  }
  fs.closeSync(fd);
  console.log(JSON.stringify({model: modelPath, rows, vocab, errors: liteErrors}));
  process.exit(liteErrors.length ? 1 : 0);
}

const argmax = (a) => { let b = 0; for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i; return b; };

// REFERENCE '-': a smoke run (prompt of 40 ids, 8 greedy steps), no comparison.
// REFERENCE *.json: {"cases": [{"input_ids": [...], "greedy_ids": [...]}]} (e.g. fieldlm's
// own greedy output): greedy compared over every step, no logits.
const refJson = refPath.endsWith('.json') ? JSON.parse(fs.readFileSync(refPath, 'utf8')) : null;
const ref = refJson ? Object.fromEntries(refJson.cases.flatMap((c, i) => [
  [`case${i}.input_ids`, {data: Int32Array.from(c.input_ids)}],
  [`case${i}.greedy_ids`, {data: Int32Array.from(c.greedy_ids)}],
  [`case${i}.greedy_margins`, {data: new Float32Array(c.greedy_ids.length).fill(Infinity)}],
])) : refPath === '-' ? (() => {
  const ids = Int32Array.from({length: 40}, (_, i) => 100 + 37 * i);
  return {'case0.input_ids': {shape: [40], data: ids}};
})() : readSafetensors(refPath);
const nCases = Object.keys(ref).filter((k) => /^case\d+\.input_ids$/.test(k)).length;
const result = {model: modelPath, signatures: Object.keys(sigs), cache: S, vocab, cases: []};
const t0 = Date.now();
let decodeMs = 0, decodeSteps = 0;
for (let c = 0; c < nCases; c++) {
  if (caseSel && !caseSel.includes(c)) continue;
  const ids = Array.from(ref[`case${c}.input_ids`].data);
  if (ids.length >= S) { result.cases.push({case: c, n_input: ids.length, skipped: `prompt longer than the cache (${S})`}); continue; }
  const cache = {};
  for (const n of kvNames) cache[n] = new Float32Array(kvSize);
  await prefill(ids.slice(0, -1), cache);
  let logits = await run('decode', [ids[ids.length - 1]], [ids.length - 1], cache);
  let refLast = ref[`case${c}.logits_last`]?.data;
  if (refPath === '-') {
    let finite = true;
    const got = [];
    for (let s = 0; s < Math.min(greedyMax, 8); s++) {
      for (let i = 0; i < vocab; i++) if (!Number.isFinite(logits[i])) finite = false;
      const tok = argmax(logits);
      got.push(tok);
      const d0 = Date.now();
      logits = await run('decode', [tok], [ids.length + s], cache);
      decodeMs += Date.now() - d0;
      decodeSteps++;
    }
    result.cases.push({case: c, n_input: ids.length, smoke: true, finite, greedy_ids: got});
    continue;
  }
  if (!refLast && ref[`case${c}.logits`]) {
    const full = ref[`case${c}.logits`];
    refLast = full.data.subarray((ids.length - 1) * vocab, ids.length * vocab);
  }
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; refLast && i < vocab; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(logits[i] - refLast[i]));
    maxRef = Math.max(maxRef, Math.abs(refLast[i]));
  }
  const want = ref[`case${c}.greedy_ids`]?.data, margins = ref[`case${c}.greedy_margins`]?.data;
  const got = [];
  let compared = 0, agree = 0, firstDiff = -1, pos = ids.length;
  const steps = want ? Math.min(want.length, greedyMax, S - ids.length) : 0;
  for (let s = 0; s < steps; s++) {
    const tok = argmax(logits);
    got.push(tok);
    if (margins[s] < 1e-3) break; // a near-tie: stop comparing
    compared++;
    if (tok === want[s]) agree++;
    else { firstDiff = s; break; }
    if (s + 1 < steps) {
      const d0 = Date.now();
      logits = await run('decode', [tok], [pos], cache);
      decodeMs += Date.now() - d0;
      decodeSteps++;
      pos++;
    }
  }
  result.cases.push({case: c, n_input: ids.length, max_abs_diff: refLast ? maxDiff : null, max_abs_ref: maxRef, greedy_compared: compared,
                     greedy_agree: agree, greedy_first_diff: firstDiff, greedy_ids: got});
}
result.seconds = (Date.now() - t0) / 1000;
result.load_seconds = loadSeconds;
result.model_bytes = bytes.byteLength;
result.decode_ms_per_token = decodeSteps ? decodeMs / decodeSteps : null;
result.errors = liteErrors;
console.log(JSON.stringify(result));
process.exit(liteErrors.length ? 1 : 0);

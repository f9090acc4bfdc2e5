#!/usr/bin/env python3
"""Makes data/ablate/kcc-questions.jsonl: real farmer questions from the Kisan Call
Centre export data/agri-kcc/KCC_TELANGANA_01_2025.raw_kcc.csv (QueryText column,
English), one {"messages":[{"role":"user","content":...}]} per line, for `fieldlm ablate`.

Rows that are obviously the same question are kept once: the text is compared after
lower-casing, dropping punctuation and the call-centre's framing words ("farmer asked
query on", "query on", "asked about", "information regarding", ...). Test calls,
texts of fewer than three words and texts that are not mostly ASCII are left out.
From the distinct questions, in file order, every k-th is taken so that N are spread
over the whole month. Standard library only; the output is deterministic.

usage: python3 tools/make-ablate-questions.py [CSV] [OUT] [N]   (defaults: the paths above, 240)
"""
import csv, json, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else "data/agri-kcc/KCC_TELANGANA_01_2025.raw_kcc.csv"
out = sys.argv[2] if len(sys.argv) > 2 else "data/ablate/kcc-questions.jsonl"
n_want = int(sys.argv[3]) if len(sys.argv) > 3 else 240

FRAMING = re.compile(r"^(the )?(farmer|farmers)?\s*(asked|asking|ask)?\s*(a )?(query|queries|question|information|info|details)?\s*"
                     r"(on|about|regarding|for|of|related to)?\s*")

def key(text):
    t = re.sub(r"[^a-z0-9 ]+", " ", text.lower())
    t = re.sub(r"\s+", " ", t).strip()
    t = FRAMING.sub("", t).strip()
    t = re.sub(r"\b(crop|the|in|of|a|an)\b", " ", t)
    return re.sub(r"\s+", " ", t).strip()

seen, distinct = set(), []
with open(src, encoding="utf-8", newline="") as f:
    for row in csv.DictReader(f):
        q = re.sub(r"\s+", " ", (row.get("QueryText") or "")).strip()
        if not q or sum(c.isascii() for c in q) < 0.9 * len(q):
            continue
        k = key(q)
        if len(k.split()) < 2 or "test call" in q.lower() or len(q.split()) < 3:
            continue
        if k in seen:
            continue
        seen.add(k)
        distinct.append(q)

if len(distinct) < n_want:
    sys.exit(f"{src}: only {len(distinct)} distinct questions, {n_want} asked for")
step = len(distinct) / n_want
picked = [distinct[int(i * step)] for i in range(n_want)]
with open(out, "w", encoding="utf-8") as f:
    for q in picked:
        f.write(json.dumps({"messages": [{"role": "user", "content": q}]}, ensure_ascii=False) + "\n")
print(f"{out}: {len(picked)} of {len(distinct)} distinct questions", file=sys.stderr)

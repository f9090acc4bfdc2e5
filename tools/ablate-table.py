#!/usr/bin/env python3
"""Renders `fieldlm ablate --json` reports as the markdown tables of docs/FIDELITY.md.
usage: python3 tools/ablate-table.py REPORT.json...   (standard library only)"""
import json, sys

for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
    lora = " + " + ", ".join(r["lora"]) if r["lora"] else ""
    print(f"**{r['model']}{lora}** — {r['n_questions']} questions, at most {r['max_tokens']} new tokens, "
          f"seeds {r['seed']}..{r['seed'] + r['n_questions'] - 1}; kv_cap_1280: {r['conversations']} conversations "
          f"of up to {r['turns']} turns; {r['seconds']:.0f} s\n")
    print("| variant | repetition | loop | distinct-2 | runaway | identical to baseline | mean KL | mean tokens | refused |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    pct = lambda x: f"{100 * x:.1f}%"
    for v in r["variants"]:
        kl = "0" if v["mean_kl"] == 0 else f"{v['mean_kl']:.3g}"
        print(f"| `{v['name']}` | {pct(v['repetition_rate'])} | {pct(v['loop_rate'])} | {v['distinct_2']:.3f} | "
              f"{pct(v['runaway_rate'])} | {pct(v['identical_to_baseline'])} | {kl} | {v['mean_tokens']:.1f} | {v['refused']} |")
    print()

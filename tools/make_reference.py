#!/usr/bin/env python3
"""Dump a reference for `fieldlm verify` from any Hugging Face Qwen2 model.

Needs torch and transformers (and peft for --lora). Runs the model in float32 on the
CPU with eager attention, and writes one safetensors file in the format documented
in tests/data/FIXTURES-README.md ("Model references"):

  case{i}.input_ids      I32 [T]       prompt ids
  case{i}.logits         F32 [T, V]    every position (only when V <= --full-logits-max-vocab)
  case{i}.logits_last    F32 [V]       otherwise: last position ...
  case{i}.top16_ids/_logits I32/F32 [T, 16]  ... and the 16 largest logits everywhere
  case{i}.logsumexp      F32 [T]
  case{i}.greedy_ids     I32 [N]       greedy continuation with the KV cache, no stop tokens
  case{i}.greedy_margins F32 [N]       top-1 minus top-2 logit at each greedy step

plus a JSON sidecar (same name, .json) with the cases and versions.

Examples:
  python3 tools/make_reference.py Qwen/Qwen2.5-1.5B-Instruct -o ref.safetensors
  python3 tools/make_reference.py ./my-finetune --lora ./my-adapter -o ref.safetensors \\
      --prompt "My paddy leaves have brown spots. What should I spray?"
  fieldlm verify -m ./my-finetune --lora ./my-adapter --reference ref.safetensors
"""
import argparse
import json
import os
import sys

DEFAULT_PROMPTS = [
    "My maize leaves are turning yellow from the tips. What should I do?",
    "How much urea per acre for wheat, and when should I apply it?",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="Hugging Face model id or local folder")
    ap.add_argument("-o", "--output", required=True, help="output .safetensors (a .json sidecar is written beside it)")
    ap.add_argument("--lora", action="append", default=[], help="PEFT adapter folder applied (unmerged) on top; repeatable")
    ap.add_argument("--prompt", action="append", default=[], help="user message rendered with the chat template; repeatable")
    ap.add_argument("--system", default=None, help="system message for every prompt")
    ap.add_argument("--ids", action="append", default=[], help="raw comma-separated token ids as one more case; repeatable")
    ap.add_argument("--greedy", type=int, default=32, help="greedy steps per case (default 32)")
    ap.add_argument("--full-logits-max-vocab", type=int, default=4096,
                    help="store full logits at every position when the vocabulary is at most this (default 4096)")
    args = ap.parse_args()

    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # `dtype` (transformers 5) is ignored by 4.x, which loads float32 by default; .float() below makes sure
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    if args.lora:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, args.lora[0])
        for extra in args.lora[1:]:
            model.load_adapter(extra, adapter_name=os.path.basename(os.path.normpath(extra)))
    model = model.float().eval()

    cases = []
    prompts = args.prompt or ([] if args.ids else DEFAULT_PROMPTS)
    if prompts:
        tok = AutoTokenizer.from_pretrained(args.model)
        for p in prompts:
            msgs = ([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": p}]
            text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = tok.encode(text, add_special_tokens=False)
            cases.append({"kind": "chat", "messages": msgs, "ids": ids})
    for s in args.ids:
        cases.append({"kind": "ids", "ids": [int(x) for x in s.split(",") if x.strip()]})

    tensors, meta_cases = {}, []
    with torch.no_grad():
        for i, c in enumerate(cases):
            ids = c["ids"]
            logits = model(torch.tensor([ids])).logits[0].float()
            V = logits.shape[-1]
            tensors[f"case{i}.input_ids"] = torch.tensor(ids, dtype=torch.int32)
            if V <= args.full_logits_max_vocab:
                tensors[f"case{i}.logits"] = logits.contiguous()
            else:
                tensors[f"case{i}.logits_last"] = logits[-1].contiguous()
                top = torch.topk(logits, 16, dim=-1)
                tensors[f"case{i}.top16_ids"] = top.indices.to(torch.int32).contiguous()
                tensors[f"case{i}.top16_logits"] = top.values.contiguous()
            tensors[f"case{i}.logsumexp"] = torch.logsumexp(logits, dim=-1).contiguous()
            out, margins = [], []
            r = model(torch.tensor([ids]), use_cache=True)
            past, last = r.past_key_values, r.logits[0, -1]
            for _ in range(args.greedy):
                t2 = torch.topk(last, 2)
                nxt = int(t2.indices[0])
                out.append(nxt)
                margins.append(float(t2.values[0] - t2.values[1]))
                r = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past, last = r.past_key_values, r.logits[0, -1]
            tensors[f"case{i}.greedy_ids"] = torch.tensor(out, dtype=torch.int32)
            tensors[f"case{i}.greedy_margins"] = torch.tensor(margins, dtype=torch.float32)
            meta = {k: v for k, v in c.items() if k != "ids"}
            meta.update({"n_input": len(ids), "greedy_n": args.greedy, "min_greedy_margin": min(margins) if margins else None})
            meta_cases.append(meta)
            print(f"case {i}: {len(ids)} tokens, greedy {args.greedy}", file=sys.stderr)

    tmp = args.output + ".tmp"
    save_file(tensors, tmp)
    os.replace(tmp, args.output)
    side = os.path.splitext(args.output)[0] + ".json"
    with open(side, "w") as f:
        json.dump({"model": args.model, "lora": args.lora, "cases": meta_cases,
                   "compute": "float32 on CPU, eager attention, TF32 off",
                   "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}, f, indent=1)
    print(f"wrote {args.output} ({len(cases)} cases) and {side}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Make the `qwen2.5-shape` test fixture: a random Qwen2 checkpoint with Qwen2.5-1.5B's exact
attention geometry (hidden 1536, 12 heads, 2 KV heads, head_dim 128, rope theta 1e6) but one
layer, a small MLP and a 512-token vocabulary, saved by transformers in bf16 as a *sharded*
checkpoint, plus a verify reference made with tools/make_reference.py.

It checks what the small fixtures cannot: GQA with 6 query heads per KV head, head_dim 128,
hidden 1536, and a sharded checkpoint written by transformers itself.

Needs torch + transformers. Usage: python3 tools/make_shape_fixture.py OUT_DIR
"""
import os
import subprocess
import sys

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def main():
    out = sys.argv[1]
    model_dir = os.path.join(out, "qwen2.5-shape")
    cfg = Qwen2Config(vocab_size=512, hidden_size=1536, intermediate_size=256, num_hidden_layers=1,
                      num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                      rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                      bos_token_id=0, eos_token_id=1)
    torch.manual_seed(1234)
    model = Qwen2ForCausalLM(cfg).float().eval()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            v = (1.0 + 0.1 * torch.randn(p.shape, generator=g)) if "norm" in name else 0.05 * torch.randn(p.shape, generator=g)
            p.copy_(v.to(torch.bfloat16).to(torch.float32))  # values exact in bf16
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True, max_shard_size="10MB")
    gen = torch.Generator().manual_seed(99)
    ids = [",".join(str(int(x)) for x in torch.randint(0, 512, (n,), generator=gen)) for n in (1, 17, 200)]
    ref = os.path.join(out, "reference.safetensors")
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_reference.py"), model_dir,
           "-o", ref, "--greedy", "24"]
    for s in ids:
        cmd += ["--ids", s]
    subprocess.run(cmd, check=True)
    print("wrote", model_dir, "and", ref)


if __name__ == "__main__":
    main()

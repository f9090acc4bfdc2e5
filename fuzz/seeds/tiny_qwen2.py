#!/usr/bin/python3
"""tiny_qwen2.py OUT_DIR — writes a 1-layer Qwen2 checkpoint folder (vocab 64, hidden 16,
random float32 weights, a 62-token byte-level BPE tokenizer, a one-line chat template).
The seeds of fuzz_tflite and fuzz_litertlm were made from it:
  fieldlm convert OUT_DIR -o tiny.tflite --ctx 16 --prefill 4
  fieldlm convert OUT_DIR -o tiny.litertlm --ctx 16 --prefill 4
and llm_metadata.pb is the LlmMetadata section of tiny.litertlm."""
import json, os, random, struct, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
random.seed(1)
V, H, I, L, NH, NKV, D = 64, 16, 32, 1, 2, 1, 8
cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": V, "hidden_size": H,
       "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
       "head_dim": D, "max_position_embeddings": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
       "tie_word_embeddings": True, "bos_token_id": None, "eos_token_id": 1, "torch_dtype": "float32"}
json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
json.dump({"eos_token_id": [1], "do_sample": False}, open(os.path.join(out, "generation_config.json"), "w"))
shapes = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
for l in range(L):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                   p + "self_attn.q_proj.weight": [NH * D, H], p + "self_attn.q_proj.bias": [NH * D],
                   p + "self_attn.k_proj.weight": [NKV * D, H], p + "self_attn.k_proj.bias": [NKV * D],
                   p + "self_attn.v_proj.weight": [NKV * D, H], p + "self_attn.v_proj.bias": [NKV * D],
                   p + "self_attn.o_proj.weight": [H, NH * D], p + "mlp.gate_proj.weight": [I, H],
                   p + "mlp.up_proj.weight": [I, H], p + "mlp.down_proj.weight": [H, I]})
hdr, data = {}, b""
for n, s in shapes.items():
    cnt = 1
    for x in s:
        cnt *= x
    b = struct.pack(f"<{cnt}f", *[random.uniform(-.1, .1) for _ in range(cnt)])
    hdr[n] = {"dtype": "F32", "shape": s, "data_offsets": [len(data), len(data) + len(b)]}
    data += b
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(os.path.join(out, "model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + data)
vocab = {(chr(97 + i) if i < 26 else f"t{i}"): i for i in range(V - 2)}
vocab["<|endoftext|>"] = V - 2
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [{"id": 1, "content": "<eos>", "single_word": False, "lstrip": False, "rstrip": False,
                         "normalized": False, "special": True}],
       "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                 "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"))
json.dump({"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "eos_token": "<eos>"},
          open(os.path.join(out, "tokenizer_config.json"), "w"))

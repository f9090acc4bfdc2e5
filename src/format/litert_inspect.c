/* litert_inspect.c — reads and describes .tflite models and .litertlm bundles
 * (`fieldlm inspect`, the tests and the fuzz targets): every offset and index is
 * checked against the file, so a hostile file is an error, never a bad read. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/common.h"
#include "base/mapfile.h"
#include "format/flatbuf.h"
#include "format/litertlm.h"
#include "format/tflite.h"

#define MAX_CODE 512

static void put_str(strbuf *sb, const char *s, size_t n, bool json) {
    if (json) flm_sb_json_string(sb, s, n, false);
    else flm_sb_append(sb, s, n);
}

/* name: TYPE[d0,d1,...] of tensor ti of subgraph sg */
static void describe_tensor(flm_fb_reader *r, flm_fb_vec tensors, uint32_t ti, const char *map_name, uint32_t map_len, bool json,
                            strbuf *sb) {
    flm_fb_table t = flm_fb_vec_table(r, tensors, ti);
    int type = flm_fb_get_u8(r, t, TFL_TENSOR_TYPE, 0);
    flm_fb_vec sh = flm_fb_get_vector(r, t, TFL_TENSOR_SHAPE, 4);
    if (json) {
        flm_sb_puts(sb, "{\"name\":");
        put_str(sb, map_name, map_len, true);
        flm_sb_printf(sb, ",\"type\":\"%s\",\"shape\":[", flm_tflite_type_name(type));
    } else {
        flm_sb_puts(sb, "      ");
        flm_sb_append(sb, map_name, map_len);
        flm_sb_printf(sb, ": %s[", flm_tflite_type_name(type));
    }
    for (uint32_t i = 0; i < sh.n && i < 8; i++) flm_sb_printf(sb, "%s%" PRId32, i ? "," : "", flm_fb_vec_i32(r, sh, i));
    flm_sb_puts(sb, json ? "]}" : "]\n");
}

int flm_tflite_describe(const unsigned char *buf, size_t len, bool json, strbuf *sb) {
    flm_fb_reader rd = {buf, len, false}, *r = &rd;
    if (len < 8 || memcmp(buf + 4, "TFL3", 4) != 0) return flm_fail(FLM_ERR_FORMAT, "not a TFLite model (no TFL3 identifier)");
    flm_fb_table root = flm_fb_root(r, "TFL3");
    if (!root.pos) return flm_fail(FLM_ERR_FORMAT, "TFLite model: bad root table");
    flm_fb_vec codes = flm_fb_get_vector(r, root, TFL_MODEL_OPCODES, 4), subs = flm_fb_get_vector(r, root, TFL_MODEL_SUBGRAPHS, 4),
               bufs = flm_fb_get_vector(r, root, TFL_MODEL_BUFFERS, 4), sigs = flm_fb_get_vector(r, root, TFL_MODEL_SIGNATURES, 4);
    if (r->bad) return flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed flatbuffer");
    int *code_of = calloc(codes.n ? codes.n : 1, sizeof *code_of);
    uint64_t *op_count = calloc(MAX_CODE, sizeof *op_count);
    unsigned char *seen = calloc(bufs.n ? bufs.n : 1, 1);
    uint64_t by_type[16][2];
    memset(by_type, 0, sizeof by_type);
    int rc = FLM_OK;
    if (!code_of || !op_count || !seen) { rc = FLM_ERR_NOMEM; goto out; }
    for (uint32_t i = 0; i < codes.n; i++) {
        flm_fb_table c = flm_fb_vec_table(r, codes, i);
        int32_t bc = flm_fb_get_i32(r, c, TFL_CODE_BUILTIN, 0);
        int32_t dep = (int8_t)flm_fb_get_u8(r, c, TFL_CODE_DEPRECATED, 0);
        if (bc < dep) bc = dep; /* older writers set only the deprecated byte */
        if (bc < 0 || bc >= MAX_CODE) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: operator code %d out of range", bc); goto out; }
        code_of[i] = bc;
    }
    uint64_t ext_end = 0, inline_bytes = 0;
    for (uint32_t i = 0; i < bufs.n; i++) {
        flm_fb_table b = flm_fb_vec_table(r, bufs, i);
        uint64_t off = flm_fb_get_u64(r, b, TFL_BUFFER_OFFSET, 0), size = flm_fb_get_u64(r, b, TFL_BUFFER_SIZE, 0);
        if (off > 1 && (off > len || size > len - off)) {
            rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: buffer %u [%" PRIu64 ", +%" PRIu64 ") lies outside the %zu-byte file", i, off, size, len);
            goto out;
        }
        if (off > 1 && off + size > ext_end) ext_end = off + size;
        inline_bytes += flm_fb_get_vector(r, b, TFL_BUFFER_DATA, 1).n;
    }
    if (r->bad) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed buffers"); goto out; }
    uint64_t n_tensors = 0, n_ops = 0;
    for (uint32_t s = 0; s < subs.n; s++) {
        flm_fb_table sg = flm_fb_vec_table(r, subs, s);
        flm_fb_vec tv = flm_fb_get_vector(r, sg, TFL_SUB_TENSORS, 4), ov = flm_fb_get_vector(r, sg, TFL_SUB_OPERATORS, 4);
        n_tensors += tv.n;
        n_ops += ov.n;
        for (uint32_t t = 0; t < tv.n; t++) {
            flm_fb_table tt = flm_fb_vec_table(r, tv, t);
            uint32_t bi = flm_fb_get_u32(r, tt, TFL_TENSOR_BUFFER, 0);
            int type = flm_fb_get_u8(r, tt, TFL_TENSOR_TYPE, 0);
            if (bi && bi >= bufs.n) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: tensor %u of subgraph %u names buffer %u of %u", t, s, bi, bufs.n); goto out; }
            if (!bi || seen[bi]) continue;
            flm_fb_table b = flm_fb_vec_table(r, bufs, bi);
            uint64_t off = flm_fb_get_u64(r, b, TFL_BUFFER_OFFSET, 0);
            uint64_t bytes = off > 1 ? flm_fb_get_u64(r, b, TFL_BUFFER_SIZE, 0) : flm_fb_get_vector(r, b, TFL_BUFFER_DATA, 1).n;
            if (!bytes) continue;
            seen[bi] = 1;
            by_type[type & 15][0]++;
            by_type[type & 15][1] += bytes;
        }
        for (uint32_t o = 0; o < ov.n; o++) {
            flm_fb_table op = flm_fb_vec_table(r, ov, o);
            uint32_t ci = flm_fb_get_u32(r, op, TFL_OP_OPCODE, 0);
            if (ci >= codes.n) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: operator %u of subgraph %u has opcode index %u of %u", o, s, ci, codes.n); goto out; }
            op_count[code_of[ci]]++;
            for (int side = 0; side < 2; side++) {
                flm_fb_vec io = flm_fb_get_vector(r, op, side ? TFL_OP_OUTPUTS : TFL_OP_INPUTS, 4);
                for (uint32_t k = 0; k < io.n; k++) {
                    int32_t ti = flm_fb_vec_i32(r, io, k);
                    if (ti < -1 || ti >= (int64_t)tv.n) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: operator %u of subgraph %u uses tensor %d of %u", o, s, ti, tv.n); goto out; }
                }
            }
        }
        if (r->bad) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed subgraph %u", s); goto out; }
    }
    uint32_t dl = 0;
    const char *desc = flm_fb_get_string(r, root, TFL_MODEL_DESCRIPTION, &dl);
    size_t fb_end = ext_end ? (size_t)0 : len;
    (void)fb_end;
    if (json) {
        flm_sb_printf(sb, "{\"format\":\"tflite\",\"version\":%" PRIu32 ",\"description\":", flm_fb_get_u32(r, root, TFL_MODEL_VERSION, 0));
        if (desc) put_str(sb, desc, dl, true); else flm_sb_puts(sb, "null");
        flm_sb_printf(sb, ",\"bytes\":%zu,\"subgraphs\":%u,\"tensors\":%" PRIu64 ",\"operators\":%" PRIu64 ",\"signatures\":[", len, subs.n, n_tensors, n_ops);
    } else {
        flm_sb_printf(sb, "TFLite model, schema version %" PRIu32 ", %zu bytes\n", flm_fb_get_u32(r, root, TFL_MODEL_VERSION, 0), len);
        if (desc) { flm_sb_puts(sb, "  description: "); flm_sb_append(sb, desc, dl); flm_sb_putc(sb, '\n'); }
        flm_sb_printf(sb, "  %u subgraphs, %" PRIu64 " tensors, %" PRIu64 " operators\n  signatures:\n", subs.n, n_tensors, n_ops);
    }
    for (uint32_t i = 0; i < sigs.n; i++) {
        flm_fb_table sg = flm_fb_vec_table(r, sigs, i);
        uint32_t kl = 0;
        const char *key = flm_fb_get_string(r, sg, TFL_SIG_KEY, &kl);
        uint32_t si = flm_fb_get_u32(r, sg, TFL_SIG_SUBGRAPH, 0);
        if (!key || si >= subs.n) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: signature %u is malformed", i); goto out; }
        flm_fb_vec tv = flm_fb_get_vector(r, flm_fb_vec_table(r, subs, si), TFL_SUB_TENSORS, 4);
        if (json) {
            flm_sb_puts(sb, i ? ",{\"key\":" : "{\"key\":");
            put_str(sb, key, kl, true);
            flm_sb_printf(sb, ",\"subgraph\":%u", si);
        } else {
            flm_sb_puts(sb, "    ");
            flm_sb_append(sb, key, kl);
            flm_sb_printf(sb, " (subgraph %u)\n", si);
        }
        for (int side = 0; side < 2; side++) {
            flm_fb_vec mv = flm_fb_get_vector(r, sg, side ? TFL_SIG_OUTPUTS : TFL_SIG_INPUTS, 4);
            flm_sb_puts(sb, json ? (side ? ",\"outputs\":[" : ",\"inputs\":[") : (side ? "     outputs:\n" : "     inputs:\n"));
            for (uint32_t k = 0; k < mv.n; k++) {
                flm_fb_table mt = flm_fb_vec_table(r, mv, k);
                uint32_t nl = 0;
                const char *nm = flm_fb_get_string(r, mt, TFL_MAP_NAME, &nl);
                uint32_t ti = flm_fb_get_u32(r, mt, TFL_MAP_TENSOR, 0);
                if (!nm || ti >= tv.n) { rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: signature %u maps a bad tensor", i); goto out; }
                if (json && k) flm_sb_putc(sb, ',');
                describe_tensor(r, tv, ti, nm, nl, json, sb);
            }
            if (json) flm_sb_putc(sb, ']');
        }
        if (json) flm_sb_putc(sb, '}');
    }
    flm_sb_puts(sb, json ? "],\"operator_counts\":{" : "  operators:\n");
    bool first = true;
    for (int c = 0; c < MAX_CODE; c++) {
        if (!op_count[c]) continue;
        const char *n = flm_tflite_op_name(c);
        char num[24];
        if (!strcmp(n, "?")) { snprintf(num, sizeof num, "BUILTIN_%d", c); n = num; }
        if (json) flm_sb_printf(sb, "%s\"%s\":%" PRIu64, first ? "" : ",", n, op_count[c]);
        else flm_sb_printf(sb, "    %-22s %" PRIu64 "\n", n, op_count[c]);
        first = false;
    }
    flm_sb_puts(sb, json ? "},\"constants_by_type\":{" : "  constant tensors (each buffer once):\n");
    first = true;
    for (int t = 0; t < 16; t++) {
        if (!by_type[t][0]) continue;
        if (json) flm_sb_printf(sb, "%s\"%s\":{\"tensors\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", first ? "" : ",", flm_tflite_type_name(t), by_type[t][0], by_type[t][1]);
        else flm_sb_printf(sb, "    %-8s %6" PRIu64 " tensors %14" PRIu64 " bytes\n", flm_tflite_type_name(t), by_type[t][0], by_type[t][1]);
        first = false;
    }
    if (json) flm_sb_printf(sb, "},\"inline_bytes\":%" PRIu64 ",\"external_end\":%" PRIu64 "}", inline_bytes, ext_end);
    else flm_sb_printf(sb, "  inline constant bytes %" PRIu64 "; weights after the flatbuffer end at byte %" PRIu64 "\n", inline_bytes, ext_end);
    if (r->bad) rc = flm_fail(FLM_ERR_FORMAT, "TFLite model: malformed flatbuffer");
out:
    free(code_of);
    free(op_count);
    free(seen);
    return rc;
}

static void json_kv(strbuf *sb, const flm_litertlm_read_kv *kv, int n) {
    flm_sb_putc(sb, '{');
    for (int i = 0; i < n; i++) {
        if (i) flm_sb_putc(sb, ',');
        flm_sb_json_string(sb, kv[i].key, strlen(kv[i].key), false);
        flm_sb_putc(sb, ':');
        flm_sb_json_string(sb, kv[i].value, strlen(kv[i].value), false);
    }
    flm_sb_putc(sb, '}');
}

int flm_litertlm_describe(const unsigned char *buf, size_t len, bool json, strbuf *sb) {
    flm_litertlm_info *info = flm_calloc(1, sizeof *info);
    if (!info) return FLM_ERR_NOMEM;
    int rc = flm_litertlm_parse(buf, len, len, info);
    if (rc) { free(info); return rc; }
    if (json) {
        flm_sb_printf(sb, "{\"format\":\"litertlm\",\"version\":\"%u.%u.%u\",\"bytes\":%zu,\"header_bytes\":%" PRIu64 ",\"system_metadata\":",
                      info->major, info->minor, info->patch, len, info->header_end);
        json_kv(sb, info->sys, info->n_sys);
        flm_sb_puts(sb, ",\"sections\":[");
    } else {
        flm_sb_printf(sb, "LiteRT-LM bundle, version %u.%u.%u, %zu bytes, header %" PRIu64 " bytes\n  system metadata:\n", info->major,
                      info->minor, info->patch, len, info->header_end);
        for (int i = 0; i < info->n_sys; i++) {
            flm_sb_printf(sb, "    %s: ", info->sys[i].key);
            const char *v = info->sys[i].value;
            for (; *v; v++) {
                if (*v == '\n') flm_sb_puts(sb, "\n      ");
                else flm_sb_putc(sb, *v);
            }
            flm_sb_putc(sb, '\n');
        }
        flm_sb_puts(sb, "  sections:\n");
    }
    for (int s = 0; s < info->n_sec && !rc; s++) {
        const unsigned char *p = buf + info->sec[s].begin;
        size_t n = (size_t)(info->sec[s].end - info->sec[s].begin);
        int dt = info->sec[s].data_type;
        if (json) {
            flm_sb_printf(sb, "%s{\"type\":\"%s\",\"begin\":%" PRIu64 ",\"end\":%" PRIu64 ",\"items\":", s ? "," : "",
                          flm_litertlm_section_type_name(dt), info->sec[s].begin, info->sec[s].end);
            json_kv(sb, info->sec[s].items, info->sec[s].n_items);
        } else {
            flm_sb_printf(sb, "    [%d] %s at %" PRIu64 ", %zu bytes%s", s, flm_litertlm_section_type_name(dt), info->sec[s].begin, n,
                          info->sec[s].begin % FLM_LITERTLM_BLOCK ? " (NOT 16 KiB-aligned)" : "");
            for (int k = 0; k < info->sec[s].n_items; k++) flm_sb_printf(sb, ", %s=%s", info->sec[s].items[k].key, info->sec[s].items[k].value);
            flm_sb_putc(sb, '\n');
        }
        if (dt == FLM_LTLM_LLM_METADATA) {
            flm_llm_metadata md;
            if ((rc = flm_llm_metadata_decode(p, n, &md))) break;
            static const char *const ST[] = {"UNSPECIFIED", "TOP_K", "TOP_P", "GREEDY"};
            const char *stype = md.sampler_type >= 0 && md.sampler_type < 4 ? ST[md.sampler_type] : "?";
            const char *mtype = md.model_type == 7 ? "qwen2p5" : md.model_type == 1 ? "generic_model" : md.model_type ? "other" : "none";
            if (json) {
                flm_sb_puts(sb, ",\"llm_metadata\":{\"start_token\":");
                if (md.has_start) flm_sb_printf(sb, "%" PRId32, md.start_id); else flm_sb_puts(sb, "null");
                flm_sb_puts(sb, ",\"stop_tokens\":[");
                for (int i = 0; i < md.n_stops; i++) flm_sb_printf(sb, "%s%" PRId32, i ? "," : "", md.stop_ids[i]);
                flm_sb_puts(sb, "],\"sampler\":");
                if (md.has_sampler)
                    flm_sb_printf(sb, "{\"type\":\"%s\",\"k\":%" PRId32 ",\"p\":%.9g,\"temperature\":%.9g}", stype, md.k, (double)md.p, (double)md.temperature);
                else flm_sb_puts(sb, "null");
                flm_sb_printf(sb, ",\"max_num_tokens\":%" PRId32 ",\"llm_model_type\":\"%s\",\"jinja_prompt_template\":", md.max_num_tokens, mtype);
                if (md.jinja) flm_sb_json_string(sb, md.jinja, md.jinja_len, false); else flm_sb_puts(sb, "null");
                flm_sb_putc(sb, '}');
            } else {
                flm_sb_puts(sb, "        start token: ");
                if (md.has_start) flm_sb_printf(sb, "%" PRId32 "\n", md.start_id); else flm_sb_puts(sb, "none\n");
                flm_sb_puts(sb, "        stop tokens:");
                for (int i = 0; i < md.n_stops; i++) flm_sb_printf(sb, " %" PRId32, md.stop_ids[i]);
                if (md.has_sampler)
                    flm_sb_printf(sb, "\n        sampler: %s k=%" PRId32 " p=%.6g temperature=%.6g\n", stype, md.k, (double)md.p, (double)md.temperature);
                else flm_sb_puts(sb, "\n        sampler: none (LiteRT-LM's default)\n");
                flm_sb_printf(sb, "        capacity (max_num_tokens): %" PRId32 "\n        model type: %s\n        chat template: %zu bytes\n",
                              md.max_num_tokens, mtype, md.jinja ? md.jinja_len : 0);
            }
        } else if (dt == FLM_LTLM_HF_TOKENIZER_ZLIB) {
            uint64_t ul = 0;
            if (n >= 8) memcpy(&ul, p, 8);
            bool ok = false;
            if (n >= 8 && ul < ((uint64_t)1 << 31)) {
                unsigned char *tmp = malloc(ul ? (size_t)ul : 1);
                uLongf got = (uLongf)ul;
                ok = tmp && uncompress(tmp, &got, p + 8, (uLong)(n - 8)) == Z_OK && got == ul;
                free(tmp);
            }
            if (json) flm_sb_printf(sb, ",\"tokenizer_json_bytes\":%" PRIu64 ",\"inflates\":%s", ul, ok ? "true" : "false");
            else flm_sb_printf(sb, "        tokenizer.json: %" PRIu64 " bytes%s\n", ul, ok ? "" : " (DOES NOT INFLATE)");
        } else if (dt == FLM_LTLM_TFLITE_MODEL) {
            if (json) flm_sb_puts(sb, ",\"model\":");
            strbuf sub;
            flm_sb_init(&sub);
            rc = flm_tflite_describe(p, n, json, &sub);
            if (!rc) {
                if (!json) {
                    /* indent the model's description under its section */
                    for (size_t i = 0; i < sub.len; i++) {
                        if (i == 0 || sub.data[i - 1] == '\n') flm_sb_puts(sb, "        ");
                        flm_sb_putc(sb, sub.data[i]);
                    }
                } else flm_sb_append(sb, sub.data, sub.len);
            }
            flm_sb_free(&sub);
        }
        if (json) flm_sb_putc(sb, '}');
    }
    if (json) flm_sb_puts(sb, "]}");
    free(info);
    return rc;
}

int flm_litert_describe_file(const char *path, bool json, strbuf *sb) {
    flm_map m;
    int rc = flm_map_open(path, &m);
    if (rc) return rc;
    if (m.size >= 8 && !memcmp(m.data, "LITERTLM", 8)) rc = flm_litertlm_describe(m.data, m.size, json, sb);
    else rc = flm_tflite_describe(m.data, m.size, json, sb);
    flm_map_close(&m);
    if (rc) return flm_fail_context(rc, "%s: ", path);
    return rc;
}

/* litert_int8.h — LiteRT's dynamic_int8 numerics, emulated (an explicit runtime option).
 *
 * A model converted with AI Edge Torch's default recipe (dynamic_int8; fieldlm convert
 * -o X.tflite writes the same) computes every FULLY_CONNECTED with int8 weights, one
 * symmetric scale per output channel, and its float input quantized per row to
 * asymmetric int8 at run time (XNNPACK's qd8 path); the embedding table is int8 per row
 * too, dequantized on lookup. Everything else (norms, rotary, attention, softmax, SwiGLU,
 * residuals) stays float32.
 *
 * flm_litert_int8 holds int8 copies of a model's matrices quantized exactly as fieldlm's
 * .tflite writer quantizes them (flm_quantize_row_i8_channel, shared), with the row sums
 * the zero-point correction needs. A forward state given one (flm_forward_set_litert_int8)
 * computes those products as the hybrid kernel does:
 *   y[t,r] = float(sum_i (qx[t,i] - zp[t]) * qw[r,i]) * sx[t] * sw[r]  (+ bias, in float)
 * with (qx, zp, sx) = flm_quantize_row_i8_asym(x[t]). Without one, nothing changes: the
 * float paths do not look at it. docs/LITERT.md ("dynamic_int8 emulated") has the
 * measurement against the real runtime. Immutable once made: share it between threads. */
#ifndef FLM_LITERT_INT8_H
#define FLM_LITERT_INT8_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    int8_t *q;        /* [rows, cols] */
    float *scale;     /* [rows] */
    int32_t *qsum;    /* [rows] sum of the row's quants (zero-point correction) */
    int rows, cols;
} flm_i8_matrix;

typedef struct {
    flm_i8_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
} flm_i8_layer;

typedef struct {
    flm_i8_matrix embed;     /* the lookup table (dequantized per row on lookup) */
    flm_i8_matrix lm_head;   /* a copy of embed when the model ties them (the .tflite uses one buffer) */
    flm_i8_layer *layers;    /* [n_layers] */
    int n_layers;
} flm_litert_int8;

/* Quantizes every matrix of m (any stored dtype; read as float) on n_threads threads
 * (<= 0: physical cores). FLM_ERR_NOMEM, or FLM_ERR_UNSUPPORTED for a dtype that cannot
 * be read as float. */
int flm_litert_int8_new(const flm_model *m, int n_threads, flm_litert_int8 **out);
void flm_litert_int8_free(flm_litert_int8 *q);

/* Rows [r0, r1) of Y[n_tok, W->rows] = hybrid product of W with the prepared inputs
 * (xq [n_tok, W->cols], xs, xzp [n_tok]). */
void flm_i8_hybrid_rows(const flm_i8_matrix *W, const int8_t *xq, const float *xs, const int32_t *xzp, float *Y,
                        int n_tok, int r0, int r1);

/* Row `id` of the int8 embedding, dequantized: out[i] = q[i] * scale (the lookup). */
void flm_i8_embed_row(const flm_i8_matrix *E, int32_t id, float *out);

#endif

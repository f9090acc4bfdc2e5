/* tflite.h — the numbers of the TFLite schema (LiteRT tflite/converter/schema/
 * schema.fbs) that fieldlm's writer and reader use: tensor types, builtin operator
 * codes, BuiltinOptions union members, and the vtable slots of the tables. */
#ifndef FLM_TFLITE_H
#define FLM_TFLITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

/* TensorType */
enum { TFL_FLOAT32 = 0, TFL_FLOAT16 = 1, TFL_INT32 = 2, TFL_UINT8 = 3, TFL_INT64 = 4, TFL_BOOL = 6, TFL_INT16 = 7, TFL_INT8 = 9 };

/* BuiltinOperator */
enum {
    TFL_OP_ADD = 0, TFL_OP_CONCATENATION = 2, TFL_OP_DEQUANTIZE = 6, TFL_OP_EMBEDDING_LOOKUP = 7, TFL_OP_FULLY_CONNECTED = 9,
    TFL_OP_LOGISTIC = 14, TFL_OP_MUL = 18, TFL_OP_RELU = 19, TFL_OP_RESHAPE = 22, TFL_OP_SOFTMAX = 25, TFL_OP_GATHER = 36,
    TFL_OP_TRANSPOSE = 39, TFL_OP_MEAN = 40, TFL_OP_SUB = 41, TFL_OP_CAST = 53, TFL_OP_SLICE = 65, TFL_OP_SIN = 66,
    TFL_OP_RSQRT = 76, TFL_OP_COS = 108, TFL_OP_BATCH_MATMUL = 126, TFL_OP_DYNAMIC_UPDATE_SLICE = 151,
};

/* BuiltinOptions union members */
enum {
    TFL_OPT_FULLY_CONNECTED = 8, TFL_OPT_SOFTMAX = 9, TFL_OPT_CONCATENATION = 10, TFL_OPT_ADD = 11, TFL_OPT_RESHAPE = 17,
    TFL_OPT_MUL = 21, TFL_OPT_GATHER = 23, TFL_OPT_TRANSPOSE = 26, TFL_OPT_REDUCER = 27, TFL_OPT_SUB = 28, TFL_OPT_CAST = 37,
    TFL_OPT_SLICE = 48, TFL_OPT_BATCH_MATMUL = 101, TFL_OPT_DYNAMIC_UPDATE_SLICE = 117,
};

/* Vtable slots (a union takes two: type, value). */
enum { TFL_MODEL_VERSION = 0, TFL_MODEL_OPCODES = 1, TFL_MODEL_SUBGRAPHS = 2, TFL_MODEL_DESCRIPTION = 3, TFL_MODEL_BUFFERS = 4,
       TFL_MODEL_SIGNATURES = 7 };
enum { TFL_SUB_TENSORS = 0, TFL_SUB_INPUTS = 1, TFL_SUB_OUTPUTS = 2, TFL_SUB_OPERATORS = 3, TFL_SUB_NAME = 4 };
enum { TFL_TENSOR_SHAPE = 0, TFL_TENSOR_TYPE = 1, TFL_TENSOR_BUFFER = 2, TFL_TENSOR_NAME = 3, TFL_TENSOR_QUANT = 4 };
enum { TFL_BUFFER_DATA = 0, TFL_BUFFER_OFFSET = 1, TFL_BUFFER_SIZE = 2 };
enum { TFL_OP_OPCODE = 0, TFL_OP_INPUTS = 1, TFL_OP_OUTPUTS = 2, TFL_OP_OPTIONS_TYPE = 3, TFL_OP_OPTIONS = 4 };
enum { TFL_CODE_DEPRECATED = 0, TFL_CODE_VERSION = 2, TFL_CODE_BUILTIN = 3 };
enum { TFL_SIG_INPUTS = 0, TFL_SIG_OUTPUTS = 1, TFL_SIG_KEY = 2, TFL_SIG_SUBGRAPH = 4 };
enum { TFL_MAP_NAME = 0, TFL_MAP_TENSOR = 1 };
enum { TFL_QUANT_SCALE = 2, TFL_QUANT_ZERO_POINT = 3, TFL_QUANT_DIM = 6 };

/* Names for reports ("FULLY_CONNECTED", "INT8"); "?" when unknown. */
const char *flm_tflite_op_name(int code);
const char *flm_tflite_type_name(int type);
/* Bytes per element of a tensor type; 0 when unknown. */
size_t flm_tflite_type_size(int type);

/* Checks a TFLite model in buf[0..len) (every buffer offset, tensor, operator and
 * signature index in range) and describes it: signatures with their inputs and
 * outputs, operator counts, constant tensors and bytes by type. Text or JSON. */
int flm_tflite_describe(const unsigned char *buf, size_t len, bool json, strbuf *out);

#endif

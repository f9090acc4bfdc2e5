/* tflite.c — names of the TFLite schema numbers (tflite.h). */
#include "format/tflite.h"

const char *flm_tflite_op_name(int code) {
    switch (code) {
    case TFL_OP_ADD: return "ADD";
    case TFL_OP_CONCATENATION: return "CONCATENATION";
    case TFL_OP_DEQUANTIZE: return "DEQUANTIZE";
    case TFL_OP_EMBEDDING_LOOKUP: return "EMBEDDING_LOOKUP";
    case TFL_OP_FULLY_CONNECTED: return "FULLY_CONNECTED";
    case TFL_OP_LOGISTIC: return "LOGISTIC";
    case TFL_OP_MUL: return "MUL";
    case TFL_OP_RELU: return "RELU";
    case TFL_OP_RESHAPE: return "RESHAPE";
    case TFL_OP_SOFTMAX: return "SOFTMAX";
    case TFL_OP_GATHER: return "GATHER";
    case TFL_OP_TRANSPOSE: return "TRANSPOSE";
    case TFL_OP_MEAN: return "MEAN";
    case TFL_OP_SUB: return "SUB";
    case TFL_OP_CAST: return "CAST";
    case TFL_OP_SLICE: return "SLICE";
    case TFL_OP_SIN: return "SIN";
    case TFL_OP_RSQRT: return "RSQRT";
    case TFL_OP_COS: return "COS";
    case TFL_OP_BATCH_MATMUL: return "BATCH_MATMUL";
    case TFL_OP_DYNAMIC_UPDATE_SLICE: return "DYNAMIC_UPDATE_SLICE";
    }
    return "?";
}

const char *flm_tflite_type_name(int type) {
    switch (type) {
    case TFL_FLOAT32: return "FLOAT32";
    case TFL_FLOAT16: return "FLOAT16";
    case TFL_INT32: return "INT32";
    case TFL_UINT8: return "UINT8";
    case TFL_INT64: return "INT64";
    case TFL_BOOL: return "BOOL";
    case TFL_INT16: return "INT16";
    case TFL_INT8: return "INT8";
    }
    return "?";
}

size_t flm_tflite_type_size(int type) {
    switch (type) {
    case TFL_FLOAT32: case TFL_INT32: return 4;
    case TFL_FLOAT16: case TFL_INT16: return 2;
    case TFL_INT64: return 8;
    case TFL_UINT8: case TFL_INT8: case TFL_BOOL: return 1;
    }
    return 0;
}

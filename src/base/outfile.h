/* outfile.h — the output-file discipline shared by every command that writes a file
 * (convert, synth, logits, and the GGUF / safetensors writers under them):
 *
 *   1. flm_outfile_check(), before any work: refuse to write onto an input of the
 *      command (same device and inode after resolving links), onto anything that
 *      exists and is not a regular file (device node, FIFO, socket), onto a
 *      directory, or into a folder that is missing or not writable.
 *   2. flm_outfile_open(): a temporary file unique to this call, OUT.XXXXXX.tmp in
 *      the target's folder (mkstemp), so concurrent writers never share one.
 *   3. flm_outfile_commit(): fsync, close, re-check the target, rename over it,
 *      fsync the folder. flm_outfile_abort() (and every failed commit) removes the
 *      temporary file: a failed or cancelled write leaves nothing behind.
 * docs/FILES.md describes the rules for users. */
#ifndef FLM_OUTFILE_H
#define FLM_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *path;        /* the target */
    char *tmp;         /* PATH.XXXXXX.tmp while open, NULL after commit/abort */
    int fd;            /* -1 once closed */
    uint64_t written;  /* bytes written through flm_outfile_write */
} flm_outfile;

/* Checks that out_path may be written, before any work. `inputs` are the paths the
 * command reads (NULL entries and paths that do not exist are skipped). An input
 * that is a folder stands for the files fieldlm reads from a model or adapter
 * folder: its *.json, *.safetensors, *.jinja and merges.txt files (and
 * additional_chat_templates/ *.jinja). Errors name the output and say why. */
int flm_outfile_check(const char *out_path, const char *const *inputs, size_t n_inputs);

/* Runs the target checks of flm_outfile_check (no inputs) and creates the
 * temporary file. On error nothing is created and *of is left closed. */
int flm_outfile_open(const char *out_path, flm_outfile *of);
/* write(2) of all n bytes; errors name the output ("file size limit reached" for
 * EFBIG, so run with SIGXFSZ ignored). Does not remove the temporary file. */
int flm_outfile_write(flm_outfile *of, const void *buf, size_t n);
/* fsync + rename over the target + fsync of the folder. On failure the temporary
 * file is removed. Frees what open allocated either way. */
int flm_outfile_commit(flm_outfile *of);
/* Closes and removes the temporary file; frees. Safe on a closed or zeroed handle. */
void flm_outfile_abort(flm_outfile *of);

/* The message for a write error number: strerror, but for EFBIG "file too
 * large: file size limit reached (ulimit -f)", which says what to change. */
const char *flm_outfile_strerror(int err);

/* True for the names of files that make up a model, package or adapter (what
 * `synth` refuses to overwrite without --force): *.safetensors, *.gguf, *.json,
 * *.jinja, *.bin, *.pt, *.pth, merges.txt. */
bool flm_outfile_is_model_file(const char *name);

#endif

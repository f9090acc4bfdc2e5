/* simple.c — the smallest complete fieldlm program: open a model, ask one farmer
 * question through the chat template, stream the answer. Uses only fieldlm.h.
 *
 *   make examples
 *   build/examples/simple [MODEL [QUESTION]]
 *
 * MODEL defaults to the bundled models/kcc-advisor, found from the current
 * directory, else relative to this program (build/examples/simple →
 * ../../models/kcc-advisor; an installed bin/simple → ../models/kcc-advisor),
 * so it runs from any directory. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* readlink */
#endif
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fieldlm.h"

/* Called for every new piece of the answer (always whole UTF-8 characters). */
static int print_piece(void *user, const char *piece, size_t len, int32_t token) {
    (void)user;
    (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop the answer here */
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The bundled model: from the current directory, else from the folder of this
 * program (Linux /proc/self/exe) one or two levels up. NULL if not found. */
static const char *bundled_model(void) {
    static char path[4096];
    const char *rel = "models/kcc-advisor";
    if (is_dir(rel)) return rel;
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    static const char *const up[] = {"..", "../.."};
    for (size_t i = 0; i < sizeof up / sizeof *up; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", exe, up[i], rel);
        if (is_dir(path)) return path;
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : bundled_model();
    if (!model) {
        fprintf(stderr, "the bundled models/kcc-advisor was not found (here or beside this program); give MODEL\n");
        return 1;
    }
    const char *question = argc > 2 ? argv[2] : "How do I control thrips in chilli? (crop: Chillies)";

    flm_handle *h = NULL;
    if (flm_open(model, NULL, &h) != FLM_OK) {
        fprintf(stderr, "cannot open %s: %s\n", model, flm_errmsg(NULL));
        return 1;
    }

    /* Every setting starts unset (the model's generation_config.json decides); cap
     * the answer length and fix the seed. */
    flm_gen_settings opt;
    flm_gen_settings_init(&opt);
    opt.max_new_tokens = 96;
    opt.seed = 42;
    flm_session *s = NULL;
    if (flm_session_new(h, &opt, &s) != FLM_OK) {
        fprintf(stderr, "cannot create a session: %s\n", flm_errmsg(h));
        flm_close(h);
        return 1;
    }

    flm_message conversation[] = {
        {"system", "You are an agricultural advisor for smallholder farmers. Answer briefly and practically."},
        {"user", question},
    };
    flm_result res;
    int rc = flm_generate(s, conversation, 2, print_piece, NULL, &res);
    if (rc != FLM_OK) {
        fprintf(stderr, "\ngeneration failed: %s\n", flm_session_errmsg(s));
    } else {
        printf("\n");
        fprintf(stderr, "[%d prompt tokens, %d generated at %.1f tok/s, stop: %s]\n", res.timings.prompt_tokens,
                res.timings.generated_tokens, res.timings.decode_tok_s, flm_stop_reason_str(res.stop_reason));
    }
    flm_session_free(s);
    flm_close(h);
    return rc == FLM_OK ? 0 : 1;
}

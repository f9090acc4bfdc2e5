/* cmd_serve.c — `fieldlm serve`: an OpenAI-compatible HTTP server on the public API
 * (include/fieldlm.h) with a chat page. Parses the options, opens the model, makes
 * the slots, starts the HTTP side (app/serve/http.c) and waits for SIGINT/SIGTERM:
 * then it stops accepting, cancels what is generating, waits for the connections to
 * end and exits 0. docs/SERVER.md describes the endpoints. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "serve/server.h"

static void serve_help(FILE *f) {
    fprintf(f,
            "usage: fieldlm serve [-m MODEL] [--host ADDR] [--port N] [-c N] [--parallel N] [--api-key KEY]\n"
            "                     [--lora DIR[:S]] [-t N] [options]\n\n"
            "Serves the model over HTTP with OpenAI's API (POST /v1/chat/completions, /v1/completions,\n"
            "GET /v1/models), plus GET /health, GET /metrics (Prometheus), POST /tokenize, /detokenize\n"
            "and a chat page at /. Requests use the model's chat template, stop tokens and\n"
            "generation_config.json defaults unless they say otherwise (docs/SERVER.md).\n\n"
            "options:\n"
            "  -m, --model MODEL       Hugging Face folder or .gguf package. Default: the bundled model\n"
            "      --lora DIR[:S]      merge a PEFT LoRA adapter at load, scale S (default 1); repeatable\n"
            "      --mmap, --no-mmap   run the weights from the file / load them into memory\n"
            "      --host ADDR         address to listen on (default 127.0.0.1: this machine only;\n"
            "                          0.0.0.0 or :: opens the server to the network)\n"
            "      --port N            TCP port (default 8080; 0: any free port, printed at start)\n"
            "  -c, --ctx N             context of each slot in tokens (default min(4096, the model's))\n"
            "      --parallel N        slots generating at once, each with its own KV cache (default 1)\n"
            "      --queue N           requests that may wait for a slot (default 16); beyond: 503\n"
            "                          with Retry-After\n"
            "  -t, --threads N         threads of each slot's forward pass (default: physical cores\n"
            "                          divided among the slots)\n"
            "      --api-key KEY       require 'Authorization: Bearer KEY' (401 otherwise) on every\n"
            "                          endpoint but / and /health; also read from FIELDLM_API_KEY\n"
            "      --max-body BYTES    largest request body (default 1048576); larger: 413\n"
            "      --timeout S         close a connection idle (or sending headers) for S seconds\n"
            "                          (default 30)\n"
            "      --max-connections N connections open at once (default 128)\n"
            "  -h, --help              show this help\n\n"
            "It prints 'fieldlm serve: listening on http://ADDR:PORT' on stderr when ready.\n"
            "SIGINT or SIGTERM: stop accepting, cancel the generations in flight, exit 0.\n"
            "Exit status: 0 after a signal, 1 on an error (model, address in use), 2 on a usage error.\n");
}

static int bad(const char *opt, const char *v, const char *want) {
    fprintf(stderr, "fieldlm serve: %s '%s': expected %s\n", opt, v, want);
    return EXIT_USAGE;
}

/* The model's name for /v1/models: the last path component, without .gguf. */
static char *model_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    size_t len = n - b;
    if (len > 5 && !strncmp(path + n - 5, ".gguf", 5)) len -= 5;
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, path + b, len);
        s[len] = 0;
    }
    return s;
}

static int cmd_serve(int argc, char **argv) {
    cli_model_args ma = {0};
    const char *host = "127.0.0.1", *api_key = getenv("FIELDLM_API_KEY");
    long port = 8080, ctx = FLM_UNSET_INT, parallel = 1, queue = 16, threads = FLM_UNSET_INT, timeout = 30,
         max_conn = 128, max_body = 1 << 20;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        int m = cli_model_arg(&ma, argc, argv, &i, "serve");
        if (m < 0) return EXIT_USAGE;
        if (m > 0) continue;
        if (cli_is(o, "-h", "--help")) { serve_help(stdout); return EXIT_OK; }
        struct { const char *a, *b; long *dst, lo, hi; const char *want; } nums[] = {
            {"--port", NULL, &port, 0, 65535, "a port in [0, 65535]"},
            {"-c", "--ctx", &ctx, 2, 1 << 24, "a context length >= 2"},
            {"--parallel", NULL, &parallel, 1, 64, "a slot count in [1, 64]"},
            {"--queue", NULL, &queue, 0, 100000, "a queue length in [0, 100000]"},
            {"-t", "--threads", &threads, 1, 1024, "a thread count >= 1"},
            {"--timeout", NULL, &timeout, 1, 86400, "seconds in [1, 86400]"},
            {"--max-connections", NULL, &max_conn, 1, 100000, "a count in [1, 100000]"},
            {"--max-body", NULL, &max_body, 1024, 1L << 30, "bytes in [1024, 1073741824]"},
        };
        int matched = 0;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !matched; k++) {
            if (!cli_is(o, nums[k].a, nums[k].b)) continue;
            matched = 1;
            if (!(v = cli_value(argc, argv, &i, "serve"))) return EXIT_USAGE;
            long x;
            if (!cli_parse_int(v, &x) || x < nums[k].lo || x > nums[k].hi) return bad(o, v, nums[k].want);
            *nums[k].dst = x;
        }
        if (matched) continue;
        if (!strcmp(o, "--host")) {
            if (!(host = cli_value(argc, argv, &i, "serve"))) return EXIT_USAGE;
        } else if (!strcmp(o, "--api-key")) {
            if (!(api_key = cli_value(argc, argv, &i, "serve"))) return EXIT_USAGE;
        } else {
            fprintf(stderr, "fieldlm serve: unknown option '%s' (see fieldlm serve --help)\n", o);
            return EXIT_USAGE;
        }
    }
    if (api_key && !*api_key) {
        fprintf(stderr, "fieldlm serve: the API key is empty (--api-key or FIELDLM_API_KEY)\n");
        return EXIT_USAGE;
    }
    char *bundled = NULL;
    if (!ma.model) {
        bundled = cli_find_bundled("models/kcc-advisor-q8_0.gguf");
        if (!bundled) bundled = cli_find_bundled("models/kcc-advisor");
        if (!bundled) {
            fprintf(stderr, "fieldlm serve: no -m MODEL given and the bundled model was not found\n");
            return EXIT_USAGE;
        }
        ma.model = bundled;
    }
    if (cli_adapter_hint(ma.model, true, "serve")) { free(bundled); return EXIT_USAGE; }

    /* SIGINT/SIGTERM are taken by sigwait below: block them in every thread started from here */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Every connection runs on its own thread; glibc would give each a malloc arena and keep
     * the freed memory of each, so RSS climbs in steps under many connections (measured by the
     * hostile suite: 73 -> 127 MiB, flat with 2 arenas). The environment's MALLOC_ARENA_MAX wins. */
    if (!getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);

    cli_lora_list l;
    if (!cli_lora_parse(&ma, &l, "serve")) { free(bundled); return EXIT_USAGE; }
    flm_open_options oo = {.lora = l.adapters, .n_lora = l.n, .weights = (flm_weights_mode)ma.weights};
    serve_server srv;
    memset(&srv, 0, sizeof srv);
    int rc = flm_open(ma.model, &oo, &srv.h);
    cli_lora_free(&l);
    if (rc) { cli_error("serve"); free(bundled); return EXIT_FAIL; }
    flm_info info;
    if (flm_model_info(srv.h, &info) == FLM_OK && info.warning) fprintf(stderr, "fieldlm serve: warning: %s\n", info.warning);
    char *name = model_name(ma.model);
    flm_gen_settings set;
    flm_gen_settings_init(&set);
    set.n_ctx = (int)ctx;
    if (threads == FLM_UNSET_INT) {
        flm_gen_settings d;
        flm_gen_settings_defaults(srv.h, &d);
        threads = d.n_threads / parallel > 0 ? d.n_threads / parallel : 1;
    }
    set.n_threads = (int)threads;
    srv.model_id = name ? name : "model";
    srv.created = (long long)time(NULL);
    srv.n_vocab = flm_vocab_size(srv.h);
    srv.api_key = api_key;
    srv.max_body = (size_t)max_body;
    srv.timeout_s = (unsigned)timeout;
    srv.max_connections = (unsigned)max_conn;
    pthread_mutex_init(&srv.workers_mu, NULL);
    pthread_cond_init(&srv.workers_cv, NULL);
    serve_metrics_init(&srv.metrics);
    int status = EXIT_FAIL;
    if ((rc = serve_slots_init(&srv.slots, srv.h, &set, (int)parallel, (int)queue))) {
        fprintf(stderr, "fieldlm serve: %s\n", flm_errmsg(srv.h)[0] ? flm_errmsg(srv.h) : flm_status_str(rc));
        goto out;
    }
    srv.n_ctx = flm_session_n_ctx(srv.slots.slot[0].session);
    char err[512];
    if (serve_http_start(&srv, host, (int)port, err, sizeof err)) {
        fprintf(stderr, "fieldlm serve: %s\n", err);
        goto out;
    }
    const char *shown = strchr(host, ':') ? "[" : "";
    fprintf(stderr, "fieldlm serve: model %s, %d slot%s of %d tokens, %ld thread%s each%s\n", srv.model_id,
            srv.slots.n, srv.slots.n == 1 ? "" : "s", srv.n_ctx, threads, threads == 1 ? "" : "s",
            api_key ? ", API key required" : "");
    fprintf(stderr, "fieldlm serve: listening on http://%s%s%s:%d\n", shown, host, *shown ? "]" : "", srv.port);
    fflush(stderr);
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {}
    fprintf(stderr, "fieldlm serve: %s: stopping (cancelling what is in flight)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&srv.stopping, 1);
    serve_http_quiesce(&srv);
    serve_slots_close(&srv.slots);
    serve_http_stop(&srv);
    serve_wait_workers(&srv);
    fprintf(stderr, "fieldlm serve: stopped\n");
    status = EXIT_OK;
out:
    serve_slots_free(&srv.slots);
    serve_metrics_free(&srv.metrics);
    flm_close(srv.h);
    free(name);
    free(bundled);
    return status;
}
CLI_COMMAND(serve, "serve", "serve the model over HTTP (OpenAI's API) with a chat page", 12, cmd_serve)

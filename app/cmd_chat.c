/* cmd_chat.c — `fieldlm chat`: interactive multi-turn chat on stdin/stdout. Each
 * turn re-renders the whole history through the chat template; the session reuses
 * the KV cache for the common token prefix. Lines starting with '/' are commands.
 * Ctrl-C stops the answer being generated; at the prompt it exits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_run.h"

static flm_session *volatile g_generating;
static volatile sig_atomic_t g_quit;

static void on_sigint(int sig) {
    (void)sig;
    flm_session *s = g_generating;
    if (s) flm_cancel(s);
    else g_quit = 1;
}


static void help(FILE *f) {
    fprintf(f,
            "usage: fieldlm chat [-m MODEL] [OPTIONS]\n\n"
            "Interactive chat: each line read from stdin is a user message; the answer is streamed\n"
            "to stdout followed by a newline. The whole conversation is re-rendered through the chat\n"
            "template every turn and the KV cache is reused for the unchanged prefix. Works with a\n"
            "pipe as well as a terminal (the '> ' prompt and the timings are shown on a terminal only).\n\n"
            "In the chat:\n"
            "  /system TEXT   set the system message (kept across /reset; '/system' alone removes it,\n"
            "                 so the template's default applies)\n"
            "  /reset         forget the conversation (and the KV cache)\n"
            "  /quit          leave (also end of input, or Ctrl-C at the prompt)\n"
            "  Ctrl-C while an answer is generated stops that answer, not the program.\n"
            "A system message the chat template leaves out of the prompt is named in a warning.\n"
            "Exit status: 0 when the chat ends (/quit, end of input, Ctrl-C at the prompt); 1 when\n"
            "the model cannot be opened; 2 on a usage error.\n"
            "When the conversation no longer fits the context, the turn is refused with an error:\n"
            "use /reset or a larger -c.\n\n"
            "options:\n");
    gen_cli_help(f);
    fprintf(f, "  -h, --help              this help\n");
}

typedef struct {
    char **role, **content; /* owned */
    size_t n, cap;
} history;

static bool hist_push(history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        char **r = realloc(h->role, cap * sizeof *r);
        if (!r) return false;
        h->role = r;
        char **c = realloc(h->content, cap * sizeof *c);
        if (!c) return false;
        h->content = c;
        h->cap = cap;
    }
    h->role[h->n] = strdup(role);
    h->content[h->n] = strdup(content);
    if (!h->role[h->n] || !h->content[h->n]) { free(h->role[h->n]); free(h->content[h->n]); return false; }
    h->n++;
    return true;
}

static void hist_pop(history *h) {
    if (!h->n) return;
    h->n--;
    free(h->role[h->n]);
    free(h->content[h->n]);
}

static void hist_clear(history *h) { while (h->n) hist_pop(h); }

static int cmd_chat(int argc, char **argv) {
    gen_cli_args g;
    gen_cli_init(&g);
    for (int i = 1; i < argc; i++) {
        int r = gen_cli_arg(&g, argc, argv, &i, "chat");
        if (r < 0) return EXIT_USAGE;
        if (r) continue;
        if (cli_is(argv[i], "-h", "--help")) { help(stdout); return EXIT_OK; }
        fprintf(stderr, "fieldlm chat: unknown option '%s'\n", argv[i]);
        help(stderr);
        return EXIT_USAGE;
    }
    int status = EXIT_FAIL;
    history h = {0};
    char *system = g.system ? strdup(g.system) : NULL;
    bool system_checked = false; /* warned, if need be, that the template drops the system message */
    char *line = NULL;
    size_t line_cap = 0;
    flm_handle *hd = gen_cli_open(&g, "chat");
    flm_session *s = hd ? gen_cli_new_session(&g, hd, "chat") : NULL;
    if (!s) goto done;
    bool tty = isatty(STDIN_FILENO), err_tty = isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C interrupts the read at the prompt */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (tty) {
        fprintf(stderr, "fieldlm chat on %s: ", g.ma.model);
        gen_cli_print_load(stderr, &g, hd);
        fputs("\n/system TEXT, /reset, /quit; Ctrl-C stops an answer\n", stderr);
    }
    status = EXIT_OK;
    for (;;) {
        if (tty) { fputs("> ", stdout); fflush(stdout); }
        errno = 0;
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) {
            if (tty) putchar('\n');
            break; /* end of input, or Ctrl-C at the prompt (EINTR) */
        }
        if (g_quit) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (line[0] == '/') {
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
            if (!strcmp(line, "/reset")) {
                hist_clear(&h);
                flm_session_reset(s);
                if (tty) fprintf(stderr, "(conversation reset)\n");
                continue;
            }
            if (!strcmp(line, "/system") || !strncmp(line, "/system ", 8)) {
                free(system);
                system = line[7] && line[8] ? strdup(line + 8) : NULL;
                system_checked = false;
                if (tty) fprintf(stderr, system ? "(system message set)\n" : "(system message removed)\n");
                continue;
            }
            fprintf(stderr, "fieldlm chat: unknown command '%s' (/system TEXT, /reset, /quit)\n", line);
            continue;
        }
        if (!hist_push(&h, "user", line)) { fprintf(stderr, "fieldlm chat: out of memory\n"); status = EXIT_FAIL; break; }
        /* messages = [system] + history */
        size_t nm = h.n + (system ? 1 : 0);
        flm_message *msgs = malloc(nm * sizeof *msgs);
        if (!msgs) { status = EXIT_FAIL; break; }
        size_t k = 0;
        if (system) msgs[k++] = (flm_message){"system", system};
        for (size_t j = 0; j < h.n; j++, k++) msgs[k] = (flm_message){h.role[j], h.content[j]};
        if (system && !system_checked) {
            gen_cli_warn_dropped(hd, msgs, nm, "chat");
            system_checked = true;
        }
        flm_result res;
        g_generating = s;
        int rc = flm_generate(s, msgs, nm, gen_cli_stream_stdout, NULL, &res);
        g_generating = NULL;
        free(msgs);
        if (rc) {
            cli_error("chat");
            hist_pop(&h); /* the turn is refused; the conversation stays as it was */
            if (rc == FLM_ERR_CONTEXT) fprintf(stderr, "fieldlm chat: use /reset to start over, or a larger -c\n");
            continue;
        }
        putchar('\n');
        fflush(stdout);
        if (res.stop_reason == FLM_STOP_CANCELLED) fprintf(stderr, "(stopped)\n");
        else if (res.stop_reason == FLM_STOP_CONTEXT) fprintf(stderr, "(the context is full: /reset to start over)\n");
        if (err_tty) gen_cli_print_timings(stderr, &res);
        if (!hist_push(&h, "assistant", res.text)) { fprintf(stderr, "fieldlm chat: out of memory\n"); status = EXIT_FAIL; break; }
        if (g_quit) break;
    }
done:
    hist_clear(&h);
    free(h.role);
    free(h.content);
    free(system);
    free(line);
    flm_session_free(s);
    flm_close(hd);
    gen_cli_free(&g);
    return status;
}
CLI_COMMAND(chat, "chat", "interactive multi-turn chat (chat template, KV cache reuse, /reset, /system)", 11, cmd_chat)

/* test_serve.c — `fieldlm serve` as a real process on loopback, driven over raw
 * sockets: start-up on a free port (--port 0), /health, /v1/models, /metrics,
 * tokenize ⇄ detokenize, the API key (401), the body limit (413), every kind of bad
 * request (400 with OpenAI's error object), greedy answers equal to `fieldlm run
 * --greedy`, a client hanging up mid-stream (the generation is cancelled), and
 * SIGTERM / SIGINT (exit 0, even with a generation in flight). The client tests
 * with the real `openai` npm package are in tests/serve/ (run from here). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

typedef struct {
    pid_t pid;
    int port;
    char err_path[512];
} server;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

/* Starts `fieldlm serve --port 0 ARGS...` (args: NULL-terminated) and waits for its
 * "listening on" line. Returns 0 on success. */
static int server_start(server *s, const char *name, const char *const *args) {
    memset(s, 0, sizeof *s);
    snprintf(s->err_path, sizeof s->err_path, "%s/%s.err", test_tmpdir(), name);
    const char *argv[32];
    int n = 0;
    argv[n++] = test_bin();
    argv[n++] = "serve";
    argv[n++] = "-m";
    argv[n++] = BUNDLED_MODEL;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "-t";
    argv[n++] = "1";
    for (int i = 0; args && args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(s->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 2); dup2(fd, 1); close(fd); }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (double t0 = now_s(); now_s() - t0 < 60;) {
        char *e = slurp(s->err_path);
        const char *l = e ? strstr(e, "listening on http://127.0.0.1:") : NULL;
        if (l) s->port = atoi(l + strlen("listening on http://127.0.0.1:"));
        free(e);
        if (s->port > 0) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) { s->pid = 0; return -1; }
        usleep(20000);
    }
    return -1;
}

/* Sends sig and waits (up to 20 s) for the exit status; -1 if it did not exit. */
static int server_stop(server *s, int sig) {
    if (!s->pid) return -1;
    kill(s->pid, sig);
    for (double t0 = now_s(); now_s() - t0 < 20;) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(20000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

typedef struct {
    int status;
    char *head; /* status line + headers */
    char *body; /* de-chunked */
    size_t body_len;
} reply;

static void reply_free(reply *r) { free(r->head); free(r->body); memset(r, 0, sizeof *r); }

/* Undoes chunked transfer encoding in place; returns the new length. */
static size_t dechunk(char *b, size_t n) {
    size_t in = 0, out = 0;
    while (in < n) {
        char *end;
        unsigned long len = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (!crlf || len == 0) break;
        in = (size_t)(crlf - b) + 2;
        if (in + len > n) len = n - in;
        memmove(b + out, b + in, len);
        out += len;
        in += len + 2;
        (void)end;
    }
    b[out] = 0;
    return out;
}

/* One request (Connection: close); reads the whole answer. extra: more header lines
 * ("Name: value\r\n"...) or NULL. Returns 0 when an answer came. */
static int http(int port, const char *method, const char *path, const char *extra, const char *body, size_t body_len,
                reply *r) {
    memset(r, 0, sizeof *r);
    int fd = connect_to(port);
    if (fd < 0) return -1;
    char head[2048];
    int hn = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s", method, path,
                      extra ? extra : "");
    if (body) hn += snprintf(head + hn, sizeof head - (size_t)hn, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
    if (send_all(fd, head, (size_t)hn)) { close(fd); return -1; }
    if (body) send_all(fd, body, body_len); /* may fail: the server answers 413/401 before reading a body */
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 > cap) buf = realloc(buf, cap *= 2);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 60000) <= 0) break;
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) { free(buf); return -1; }
    r->head = strndup(buf, (size_t)(sep - buf));
    size_t bl = n - (size_t)(sep + 4 - buf);
    r->body = malloc(bl + 1);
    memcpy(r->body, sep + 4, bl);
    r->body[bl] = 0;
    r->body_len = strstr(r->head, "chunked") ? dechunk(r->body, bl) : bl;
    free(buf);
    return 0;
}

static int post(int port, const char *path, const char *body, reply *r) {
    return http(port, "POST", path, NULL, body, strlen(body), r);
}

static int has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* The value of "key":"..." (first occurrence, JSON escapes \n \" \\ undone), malloc'ed. */
static char *json_str(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p) return NULL;
    p += strlen(pat);
    char *out = malloc(strlen(p) + 1);
    size_t n = 0;
    for (; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            out[n++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = 0;
    return out;
}

/* The metric's value in Prometheus text, or -1. */
static double metric(const char *text, const char *name) {
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = text ? strstr(text, pat) : NULL;
    return p ? atof(p + strlen(pat)) : -1;
}

#define Q "Stem borer in paddy (crop: Paddy (Dhan))"
#define SYS "You are an agricultural advisor for smallholder farmers. Answer briefly and practically."

TEST(serve_health_models_metrics_tokenize_and_sigterm) {
    server s;
    const char *args[] = {"-c", "512", NULL};
    REQUIRE(server_start(&s, "basic", args) == 0);
    reply r;
    REQUIRE(http(s.port, "GET", "/health", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 200 && has(r.body, "\"status\":\"ok\""));
    CHECK(has(r.head, "application/json"));
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/models", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 200 && has(r.body, "\"object\":\"list\"") && has(r.body, "\"id\":\"kcc-advisor\""));
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/models/kcc-advisor", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 200 && has(r.body, "\"object\":\"model\""));
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/models/gpt-4", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 404 && has(r.body, "model_not_found"));
    reply_free(&r);
    /* the chat page: one static HTML page, nothing fetched from elsewhere */
    REQUIRE(http(s.port, "GET", "/", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 200 && has(r.head, "text/html") && has(r.body, "/v1/chat/completions") && has(r.body, "id=\"stop\""));
    CHECK_MSG(!has(r.body, "http://") && !has(r.body, "https://"), "the page refers to another site");
    reply_free(&r);
    /* tokenize ⇄ detokenize: the round trip gives the text back, the ids match `fieldlm tokenize` */
    REQUIRE(post(s.port, "/tokenize", "{\"content\":\"Stem borer in paddy, \\u00e0 la r\\u00e9colte\"}", &r) == 0);
    CHECK(r.status == 200 && has(r.body, "\"tokens\":["));
    char cmd[512], *cli = NULL;
    snprintf(cmd, sizeof cmd, "printf 'Stem borer in paddy, \\303\\240 la r\\303\\251colte' | %s tokenize -m %s --json", test_bin(),
             BUNDLED_MODEL);
    REQUIRE(test_run(cmd, &cli, NULL) == 0);
    cli[strcspn(cli, "\n")] = 0;
    char want[1024];
    snprintf(want, sizeof want, "{\"tokens\":%s}", cli);
    CHECK_MSG(!strcmp(r.body, want), "server %s, CLI %s", r.body, cli);
    char det[1024];
    snprintf(det, sizeof det, "{\"tokens\":%s}", cli);
    free(cli);
    reply_free(&r);
    REQUIRE(post(s.port, "/detokenize", det, &r) == 0);
    CHECK_MSG(r.status == 200 && !strcmp(r.body, "{\"content\":\"Stem borer in paddy, \xc3\xa0 la r\xc3\xa9" "colte\"}"), "%s", r.body);
    reply_free(&r);
    REQUIRE(post(s.port, "/detokenize", "{\"tokens\":[1,-5]}", &r) == 0);
    CHECK(r.status == 400 && has(r.body, "tokens[1]"));
    reply_free(&r);
    /* metrics: Prometheus text with what happened so far */
    REQUIRE(http(s.port, "GET", "/metrics", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 200 && has(r.head, "text/plain"));
    CHECK(has(r.body, "fieldlm_requests_total{endpoint=\"/health\",code=\"200\"} 1\n"));
    CHECK(has(r.body, "fieldlm_requests_total{endpoint=\"/tokenize\",code=\"200\"} 1\n"));
    CHECK(has(r.body, "fieldlm_requests_total{endpoint=\"/detokenize\",code=\"400\"} 1\n"));
    CHECK(has(r.body, "# TYPE fieldlm_time_to_first_token_seconds histogram"));
    CHECK(has(r.body, "# TYPE fieldlm_decode_tokens_per_second histogram"));
    CHECK(metric(r.body, "fieldlm_queue_length") == 0 && metric(r.body, "fieldlm_slots") == 1);
    reply_free(&r);
    double t0 = now_s();
    CHECK_EQ_INT(server_stop(&s, SIGTERM), 0);
    CHECK(now_s() - t0 < 10);
    char *e = slurp(s.err_path);
    CHECK_MSG(has(e, "SIGTERM") && has(e, "stopped"), "%s", e ? e : "");
    free(e);
}

TEST(serve_refuses_bad_requests_with_openai_errors) {
    server s;
    const char *args[] = {"-c", "128", "--max-body", "4096", NULL};
    REQUIRE(server_start(&s, "bad", args) == 0);
    static const struct { const char *body, *needle; int status; } cases[] = {
        {"{\"messages\": [", "truncated", 400},
        {"not json", "not valid JSON", 400},
        {"[1,2]", "must be a JSON object", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]} x", "not valid JSON", 400},
        {"{}", "'messages' is required", 400},
        {"{\"messages\":\"hi\"}", "'messages' must be an array", 400},
        {"{\"messages\":[]}", "is empty", 400},
        {"{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "the roles are system, user and assistant", 400},
        {"{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "must be a string", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", "NUL", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}", "'temperature' must be a number", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":7}", "between 0 and 2", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":1e999}", "top_p", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0}", "'max_tokens' must be an integer", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2.5}", "max_tokens", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", "'n' must be 1", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[1]}", "'stop' must be a string", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":\"yes\"}", "true or false", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_logprobs\":3}", "needs 'logprobs'", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true,\"top_logprobs\":21}", "between 0 and 20", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"presence_penalty\":-3}", "presence_penalty", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\"}]}", "not supported", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"seed\":1.5}", "'seed' must be an integer", 400},
    };
    reply r;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        REQUIRE(post(s.port, "/v1/chat/completions", cases[i].body, &r) == 0);
        CHECK_MSG(r.status == cases[i].status && has(r.body, "{\"error\":{\"message\":") && has(r.body, cases[i].needle) &&
                      has(r.body, "\"type\":\"invalid_request_error\""),
                  "case %zu (%s): %d %s", i, cases[i].body, r.status, r.body);
        reply_free(&r);
    }
    /* invalid UTF-8 in a string */
    REQUIRE(post(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", &r) == 0);
    CHECK_MSG(r.status == 400 && has(r.body, "not valid JSON"), "%d %s", r.status, r.body);
    reply_free(&r);
    /* nested too deep */
    char deep[600];
    memset(deep, '[', 300);
    memset(deep + 300, ']', 300);
    REQUIRE(http(s.port, "POST", "/v1/chat/completions", NULL, deep, 600, &r) == 0);
    CHECK_MSG(r.status == 400 && has(r.body, "deeper"), "%d %s", r.status, r.body);
    reply_free(&r);
    /* a prompt longer than the context (-c 128) */
    char big[3500];
    int n = snprintf(big, sizeof big, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 300; i++) n += snprintf(big + n, sizeof big - (size_t)n, "rice ");
    snprintf(big + n, sizeof big - (size_t)n, "\"}]}");
    REQUIRE(post(s.port, "/v1/chat/completions", big, &r) == 0);
    CHECK_MSG(r.status == 400 && has(r.body, "context_length_exceeded") && has(r.body, "128 tokens"), "%d %s", r.status, r.body);
    reply_free(&r);
    /* the body limit (--max-body 4096): declared, and sent in chunks without a length */
    char *huge = malloc(10000);
    memset(huge, ' ', 10000);
    huge[0] = '{';
    huge[9999] = '}';
    REQUIRE(http(s.port, "POST", "/v1/chat/completions", NULL, huge, 10000, &r) == 0);
    CHECK_MSG(r.status == 413 && has(r.body, "4096 bytes"), "%d %s", r.status, r.body);
    reply_free(&r);
    free(huge);
    int fd = connect_to(s.port);
    REQUIRE(fd >= 0);
    const char *h = "POST /tokenize HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, h, strlen(h));
    char chunk[1100];
    memset(chunk, 'a', sizeof chunk);
    memcpy(chunk, "400\r\n", 5);
    memcpy(chunk + 5 + 0x400, "\r\n", 2);
    for (int i = 0; i < 8; i++) send_all(fd, chunk, 5 + 0x400 + 2);
    send_all(fd, "0\r\n\r\n", 5);
    char got[512] = {0};
    size_t gn = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (gn < sizeof got - 1 && poll(&p, 1, 10000) > 0) {
        ssize_t k = recv(fd, got + gn, sizeof got - 1 - gn, 0);
        if (k <= 0) break;
        gn += (size_t)k;
    }
    close(fd);
    CHECK_MSG(has(got, " 413 "), "chunked oversize body: %s", got);
    /* unknown URL, wrong method */
    REQUIRE(http(s.port, "GET", "/v2/nothing", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 404 && has(r.body, "unknown_url"));
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/chat/completions", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 405);
    reply_free(&r);
    /* still healthy, nothing stuck */
    REQUIRE(post(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}", &r) == 0);
    CHECK_MSG(r.status == 200 && has(r.body, "\"completion_tokens\":2"), "%d %s", r.status, r.body);
    reply_free(&r);
    CHECK_EQ_INT(server_stop(&s, SIGTERM), 0);
}

TEST(serve_api_key_is_required) {
    server s;
    const char *args[] = {"-c", "256", "--api-key", "s3cret-key", NULL};
    REQUIRE(server_start(&s, "key", args) == 0);
    reply r;
    REQUIRE(http(s.port, "GET", "/v1/models", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 401 && has(r.body, "invalid_api_key") && has(r.head, "WWW-Authenticate: Bearer"));
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/models", "Authorization: Bearer s3cret-kez\r\n", NULL, 0, &r) == 0);
    CHECK(r.status == 401);
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/models", "Authorization: Bearer s3cret-key-longer\r\n", NULL, 0, &r) == 0);
    CHECK(r.status == 401);
    reply_free(&r);
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}";
    REQUIRE(http(s.port, "POST", "/v1/chat/completions", NULL, body, strlen(body), &r) == 0);
    CHECK(r.status == 401);
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/metrics", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 401);
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/v1/models", "Authorization: Bearer s3cret-key\r\n", NULL, 0, &r) == 0);
    CHECK(r.status == 200);
    reply_free(&r);
    REQUIRE(http(s.port, "GET", "/health", NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 200);
    reply_free(&r);
    CHECK_EQ_INT(server_stop(&s, SIGINT), 0);
}

TEST(serve_greedy_answer_equals_run_and_stream) {
    server s;
    const char *args[] = {"-c", "512", NULL};
    REQUIRE(server_start(&s, "greedy", args) == 0);
    char cmd[1024], *want = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m %s --greedy -n 40 -t 1 --system '%s' -p '%s'", test_bin(), BUNDLED_MODEL, SYS, Q);
    REQUIRE(test_run(cmd, &want, NULL) == 0);
    size_t wl = strlen(want);
    if (wl && want[wl - 1] == '\n') want[--wl] = 0; /* run ends the answer with a newline */
    const char *body = "{\"messages\":[{\"role\":\"system\",\"content\":\"" SYS "\"},{\"role\":\"user\",\"content\":\"" Q
                       "\"}],\"temperature\":0,\"max_tokens\":40}";
    reply r;
    REQUIRE(post(s.port, "/v1/chat/completions", body, &r) == 0);
    char *got = json_str(r.body, "content");
    CHECK_MSG(r.status == 200 && got && !strcmp(got, want), "server '%s'\nrun    '%s'", got ? got : r.body, want);
    free(got);
    reply_free(&r);
    /* streamed: the deltas joined are the same text; usage with include_usage */
    const char *sbody = "{\"messages\":[{\"role\":\"system\",\"content\":\"" SYS "\"},{\"role\":\"user\",\"content\":\"" Q
                        "\"}],\"temperature\":0,\"max_tokens\":40,\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    REQUIRE(post(s.port, "/v1/chat/completions", sbody, &r) == 0);
    CHECK(r.status == 200 && has(r.head, "text/event-stream"));
    char joined[4096] = {0};
    for (const char *p = r.body; (p = strstr(p, "\"content\":\"")); p++) {
        char *piece = json_str(p, "content");
        strncat(joined, piece, sizeof joined - strlen(joined) - 1);
        free(piece);
    }
    CHECK_MSG(!strcmp(joined, want), "stream '%s'\nrun    '%s'", joined, want);
    CHECK(has(r.body, "\"usage\":{\"prompt_tokens\":"));
    const char *end = r.body + r.body_len;
    CHECK_MSG(r.body_len > 14 && !strcmp(end - 14, "data: [DONE]\n\n"), "the stream does not end with [DONE]");
    reply_free(&r);
    free(want);
    CHECK_EQ_INT(server_stop(&s, SIGTERM), 0);
}

TEST(serve_hangup_mid_stream_cancels_and_sigterm_in_flight) {
    server s;
    const char *args[] = {"-c", "2048", "--queue", "0", NULL};
    REQUIRE(server_start(&s, "hangup", args) == 0);
    /* a long generation (no template, sampling, 1500 tokens), abandoned after the first bytes */
    const char *body = "{\"prompt\":\"Farmer's notebook, day 1:\",\"max_tokens\":1500,\"temperature\":1,\"seed\":3,"
                       "\"stream\":true}";
    int fd = connect_to(s.port);
    REQUIRE(fd >= 0);
    char head[512];
    int hn = snprintf(head, sizeof head, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    REQUIRE(send_all(fd, head, (size_t)hn) == 0);
    char buf[4096];
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got < 600 && poll(&p, 1, 20000) > 0) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) break;
        got += (size_t)k;
    }
    CHECK(got >= 600);
    /* the only slot is busy and no request may wait (--queue 0): 503 with Retry-After */
    reply r;
    REQUIRE(post(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r) == 0);
    CHECK_MSG(r.status == 503 && has(r.head, "Retry-After: 1") && has(r.body, "server_busy"), "%d %s", r.status, r.body);
    reply_free(&r);
    close(fd);
    /* the slot is free again at once (well before 1500 tokens), counted as cancelled */
    double t0 = now_s(), busy = -1, cancelled = -1;
    while (now_s() - t0 < 5) {
        if (http(s.port, "GET", "/metrics", NULL, NULL, 0, &r) == 0) {
            busy = metric(r.body, "fieldlm_slots_busy");
            cancelled = metric(r.body, "fieldlm_generations_cancelled_total");
            reply_free(&r);
            if (busy == 0 && cancelled == 1) break;
        }
        usleep(20000);
    }
    CHECK_MSG(busy == 0 && cancelled == 1, "slots busy %g, cancelled %g after the hang-up", busy, cancelled);
    REQUIRE(http(s.port, "GET", "/metrics", NULL, NULL, 0, &r) == 0);
    double generated = metric(r.body, "fieldlm_generated_tokens_total");
    CHECK_MSG(generated > 0 && generated < 1500, "generated %g", generated);
    CHECK(metric(r.body, "fieldlm_queue_rejected_total") == 1);
    reply_free(&r);
    /* the next request works at once */
    t0 = now_s();
    REQUIRE(post(s.port, "/v1/completions", "{\"prompt\":\"Rice\",\"max_tokens\":3,\"echo\":true}", &r) == 0);
    CHECK_MSG(r.status == 200 && has(r.body, "\"object\":\"text_completion\"") && has(r.body, "\"finish_reason\":\"length\"") &&
                  has(r.body, "\"text\":\"Rice"),
              "%d %s", r.status, r.body);
    reply_free(&r);
    /* SIGTERM while a stream runs: the generation is cancelled, the server exits 0 */
    fd = connect_to(s.port);
    REQUIRE(fd >= 0);
    REQUIRE(send_all(fd, head, (size_t)hn) == 0);
    got = 0;
    while (got < 300 && poll(&p, 1, 20000) > 0) {
        p.fd = fd;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) break;
        got += (size_t)k;
    }
    t0 = now_s();
    CHECK_EQ_INT(server_stop(&s, SIGTERM), 0);
    CHECK_MSG(now_s() - t0 < 5, "exit took %.1f s", now_s() - t0);
    close(fd);
}

/* The client tests with the real `openai` npm package (tests/serve/, node:test). */
TEST(serve_openai_client_node_tests) {
    int have = test_run("test -d tests/serve/node_modules/openai && command -v node >/dev/null", NULL, NULL) == 0;
    if (!have) {
        const char *req = getenv("FLM_SERVE_REQUIRED");
        CHECK_MSG(!(req && !strcmp(req, "1")), "the openai npm package is required (FLM_SERVE_REQUIRED=1): run "
                                               "'npm ci' in tests/serve");
        fprintf(stderr, "  SKIP: tests/serve/node_modules missing (run 'npm ci' in tests/serve for the openai client tests)\n");
        return;
    }
    char cmd[1024], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "FLM_BIN='%s' node --test tests/serve/*.test.mjs 2>&1", test_bin());
    int rc = test_run(cmd, &out, &err);
    CHECK_MSG(rc == 0, "node --test tests/serve failed:\n%s", out ? out : "");
    CHECK_MSG(has(out, "# fail 0") && !has(out, "# pass 0\n"), "%s", out ? out : "");
    free(out);
    free(err);
}

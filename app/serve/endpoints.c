/* endpoints.c — what each URL does: chat completions and completions (whole or
 * streamed as SSE, on a slot chosen by longest common prefix), models, health,
 * tokenize / detokenize, metrics and the chat page. Knows nothing of HTTP
 * libraries: requests come as serve_http_req, answers go as serve_reply.
 *
 * A streamed answer is generated on its own thread into a buffer the HTTP glue reads
 * (serve_stream_read); the buffer and the generation share one object with two
 * references (the generating thread and the reader), so either side may finish
 * first. A client that hangs up is noticed at the next token (its socket is polled
 * for a hang-up, and the glue releases the stream when a write fails): the
 * generation is cancelled and the slot freed at once. */
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "request.h"
#include "response.h"
#include "server.h"

struct serve_stream {
    serve_server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    /* SSE bytes not yet read: buf[pos..len) */
    char *buf;
    size_t len, pos, cap;
    int done;              /* nothing more will be written */
    int detached;          /* the client is gone (or the reply was dropped) */
    flm_session *running;  /* while generating: what a detach cancels */
    /* the generation */
    serve_request req;
    int streaming;
    char *prompt;
    int32_t *ids;
    int n_ids;
    serve_slot *slot;
    int fd;
    char id[48];
    serve_meta meta;
    char *text;            /* whole answers: the text so far */
    size_t text_len, text_cap;
    json_object *lp;       /* log-prob entries (whole answers: all; streams: not yet sent) */
    int client_gone;
    int oom;
    int rc;
    flm_result res;
};

typedef struct serve_stream job;

/* ---- replies ---- */

static void reply_json(serve_reply *out, int status, void *obj) {
    out->status = status;
    out->content_type = "application/json";
    out->body = serve_json_text(obj, &out->len);
    if (!out->body) {
        out->status = 500;
        out->static_body = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        out->len = strlen(out->static_body);
    }
}

void serve_reply_error(serve_reply *out, int status, const char *message, const char *type, const char *param,
                       const char *code) {
    if (!type) type = status >= 500 ? "server_error" : "invalid_request_error";
    reply_json(out, status, serve_error_json(message, type, param, code));
}

static void reply_request_error(serve_reply *out, const serve_error *e) {
    serve_reply_error(out, e->status ? e->status : 400, e->message, e->type, e->param, e->code);
}

/* ---- jobs ---- */

static job *job_new(serve_server *srv, int fd) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->srv = srv;
    j->fd = fd;
    j->refs = 1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    return j;
}

static void job_unref(job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    serve_request_free(&j->req);
    free(j->prompt);
    free(j->ids);
    free(j->text);
    free(j->buf);
    json_object_put(j->lp);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Appends an SSE event (obj released; NULL: [DONE]) for the reader. */
static void emit(job *j, void *obj) {
    size_t n;
    char *ev = serve_sse_event(obj, &n);
    pthread_mutex_lock(&j->mu);
    if (!ev) j->oom = 1;
    else if (!j->detached) {
        if (j->pos) { /* drop what was read */
            memmove(j->buf, j->buf + j->pos, j->len - j->pos);
            j->len -= j->pos;
            j->pos = 0;
        }
        if (j->len + n > j->cap) {
            size_t cap = (j->len + n) * 2 + 4096;
            char *b = realloc(j->buf, cap);
            if (!b) j->oom = 1;
            else { j->buf = b; j->cap = cap; }
        }
        if (j->len + n <= j->cap) {
            memcpy(j->buf + j->len, ev, n);
            j->len += n;
        }
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    free(ev);
}

ssize_t serve_stream_read(serve_stream *j, char *buf, size_t max) {
    pthread_mutex_lock(&j->mu);
    while (j->pos == j->len && !j->done) pthread_cond_wait(&j->cv, &j->mu);
    ssize_t n = -1;
    if (j->pos < j->len) {
        size_t k = j->len - j->pos < max ? j->len - j->pos : max;
        memcpy(buf, j->buf + j->pos, k);
        j->pos += k;
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

void serve_stream_release(serve_stream *j) {
    pthread_mutex_lock(&j->mu);
    j->detached = 1;
    if (j->running) flm_cancel(j->running);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

void serve_wait_workers(serve_server *srv) {
    pthread_mutex_lock(&srv->workers_mu);
    while (srv->workers > 0) pthread_cond_wait(&srv->workers_cv, &srv->workers_mu);
    pthread_mutex_unlock(&srv->workers_mu);
}

/* True when the client hung up (its socket reports a hang-up, or the glue let go). */
static int client_gone(job *j) {
    if (j->streaming) {
        pthread_mutex_lock(&j->mu);
        int d = j->detached;
        pthread_mutex_unlock(&j->mu);
        if (d) return 1;
    }
    if (j->fd < 0) return 0;
    struct pollfd p = {.fd = j->fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void add_logprob(job *j, int32_t token) {
    flm_token_logprob ch, top[20];
    int n = 0;
    flm_handle *h = j->srv->h;
    if (flm_token_logprobs(j->slot->session, &ch, top, j->req.top_logprobs, &n)) return;
    char *texts[21] = {0};
    size_t lens[21] = {0};
    double lps[20];
    flm_detokenize(h, &token, 1, &texts[20], &lens[20]);
    for (int i = 0; i < n; i++) {
        flm_detokenize(h, &top[i].token, 1, &texts[i], &lens[i]);
        lps[i] = top[i].logprob;
    }
    const char *shown[20];
    for (int i = 0; i < n; i++) shown[i] = texts[i] ? texts[i] : "";
    if (!j->lp) j->lp = json_object_new_array();
    json_object_array_add(j->lp, serve_logprob_entry(texts[20] ? texts[20] : "", texts[20] ? lens[20] : 0, ch.logprob,
                                                     shown, lens, lps, n));
    for (int i = 0; i < 21; i++) flm_free(texts[i]);
}

/* Appends to a whole answer's text; non-zero when out of memory. */
static int on_text(job *j, const char *piece, size_t len) {
    if (j->text_len + len + 1 > j->text_cap) {
        size_t cap = (j->text_len + len + 1) * 2;
        char *t = realloc(j->text, cap);
        if (!t) { j->oom = 1; return 1; }
        j->text = t;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, piece, len);
    j->text_len += len;
    j->text[j->text_len] = 0;
    return 0;
}

static int on_token(void *user, const char *piece, size_t len, int32_t token) {
    job *j = user;
    if (atomic_load(&j->srv->stopping)) return 1;
    if (client_gone(j)) { j->client_gone = 1; return 1; }
    if (j->req.logprobs && token >= 0) add_logprob(j, token);
    if (j->streaming) {
        if (len > 0) {
            emit(j, serve_chunk_json(&j->meta, NULL, piece, len, NULL, j->lp));
            j->lp = NULL;
        }
    } else if (len > 0 && on_text(j, piece, len)) {
        return 1;
    }
    return 0;
}

static const char *finish_reason(flm_stop_reason r) {
    return r == FLM_STOP_LENGTH || r == FLM_STOP_CONTEXT ? "length" : "stop";
}

/* Runs the generation on the job's slot, then gives the slot back. */
static void generate(job *j) {
    serve_server *srv = j->srv;
    flm_session *s = j->slot->session;
    pthread_mutex_lock(&j->mu);
    j->running = s;
    pthread_mutex_unlock(&j->mu);
    if (client_gone(j)) { j->client_gone = 1; j->rc = FLM_ERR_CANCELLED; }
    else j->rc = flm_generate_text(s, j->prompt, on_token, j, &j->res);
    pthread_mutex_lock(&j->mu);
    j->running = NULL;
    pthread_mutex_unlock(&j->mu);
    int32_t *cached = NULL;
    int n = 0;
    if (!j->rc && (cached = malloc(((size_t)j->res.n_prompt_ids + (size_t)j->res.n_ids) * sizeof *cached + 1))) {
        memcpy(cached, j->res.prompt_ids, (size_t)j->res.n_prompt_ids * sizeof *cached);
        if (j->res.n_ids) memcpy(cached + j->res.n_prompt_ids, j->res.ids, (size_t)j->res.n_ids * sizeof *cached);
        n = j->res.n_prompt_ids + j->res.n_ids;
    }
    /* the result's borrowed arrays die with the next generation on the slot: keep what is needed */
    j->res.prompt_ids = j->res.ids = NULL;
    j->res.text = NULL;
    const flm_timings *t = &j->res.timings;
    int cancelled = j->rc == FLM_ERR_CANCELLED || (!j->rc && j->res.stop_reason == FLM_STOP_CANCELLED);
    serve_metrics_generation(&srv->metrics, t->prompt_tokens, t->reused_tokens, t->generated_tokens,
                             t->generated_tokens > 0 ? t->ttft_s : -1, t->decode_tok_s, cancelled);
    serve_slots_release(&srv->slots, j->slot, cached, n);
    j->slot = NULL;
    free(cached);
}

static void *stream_worker(void *arg) {
    job *j = arg;
    serve_server *srv = j->srv;
    generate(j);
    int cancelled = j->rc == FLM_ERR_CANCELLED || (!j->rc && j->res.stop_reason == FLM_STOP_CANCELLED);
    if (j->rc && !cancelled) {
        char msg[600];
        snprintf(msg, sizeof msg, "generation failed: %s", flm_errmsg(NULL));
        emit(j, serve_error_json(msg, "server_error", NULL, NULL));
    } else if (cancelled && atomic_load(&srv->stopping)) {
        emit(j, serve_error_json("the server is shutting down: the generation was cancelled", "server_error", NULL,
                                 "server_shutting_down"));
    } else if (!cancelled) {
        emit(j, serve_chunk_json(&j->meta, NULL, NULL, 0, finish_reason(j->res.stop_reason), j->lp));
        j->lp = NULL;
        if (j->req.include_usage)
            emit(j, serve_usage_chunk_json(&j->meta, serve_usage_json(j->res.timings.prompt_tokens,
                                                                       j->res.timings.generated_tokens,
                                                                       j->res.timings.reused_tokens)));
    }
    emit(j, NULL);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
    pthread_mutex_lock(&srv->workers_mu);
    if (--srv->workers == 0) pthread_cond_broadcast(&srv->workers_cv);
    pthread_mutex_unlock(&srv->workers_mu);
    return NULL;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t fresh_random(serve_server *srv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix64(((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^
                 mix64(atomic_fetch_add(&srv->seed_counter, 1)));
}

/* Chat completions and completions: validate, render, count, queue, generate. */
static void completion(serve_server *srv, const serve_http_req *rq, serve_kind kind, serve_reply *out) {
    job *j = job_new(srv, rq->fd);
    if (!j) { serve_reply_error(out, 500, "out of memory", NULL, NULL, NULL); return; }
    serve_error e;
    if (serve_request_parse(rq->body, rq->len, kind, &j->req, &e)) {
        reply_request_error(out, &e);
        job_unref(j);
        return;
    }
    flm_handle *h = srv->h;
    if (kind == SERVE_CHAT) {
        if (flm_render(h, j->req.msgs, j->req.n_msgs, 1, &j->prompt)) {
            char msg[600];
            snprintf(msg, sizeof msg, "the messages do not render through the model's chat template: %s", flm_errmsg(NULL));
            serve_reply_error(out, 400, msg, NULL, "messages", "invalid_value");
            job_unref(j);
            return;
        }
    } else if (!(j->prompt = strdup(j->req.prompt))) {
        serve_reply_error(out, 500, "out of memory", NULL, NULL, NULL);
        job_unref(j);
        return;
    }
    size_t need = 0, plen = strlen(j->prompt);
    int rc = flm_tokenize(h, j->prompt, plen, 0, NULL, 0, &need);
    if (rc == FLM_ERR_BUFFER || (rc == FLM_OK && need > 0)) {
        if (need >= (size_t)srv->n_ctx) {
            char msg[300];
            snprintf(msg, sizeof msg, "this model's context (-c) is %d tokens, but the %s are %zu tokens: shorten them "
                     "(the prompt and at least one new token must fit)", srv->n_ctx,
                     kind == SERVE_CHAT ? "messages" : "prompt", need);
            serve_reply_error(out, 400, msg, NULL, kind == SERVE_CHAT ? "messages" : "prompt", "context_length_exceeded");
            job_unref(j);
            return;
        }
        if (!(j->ids = malloc(need * sizeof *j->ids))) rc = FLM_ERR_NOMEM;
        else rc = flm_tokenize(h, j->prompt, plen, 0, j->ids, need, &need);
        j->n_ids = (int)need;
    } else if (rc == FLM_OK) {
        serve_reply_error(out, 400, "the prompt is empty (0 tokens)", NULL, kind == SERVE_CHAT ? "messages" : "prompt",
                          "invalid_value");
        job_unref(j);
        return;
    }
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "the prompt could not be tokenized: %s", flm_errmsg(NULL));
        serve_reply_error(out, 400, msg, NULL, kind == SERVE_CHAT ? "messages" : "prompt", NULL);
        job_unref(j);
        return;
    }
    if (!j->req.have_seed) j->req.set.seed = fresh_random(srv);
    snprintf(j->id, sizeof j->id, "%s%016llx", kind == SERVE_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)fresh_random(srv));
    j->meta = (serve_meta){.kind = kind, .id = j->id, .created = (long long)time(NULL), .model = srv->model_id};
    j->streaming = j->req.stream;
    if (kind == SERVE_COMPLETION && j->req.echo && !j->streaming) /* the answer starts with the prompt */
        on_text(j, j->prompt, strlen(j->prompt));

    int why;
    j->slot = serve_slots_acquire(&srv->slots, j->ids, j->n_ids, &why);
    if (!j->slot) {
        if (why == SERVE_QUEUE_FULL) {
            serve_metrics_queue_full(&srv->metrics);
            serve_reply_error(out, 503, "the server is busy: every slot is generating and the queue is full; retry later",
                              "server_error", NULL, "server_busy");
            out->retry_after = 1;
        } else {
            serve_reply_error(out, 503, "the server is shutting down", "server_error", NULL, "server_shutting_down");
        }
        job_unref(j);
        return;
    }
    if (flm_session_configure(j->slot->session, &j->req.set)) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", flm_session_errmsg(j->slot->session));
        serve_slots_release(&srv->slots, j->slot, NULL, 0);
        j->slot = NULL;
        serve_reply_error(out, 400, msg, NULL, NULL, "invalid_value");
        job_unref(j);
        return;
    }
    if (j->streaming) {
        if (kind == SERVE_CHAT) emit(j, serve_chunk_json(&j->meta, "assistant", "", 0, NULL, NULL));
        else if (j->req.echo) emit(j, serve_chunk_json(&j->meta, NULL, j->prompt, strlen(j->prompt), NULL, NULL));
        j->refs = 2; /* the worker's and the reader's */
        pthread_mutex_lock(&srv->workers_mu);
        srv->workers++;
        pthread_mutex_unlock(&srv->workers_mu);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int prc = pthread_create(&t, &at, stream_worker, j);
        pthread_attr_destroy(&at);
        if (prc) {
            pthread_mutex_lock(&srv->workers_mu);
            srv->workers--;
            pthread_mutex_unlock(&srv->workers_mu);
            serve_slots_release(&srv->slots, j->slot, NULL, 0);
            j->slot = NULL;
            j->refs = 1;
            job_unref(j);
            serve_reply_error(out, 503, "the server cannot start another generation thread now; retry later",
                              "server_error", NULL, "server_busy");
            out->retry_after = 1;
            return;
        }
        out->status = 200;
        out->content_type = "text/event-stream";
        out->stream = j;
        return;
    }
    generate(j);
    int cancelled = j->rc == FLM_ERR_CANCELLED || (!j->rc && j->res.stop_reason == FLM_STOP_CANCELLED);
    if (j->client_gone) out->close = 1;
    else if (cancelled && atomic_load(&srv->stopping))
        serve_reply_error(out, 503, "the server is shutting down: the generation was cancelled", "server_error", NULL,
                          "server_shutting_down");
    else if (j->oom) serve_reply_error(out, 500, "out of memory", NULL, NULL, NULL);
    else if (j->rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "generation failed: %s", flm_errmsg(NULL));
        serve_reply_error(out, 500, msg, NULL, NULL, NULL);
    } else {
        void *usage = serve_usage_json(j->res.timings.prompt_tokens, j->res.timings.generated_tokens,
                                       j->res.timings.reused_tokens);
        void *lp = NULL;
        if (j->req.logprobs) { lp = j->lp ? j->lp : json_object_new_array(); j->lp = NULL; }
        reply_json(out, 200, serve_completion_json(&j->meta, j->text ? j->text : "", j->text_len,
                                                   finish_reason(j->res.stop_reason), lp, usage));
    }
    job_unref(j);
}

/* ---- the other endpoints ---- */

static void models(serve_server *srv, serve_reply *out, int one) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "id", json_object_new_string(srv->model_id));
    json_object_object_add(m, "object", json_object_new_string("model"));
    json_object_object_add(m, "created", json_object_new_int64(srv->created));
    json_object_object_add(m, "owned_by", json_object_new_string("fieldlm"));
    json_object *meta = json_object_new_object();
    json_object_object_add(meta, "n_ctx", json_object_new_int(srv->n_ctx));
    json_object_object_add(meta, "n_ctx_train", json_object_new_int(flm_max_context(srv->h)));
    json_object_object_add(meta, "n_vocab", json_object_new_int(srv->n_vocab));
    json_object_object_add(meta, "slots", json_object_new_int(srv->slots.n));
    json_object_object_add(m, "meta", meta);
    if (one) { reply_json(out, 200, m); return; }
    json_object *o = json_object_new_object(), *data = json_object_new_array();
    json_object_array_add(data, m);
    json_object_object_add(o, "object", json_object_new_string("list"));
    json_object_object_add(o, "data", data);
    reply_json(out, 200, o);
}

static void health(serve_server *srv, serve_reply *out) {
    int busy, waiting;
    serve_slots_counts(&srv->slots, &busy, &waiting);
    json_object *o = json_object_new_object();
    int stopping = atomic_load(&srv->stopping);
    json_object_object_add(o, "status", json_object_new_string(stopping ? "shutting down" : "ok"));
    json_object_object_add(o, "slots_idle", json_object_new_int(srv->slots.n - busy));
    json_object_object_add(o, "slots_processing", json_object_new_int(busy));
    json_object_object_add(o, "queue_length", json_object_new_int(waiting));
    reply_json(out, stopping ? 503 : 200, o);
}

static void tokenize(serve_server *srv, const serve_http_req *rq, serve_reply *out) {
    serve_error e;
    json_object *o = serve_json_parse_object(rq->body, rq->len, &e), *v = NULL;
    if (!o) { reply_request_error(out, &e); return; }
    int pieces = 0;
    if (!json_object_object_get_ex(o, "content", &v) || !json_object_is_type(v, json_type_string)) {
        serve_reply_error(out, 400, "'content' must be a string: the text to tokenize", NULL, "content", "invalid_type");
        goto done;
    }
    json_object *wp;
    if (json_object_object_get_ex(o, "with_pieces", &wp) && !json_object_is_type(wp, json_type_null)) {
        if (!json_object_is_type(wp, json_type_boolean)) {
            serve_reply_error(out, 400, "'with_pieces' must be true or false", NULL, "with_pieces", "invalid_type");
            goto done;
        }
        pieces = json_object_get_boolean(wp);
    }
    const char *text = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v), need = 0;
    int32_t *ids = NULL;
    int rc = flm_tokenize(srv->h, text, len, 0, NULL, 0, &need);
    if (rc == FLM_ERR_BUFFER) {
        if (!(ids = malloc(need * sizeof *ids))) rc = FLM_ERR_NOMEM;
        else rc = flm_tokenize(srv->h, text, len, 0, ids, need, &need);
    }
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "'content' could not be tokenized: %s", flm_errmsg(NULL));
        serve_reply_error(out, 400, msg, NULL, "content", "invalid_value");
        free(ids);
        goto done;
    }
    json_object *r = json_object_new_object(), *arr = json_object_new_array_ext((int)need);
    for (size_t i = 0; i < need; i++) {
        if (!pieces) { json_object_array_add(arr, json_object_new_int(ids[i])); continue; }
        char *t = NULL;
        size_t tl = 0;
        json_object *p = json_object_new_object();
        json_object_object_add(p, "id", json_object_new_int(ids[i]));
        if (flm_detokenize(srv->h, &ids[i], 1, &t, &tl) == FLM_OK)
            json_object_object_add(p, "piece", json_object_new_string_len(t, (int)tl));
        flm_free(t);
        json_object_array_add(arr, p);
    }
    json_object_object_add(r, "tokens", arr);
    free(ids);
    reply_json(out, 200, r);
done:
    json_object_put(o);
}

static void detokenize(serve_server *srv, const serve_http_req *rq, serve_reply *out) {
    serve_error e;
    json_object *o = serve_json_parse_object(rq->body, rq->len, &e), *v = NULL;
    if (!o) { reply_request_error(out, &e); return; }
    if (!json_object_object_get_ex(o, "tokens", &v) || !json_object_is_type(v, json_type_array)) {
        serve_reply_error(out, 400, "'tokens' must be an array of token ids", NULL, "tokens", "invalid_type");
        json_object_put(o);
        return;
    }
    size_t n = json_object_array_length(v);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) { serve_reply_error(out, 500, "out of memory", NULL, NULL, NULL); json_object_put(o); return; }
    for (size_t i = 0; i < n; i++) {
        json_object *x = json_object_array_get_idx(v, i);
        int64_t id = json_object_is_type(x, json_type_int) ? json_object_get_int64(x) : -1;
        if (id < 0 || id >= srv->n_vocab) {
            char msg[200];
            snprintf(msg, sizeof msg, "'tokens[%zu]' must be a token id in [0, %d)", i, srv->n_vocab);
            serve_reply_error(out, 400, msg, NULL, "tokens", "invalid_value");
            free(ids);
            json_object_put(o);
            return;
        }
        ids[i] = (int32_t)id;
    }
    char *text = NULL;
    size_t tl = 0;
    if (flm_detokenize(srv->h, ids, n, &text, &tl)) {
        char msg[600];
        snprintf(msg, sizeof msg, "'tokens' could not be decoded: %s", flm_errmsg(NULL));
        serve_reply_error(out, 400, msg, NULL, "tokens", "invalid_value");
    } else {
        json_object *r = json_object_new_object();
        json_object_object_add(r, "content", json_object_new_string_len(text ? text : "", (int)tl));
        reply_json(out, 200, r);
    }
    flm_free(text);
    free(ids);
    json_object_put(o);
}

static void metrics(serve_server *srv, serve_reply *out) {
    int busy, waiting;
    serve_slots_counts(&srv->slots, &busy, &waiting);
    char *t = serve_metrics_text(&srv->metrics, busy, srv->slots.n, waiting, srv->slots.queue_max);
    if (!t) { serve_reply_error(out, 500, "out of memory", NULL, NULL, NULL); return; }
    out->status = 200;
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    out->body = t;
    out->len = strlen(t);
}

void serve_handle(serve_server *srv, const serve_http_req *rq, serve_reply *out) {
    memset(out, 0, sizeof *out);
    const char *p = rq->path;
    int get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD"), post = !strcmp(rq->method, "POST");
    struct { const char *path; int post; } routes[] = {
        {"/v1/chat/completions", 1}, {"/v1/completions", 1}, {"/tokenize", 1}, {"/detokenize", 1},
        {"/v1/models", 0}, {"/health", 0}, {"/metrics", 0}, {"/", 0}, {"/index.html", 0},
    };
    int known = -1;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(p, routes[i].path)) known = (int)i;
    int model_path = !strncmp(p, "/v1/models/", 11);
    if (known < 0 && !model_path) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown URL: %.8s %.200s (the endpoints are listed in docs/SERVER.md)", rq->method, p);
        serve_reply_error(out, 404, msg, NULL, NULL, "unknown_url");
        return;
    }
    if ((known >= 0 && routes[known].post && !post) || ((model_path || (known >= 0 && !routes[known].post)) && !get)) {
        char msg[300];
        snprintf(msg, sizeof msg, "%.8s is not allowed on %.200s (use %s)", rq->method, p,
                 known >= 0 && routes[known].post ? "POST" : "GET");
        serve_reply_error(out, 405, msg, NULL, NULL, "method_not_allowed");
        return;
    }
    if (model_path) {
        if (strcmp(p + 11, srv->model_id)) {
            char msg[300];
            snprintf(msg, sizeof msg, "the model '%.200s' does not exist here (this server has '%s')", p + 11, srv->model_id);
            serve_reply_error(out, 404, msg, NULL, "model", "model_not_found");
            return;
        }
        models(srv, out, 1);
        return;
    }
    switch (known) {
    case 0: completion(srv, rq, SERVE_CHAT, out); break;
    case 1: completion(srv, rq, SERVE_COMPLETION, out); break;
    case 2: tokenize(srv, rq, out); break;
    case 3: detokenize(srv, rq, out); break;
    case 4: models(srv, out, 0); break;
    case 5: health(srv, out); break;
    case 6: metrics(srv, out); break;
    default:
        out->status = 200;
        out->content_type = "text/html; charset=utf-8";
        out->static_body = (const char *)serve_page_html;
        out->len = serve_page_html_len;
        break;
    }
}

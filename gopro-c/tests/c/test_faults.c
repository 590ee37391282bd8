/* The C client through `gopro proxy` faults in front of `gopro serve`:
 * every call gets its exact reply or a status the fault can cause, within
 * its timeout plus a margin -- never a wrong reply, a hang or a crash.
 * Usage: test_faults FAULT,DIRECTION,HOST:PORT...
 * (scripts/test-c.sh starts one proxy per fault, e.g.
 * "reset-after=25,down,127.0.0.1:4242"). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

/* Generous: Valgrind slows every call down. */
#define MARGIN_MS 2000.0
#define KIB 1024
static const size_t SIZES[] = {0, 1, 13, 1000, 16 * KIB, 64 * KIB, 300 * KIB};
#define N_SIZES (sizeof SIZES / sizeof SIZES[0])
#define MAX_REQUESTS (2 * N_SIZES)
#define BIT(status) (1u << (unsigned)(status))

struct fault_case {
  char fault[64];
  char direction[16];
  const char *addr;
  uint32_t timeout_ms;
  size_t max_size;
  size_t rounds;
  unsigned allowed;  /* statuses a call may fail with */
  unsigned expected; /* at least one of these must appear */
};

struct tally {
  int requests;
  int right;
  int errors[32];
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parses "FAULT,DIRECTION,ADDR" and says what the fault may do. */
static void parse_case(char *arg, struct fault_case *c) {
  char *first = strchr(arg, ',');
  char *last = strrchr(arg, ',');
  CHECK(first != NULL && last != NULL && first != last);
  CHECK((size_t)(first - arg) < sizeof c->fault);
  CHECK((size_t)(last - first - 1) < sizeof c->direction);
  memset(c, 0, sizeof *c);
  memcpy(c->fault, arg, (size_t)(first - arg));
  memcpy(c->direction, first + 1, (size_t)(last - first - 1));
  c->addr = last + 1;
  c->timeout_ms = 1000;
  c->max_size = SIZE_MAX;
  c->rounds = 2;
  if (strcmp(c->fault, "chunk1") == 0) {
    /* A write and a segment per byte: bodies up to 64 KiB keep it fast. */
    c->timeout_ms = 3000;
    c->max_size = 64 * KIB;
    c->rounds = 1;
  } else if (strcmp(c->fault, "none") == 0 || starts_with(c->fault, "delay=") ||
             starts_with(c->fault, "throttle=")) {
    /* every reply right */
  } else if (starts_with(c->fault, "reset-after=")) {
    c->allowed = BIT(GOPRO_STATUS_CLOSED) | BIT(GOPRO_STATUS_CONNECTION_LOST) |
                 BIT(GOPRO_STATUS_IO_ERROR);
    c->expected = BIT(GOPRO_STATUS_CONNECTION_LOST) | BIT(GOPRO_STATUS_IO_ERROR);
  } else if (starts_with(c->fault, "stop-after=")) {
    c->timeout_ms = 500;
    c->allowed = BIT(GOPRO_STATUS_TIMEOUT) | BIT(GOPRO_STATUS_CLOSED) |
                 BIT(GOPRO_STATUS_CONNECTION_LOST);
    c->expected = BIT(GOPRO_STATUS_TIMEOUT) | BIT(GOPRO_STATUS_CONNECTION_LOST);
  } else if (starts_with(c->fault, "half-close")) {
    /* A protocol error here is a reply cut short (checked below). */
    c->allowed = c->expected = BIT(GOPRO_STATUS_CLOSED) | BIT(GOPRO_STATUS_CONNECTION_LOST) |
                               BIT(GOPRO_STATUS_PROTOCOL_ERROR);
  } else {
    fprintf(stderr, "unknown fault %s\n", c->fault);
    exit(2);
  }
}

/* Request i: MESSAGE or HEARTBEAT with a body that names it; its reply. */
struct request {
  uint8_t command;
  uint8_t *body;
  size_t len;
  uint8_t *reply;
  size_t reply_len;
};

static void make_request(size_t i, size_t size, struct request *r) {
  char name[32];
  size_t j;
  size_t name_len = (size_t)snprintf(name, sizeof name, "request %zu;", i);
  r->command = i % 2 == 0 ? GOPRO_COMMAND_MESSAGE : GOPRO_COMMAND_HEARTBEAT;
  r->len = size;
  r->body = malloc(size + 1);
  CHECK(r->body != NULL);
  for (j = 0; j < size; j++) {
    r->body[j] = j < name_len ? (uint8_t)name[j] : (uint8_t)('a' + (i + j) % 26);
  }
  if (r->command == GOPRO_COMMAND_MESSAGE) {
    r->reply_len = 13 + size;
    r->reply = malloc(r->reply_len);
    CHECK(r->reply != NULL);
    memcpy(r->reply, "Server says: ", 13);
    if (size > 0) {
      memcpy(r->reply + 13, r->body, size);
    }
  } else {
    r->reply_len = size;
    r->reply = malloc(size + 1);
    CHECK(r->reply != NULL);
    if (size > 0) {
      memcpy(r->reply, r->body, size);
    }
  }
}

static void free_request(struct request *r) {
  free(r->body);
  free(r->reply);
}

/* Checks a call's time and status; returns its status. */
static gopro_status checked(const struct fault_case *c, struct tally *t, const char *what,
                            size_t i, double started, gopro_status status) {
  double took = now_ms() - started;
  check_log_status((int)status);
  if (took > c->timeout_ms + MARGIN_MS) {
    fprintf(stderr, "%s (%s): %s %zu took %.0f ms, more than %u ms + %.0f\n", c->fault,
            c->direction, what, i, took, (unsigned)c->timeout_ms, MARGIN_MS);
    exit(1);
  }
  if (status == GOPRO_STATUS_OK) {
    return status;
  }
  if ((unsigned)status >= 32 || !(c->allowed & BIT(status))) {
    fprintf(stderr, "%s (%s): %s %zu failed with %d (%s): %s\n", c->fault, c->direction, what, i,
            (int)status, gopro_status_str((int)status), check_last_error());
    exit(1);
  }
  if (status == GOPRO_STATUS_PROTOCOL_ERROR &&
      strstr(check_last_error(), "unexpected end of stream") == NULL) {
    fprintf(stderr, "%s (%s): %s %zu: a protocol error other than a cut reply: %s\n", c->fault,
            c->direction, what, i, check_last_error());
    exit(1);
  }
  t->errors[status]++;
  return status;
}

/* A reply (or its absence, after an allowed error) for request r. */
static void check_reply(const struct fault_case *c, struct tally *t, const char *what, size_t i,
                        gopro_status status, gopro_frame *reply, const struct request *r) {
  uint8_t command = 0;
  const uint8_t *body = NULL;
  size_t len = 0;
  t->requests++;
  if (status != GOPRO_STATUS_OK) {
    CHECK(reply == NULL);
    return;
  }
  OK(gopro_frame_get(reply, &command, NULL, &body, &len));
  if (command != r->command || len != r->reply_len ||
      (len > 0 && memcmp(body, r->reply, len) != 0)) {
    fprintf(stderr, "%s (%s): wrong reply to %s %zu: command %d with %zu bytes, wanted %d with %zu\n",
            c->fault, c->direction, what, i, command, len, r->command, r->reply_len);
    exit(1);
  }
  gopro_frame_free(reply);
  t->right++;
}

static gopro_client *connect_to(const struct fault_case *c) {
  gopro_client *client = NULL;
  /* The proxy accepts before it dials the server: connecting always works. */
  OK(gopro_client_connect(c->addr, 5000, c->timeout_ms, 0, &client));
  return client;
}

/* One of the threads sharing a client: requests th, th + THREADS, ... */
#define THREADS 4
struct caller {
  const struct fault_case *c;
  gopro_client *client;
  struct request *requests;
  size_t n, th;
  struct tally t;
};

static void *call_in_turn(void *arg) {
  struct caller *me = arg;
  size_t i;
  for (i = me->th; i < me->n; i += THREADS) {
    const struct request *r = &me->requests[i];
    gopro_frame *reply = NULL;
    double started = now_ms();
    gopro_status status = gopro_client_request(me->client, r->command, r->body, r->len, &reply);
    checked(me->c, &me->t, "shared request", i, started, status);
    check_reply(me->c, &me->t, "shared request", i, status, reply, r);
  }
  return NULL;
}

static void run_case(const struct fault_case *c) {
  struct tally t;
  struct request requests[MAX_REQUESTS];
  size_t n = 0, i, round, k, sent = 0;
  gopro_client *client;
  double started;
  gopro_status status;
  memset(&t, 0, sizeof t);
  for (round = 0; round < c->rounds; round++) {
    for (k = 0; k < N_SIZES; k++) {
      if (SIZES[k] <= c->max_size) {
        make_request(n, SIZES[k], &requests[n]);
        n++;
      }
    }
  }

  /* Sequential requests on one connection. */
  client = connect_to(c);
  for (i = 0; i < n; i++) {
    gopro_frame *reply = NULL;
    started = now_ms();
    status = gopro_client_request(client, requests[i].command, requests[i].body, requests[i].len,
                                  &reply);
    checked(c, &t, "request", i, started, status);
    check_reply(c, &t, "request", i, status, reply, &requests[i]);
  }
  gopro_client_free(client);

  /* Pipelined on another: send them all, flush, read the replies in order. */
  client = connect_to(c);
  for (i = 0; i < n; i++) {
    started = now_ms();
    status = gopro_client_send(client, requests[i].command, requests[i].body, requests[i].len);
    if (checked(c, &t, "send", i, started, status) != GOPRO_STATUS_OK) {
      break;
    }
    sent++;
  }
  started = now_ms();
  checked(c, &t, "flush", 0, started, gopro_client_flush(client));
  for (i = 0; i < sent; i++) {
    gopro_frame *reply = NULL;
    started = now_ms();
    status = gopro_client_recv(client, &reply);
    checked(c, &t, "pipelined reply", i, started, status);
    check_reply(c, &t, "pipelined reply", i, status, reply, &requests[i]);
  }
  gopro_client_free(client);

  /* Shared by threads on a third: each caller gets its own reply or an
   * allowed error, whatever the others' calls meet. */
  {
    struct caller callers[THREADS];
    pthread_t threads[THREADS];
    client = connect_to(c);
    for (k = 0; k < THREADS; k++) {
      memset(&callers[k], 0, sizeof callers[k]);
      callers[k].c = c;
      callers[k].client = client;
      callers[k].requests = requests;
      callers[k].n = n;
      callers[k].th = k;
      CHECK(pthread_create(&threads[k], NULL, call_in_turn, &callers[k]) == 0);
    }
    for (k = 0; k < THREADS; k++) {
      size_t e;
      CHECK(pthread_join(threads[k], NULL) == 0);
      t.requests += callers[k].t.requests;
      t.right += callers[k].t.right;
      for (e = 0; e < 32; e++) {
        t.errors[e] += callers[k].t.errors[e];
      }
    }
    gopro_client_free(client);
  }

  printf("test_faults: %s (%s): %d requests, %d right", c->fault, c->direction, t.requests,
         t.right);
  for (k = 0; k < 32; k++) {
    if (t.errors[k] > 0) {
      printf(", %d %s", t.errors[k], gopro_status_str((int)k));
    }
  }
  printf("\n");
  if (c->allowed == 0) {
    CHECK(t.right == t.requests);
  } else {
    int seen = 0;
    for (k = 0; k < 32; k++) {
      if (t.errors[k] > 0 && (c->expected & BIT(k))) {
        seen = 1;
      }
    }
    if (!seen) {
      fprintf(stderr, "%s (%s): none of the expected errors appeared\n", c->fault, c->direction);
      exit(1);
    }
  }
  for (i = 0; i < n; i++) {
    free_request(&requests[i]);
  }
}

int main(int argc, char **argv) {
  int a;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FAULT,DIRECTION,HOST:PORT...\n", argv[0]);
    return 2;
  }
  for (a = 1; a < argc; a++) {
    struct fault_case c;
    parse_case(argv[a], &c);
    run_case(&c);
  }
  printf("test_faults: passed\n");
  return 0;
}

/* One client shared by many threads, and requests completed by callbacks
 * (gopro_client_submit), against `gopro serve`; closing a client with
 * callbacks owed, against a server that never answers.
 * Usage: test_shared HOST:PORT */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "reply.h"
#include "servers.h"

#define THREADS 8
#define PER_THREAD 400

struct worker {
  gopro_client *client;
  int id;
  int right;
};

/* Requests with bodies of their own: a reply handed to the wrong caller
 * would not match. */
static void *request_loop(void *arg) {
  struct worker *w = arg;
  char body[32], want[64];
  for (int i = 0; i < PER_THREAD; i++) {
    gopro_frame *reply = NULL;
    snprintf(body, sizeof body, "t%d-%d", w->id, i);
    snprintf(want, sizeof want, "Server says: %s", body);
    OK(gopro_client_request(w->client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)body, strlen(body),
                            &reply));
    check_reply(reply, GOPRO_COMMAND_MESSAGE, want, NULL);
    gopro_frame_free(reply);
    w->right++;
  }
  return NULL;
}

static void test_threads(const char *addr) {
  gopro_client *client = NULL;
  pthread_t threads[THREADS];
  struct worker workers[THREADS];
  gopro_client_counters counters;
  OK(gopro_client_connect(addr, 2000, 10000, 0, &client));
  for (int i = 0; i < THREADS; i++) {
    workers[i] = (struct worker){client, i, 0};
    CHECK(pthread_create(&threads[i], NULL, request_loop, &workers[i]) == 0);
  }
  for (int i = 0; i < THREADS; i++) {
    CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK(workers[i].right == PER_THREAD);
  }
  OK(gopro_client_stats(client, &counters, sizeof counters));
  CHECK(counters.requests == THREADS * PER_THREAD && counters.replies == THREADS * PER_THREAD);
  CHECK(counters.reconnects == 0 && counters.resent == 0 && counters.lost == 0);
  gopro_client_free(client);
}

/* ---------------------------------------------------------- completions */

struct tally {
  atomic_int calls;
  atomic_int right;
  atomic_int statuses[32];
};

struct call {
  struct tally *tally;
  char want[48]; /* the reply's body, or the last error's message */
  gopro_client *client; /* to submit the next one from the callback */
  int chain;            /* requests still to submit from callbacks */
  int full;             /* the client is full during the callback */
};

static void on_reply(void *user_data, gopro_status status, const gopro_frame *reply) {
  struct call *c = user_data;
  atomic_fetch_add(&c->tally->calls, 1);
  atomic_fetch_add(&c->tally->statuses[status], 1);
  if (status == GOPRO_STATUS_OK) {
    CHECK(reply != NULL);
    check_reply(reply, GOPRO_COMMAND_MESSAGE, c->want, NULL);
    atomic_fetch_add(&c->tally->right, 1);
  } else {
    CHECK(reply == NULL);
    if (c->want[0] != '\0') {
      EXPECT_MESSAGE(c->want);
    }
  }
  if (c->full) {
    /* This request still holds the only room: a submission would have to
     * wait, which a callback cannot. */
    EXPECT(gopro_client_submit(c->client, GOPRO_COMMAND_HEARTBEAT, NULL, 0, on_reply, c),
           GOPRO_STATUS_BLOCKING_IN_RUNTIME);
    c->full = 0;
  }
  if (c->chain > 0) {
    /* Blocking calls are refused here; submitting is not. */
    gopro_frame *none = NULL;
    EXPECT(gopro_client_request(c->client, GOPRO_COMMAND_HEARTBEAT, NULL, 0, &none),
           GOPRO_STATUS_BLOCKING_IN_RUNTIME);
    EXPECT(gopro_client_close(c->client), GOPRO_STATUS_BLOCKING_IN_RUNTIME);
    c->chain--;
    OK(gopro_client_submit(c->client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"chained", 7,
                           on_reply, c));
  }
}

#define SUBMITS 2000

static void test_submit(const char *addr) {
  static struct call calls[SUBMITS];
  static struct tally tally;
  struct call error_call = {&tally, "unknown command: 42", NULL, 0, 0};
  struct call chained = {&tally, "Server says: chained", NULL, 5, 0};
  gopro_client_config *config = NULL;
  gopro_client *client = NULL;
  gopro_client_counters counters;
  uint8_t big[65] = {0};

  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, addr));
  /* Few in flight: most submissions wait for room. */
  OK(gopro_client_config_set_max_in_flight(config, 16));
  OK(gopro_client_config_set_max_body(config, 64));
  OK(gopro_client_connect_with(config, &client));
  gopro_client_config_free(config);

  EXPECT(gopro_client_submit(NULL, 1, NULL, 0, on_reply, &calls[0]), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_submit(client, 1, NULL, 0, NULL, &calls[0]), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `callback` is NULL");
  EXPECT(gopro_client_submit(client, 1, NULL, 1, on_reply, &calls[0]), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_submit(client, 1, big, sizeof big, on_reply, &calls[0]),
         GOPRO_STATUS_BODY_TOO_LARGE);

  for (int i = 0; i < SUBMITS; i++) {
    char body[16];
    snprintf(body, sizeof body, "s-%d", i);
    calls[i] = (struct call){&tally, "", NULL, 0, 0};
    snprintf(calls[i].want, sizeof calls[i].want, "Server says: %s", body);
    OK(gopro_client_submit(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)body, strlen(body),
                           on_reply, &calls[i]));
  }
  /* An ERROR reply: its status and the server's reason, in the callback. */
  OK(gopro_client_submit(client, 42, NULL, 0, on_reply, &error_call));
  /* Requests submitted from callbacks, one after another. */
  chained.client = client;
  OK(gopro_client_submit(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"chained", 7, on_reply,
                         &chained));
  /* The blocking calls wait their turn behind the submissions. */
  OK(gopro_client_heartbeat(client));
  /* Until every callback has run, the chain's last link included: its
   * count drops to 0 as the link is submitted, and a close before the link
   * is answered would fail it. */
  for (int i = 0; i < 10000 && atomic_load(&tally.calls) < SUBMITS + 1 + 6; i++) {
    sleep_ms(1);
  }
  CHECK(chained.chain == 0);
  OK(gopro_client_close(client));
  /* Closing waited for every callback: each ran exactly once. */
  CHECK(atomic_load(&tally.calls) == SUBMITS + 1 + 6);
  CHECK(atomic_load(&tally.right) == SUBMITS + 6);
  CHECK(atomic_load(&tally.statuses[GOPRO_STATUS_SERVER_ERROR]) == 1);
  OK(gopro_client_stats(client, &counters, sizeof counters));
  CHECK(counters.requests == SUBMITS + 1 + 6 + 1 && counters.replies == counters.requests);
  /* Closed: refused, and the callback is not called. */
  EXPECT(gopro_client_submit(client, 1, NULL, 0, on_reply, &calls[0]), GOPRO_STATUS_CLOSED);
  CHECK(atomic_load(&tally.calls) == SUBMITS + 1 + 6);
  gopro_client_free(client);
}

/* With room for one request, a callback cannot submit: it is refused at
 * once, and the callback it named is not called. */
static void test_submit_when_full_in_a_callback(const char *addr) {
  static struct tally tally;
  struct call only = {&tally, "Server says: only", NULL, 0, 1};
  gopro_client_config *config = NULL;
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, addr));
  OK(gopro_client_config_set_max_in_flight(config, 1));
  OK(gopro_client_connect_with(config, &only.client));
  gopro_client_config_free(config);
  OK(gopro_client_submit(only.client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"only", 4, on_reply,
                         &only));
  OK(gopro_client_heartbeat(only.client)); /* after the callback */
  CHECK(only.full == 0);
  CHECK(atomic_load(&tally.calls) == 1 && atomic_load(&tally.right) == 1);
  gopro_client_free(only.client);
}

/* A listening socket that never accepts: connections complete in its
 * backlog, and no byte is ever answered. */
static int silent_server(char *addr, size_t cap) {
  int fd = bind_loopback(addr, cap);
  CHECK(listen(fd, 16) == 0);
  return fd;
}

/* Requests the server never answers: closing (and freeing) the client fails
 * each, once, with CLOSED before it returns; a callback's own timeout gives
 * TIMEOUT and leaves the connection open. */
static void test_close_with_callbacks_owed(void) {
  static struct tally tally;
  struct call calls[10];
  char addr[32];
  int fd = silent_server(addr, sizeof addr);
  gopro_client *client = NULL;
  gopro_client_config *config = NULL;

  OK(gopro_client_connect(addr, 2000, 10000, 0, &client));
  for (int i = 0; i < 10; i++) {
    calls[i] = (struct call){&tally, "", NULL, 0, 0};
    OK(gopro_client_submit(client, GOPRO_COMMAND_HEARTBEAT, NULL, 0, on_reply, &calls[i]));
  }
  CHECK(atomic_load(&tally.calls) == 0);
  OK(gopro_client_close(client));
  CHECK(atomic_load(&tally.calls) == 10);
  CHECK(atomic_load(&tally.statuses[GOPRO_STATUS_CLOSED]) == 10);
  gopro_client_free(client);

  /* gopro_client_free alone waits the same way. */
  client = NULL;
  OK(gopro_client_connect(addr, 2000, 10000, 0, &client));
  OK(gopro_client_submit(client, GOPRO_COMMAND_HEARTBEAT, NULL, 0, on_reply, &calls[0]));
  gopro_client_free(client);
  CHECK(atomic_load(&tally.statuses[GOPRO_STATUS_CLOSED]) == 11);

  /* Timed out by the client: TIMEOUT, once; the connection stays open. */
  client = NULL;
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, addr));
  OK(gopro_client_config_set_timeout(config, 200));
  OK(gopro_client_connect_with(config, &client));
  gopro_client_config_free(config);
  OK(gopro_client_submit(client, GOPRO_COMMAND_HEARTBEAT, NULL, 0, on_reply, &calls[0]));
  for (int i = 0; i < 3000 && atomic_load(&tally.statuses[GOPRO_STATUS_TIMEOUT]) == 0; i++) {
    sleep_ms(1);
  }
  CHECK(atomic_load(&tally.statuses[GOPRO_STATUS_TIMEOUT]) == 1);
  CHECK(atomic_load(&tally.calls) == 12);
  gopro_client_free(client);
  CHECK(atomic_load(&tally.calls) == 12);
  close(fd);
}

/* ------------------------------------------------- a scripted server */

static void read_exact(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    CHECK(r > 0);
    got += (size_t)r;
  }
}

/* One frame's command and body (at most `cap - 1` bytes, NUL-ended). */
static uint8_t read_frame(int fd, char *body, size_t cap) {
  uint8_t header[8];
  size_t len;
  read_exact(fd, header, sizeof header);
  CHECK(header[0] == 0x47 && header[1] == 0x4F);
  len = (size_t)header[4] << 24 | (size_t)header[5] << 16 | (size_t)header[6] << 8 | header[7];
  CHECK(len < cap);
  read_exact(fd, (uint8_t *)body, len);
  body[len] = 0;
  return header[3];
}

/* Writes "re " + body as a frame of `command`. */
static void answer(int fd, uint8_t command, const char *body) {
  uint8_t frame[64];
  size_t len = 3 + strlen(body);
  CHECK(8 + len <= sizeof frame);
  memcpy(frame, "\x47\x4f\x01", 3);
  frame[3] = command;
  frame[4] = frame[5] = 0;
  frame[6] = (uint8_t)(len >> 8);
  frame[7] = (uint8_t)len;
  memcpy(frame + 8, "re ", 3);
  memcpy(frame + 11, body, strlen(body));
  CHECK(write(fd, frame, 8 + len) == (ssize_t)(8 + len));
}

#define LATE_TIMEOUT_MS 2000

/* Takes A and B, answers A at 0.8 x the client's timeout and B at 1.4 x,
 * then answers the next request at once. */
static void *answers_late(void *arg) {
  int listener = *(int *)arg, fd;
  char a[32], b[32], c[32];
  uint8_t ca, cb, cc;
  fd = accept(listener, NULL, NULL);
  CHECK(fd >= 0);
  ca = read_frame(fd, a, sizeof a);
  cb = read_frame(fd, b, sizeof b);
  sleep_ms(LATE_TIMEOUT_MS * 8 / 10);
  answer(fd, ca, a);
  sleep_ms(LATE_TIMEOUT_MS * 6 / 10);
  answer(fd, cb, b);
  cc = read_frame(fd, c, sizeof c);
  answer(fd, cc, c);
  while (read(fd, c, sizeof c) > 0) {
  }
  close(fd);
  return NULL;
}

/* A blocking request made on a thread of its own: its status and reply. */
struct thread_call {
  gopro_client *client;
  uint8_t command;
  const char *body;
  gopro_status status;
  gopro_frame *reply;
};

static void *thread_request(void *arg) {
  struct thread_call *call = arg;
  call->status = gopro_client_request(call->client, call->command, (const uint8_t *)call->body,
                                      strlen(call->body), &call->reply);
  return NULL;
}

/* A call that times out leaves the connection to a server still answering:
 * B's caller gets TIMEOUT at 1 x the timeout, B's reply (at 1.4 x, within
 * the response timeout of 1.1 x since A's reply) is discarded, and the next
 * call gets its own reply on the same connection. */
static void test_timeout_with_the_server_still_answering(void) {
  char addr[32];
  int listener = bind_loopback(addr, sizeof addr);
  pthread_t server, caller;
  gopro_client_config *config = NULL;
  gopro_client_counters counters;
  struct thread_call a = {NULL, GOPRO_COMMAND_MESSAGE, "a", GOPRO_STATUS_OK, NULL};
  gopro_frame *reply = NULL;
  CHECK(listen(listener, 4) == 0);
  CHECK(pthread_create(&server, NULL, answers_late, &listener) == 0);
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, addr));
  OK(gopro_client_config_set_timeout(config, LATE_TIMEOUT_MS));
  OK(gopro_client_connect_with(config, &a.client));
  gopro_client_config_free(config);
  CHECK(pthread_create(&caller, NULL, thread_request, &a) == 0);
  sleep_ms(50);
  EXPECT(gopro_client_request(a.client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"b", 1, &reply),
         GOPRO_STATUS_TIMEOUT);
  CHECK(strstr(check_last_error(), "get a reply") != NULL);
  CHECK(reply == NULL);
  CHECK(pthread_join(caller, NULL) == 0);
  OK(a.status);
  check_reply(a.reply, GOPRO_COMMAND_MESSAGE, "re a", NULL);
  gopro_frame_free(a.reply);
  OK(gopro_client_request(a.client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"c", 1, &reply));
  check_reply(reply, GOPRO_COMMAND_MESSAGE, "re c", NULL);
  gopro_frame_free(reply);
  OK(gopro_client_stats(a.client, &counters, sizeof counters));
  CHECK(counters.reconnects == 0 && counters.lost == 0);
  gopro_client_free(a.client);
  CHECK(pthread_join(server, NULL) == 0);
  close(listener);
}

/* Takes two requests and closes without a reply (no GOAWAY: both may have
 * been handled); on the next connection answers the one sent again. */
static void *lost_then_answers(void *arg) {
  int listener = *(int *)arg, fd;
  char body[32];
  uint8_t command;
  fd = accept(listener, NULL, NULL);
  CHECK(fd >= 0);
  read_frame(fd, body, sizeof body);
  read_frame(fd, body, sizeof body);
  close(fd);
  fd = accept(listener, NULL, NULL);
  CHECK(fd >= 0);
  command = read_frame(fd, body, sizeof body);
  CHECK(command == 16 && strcmp(body, "again") == 0);
  answer(fd, command, body);
  while (read(fd, body, sizeof body) > 0) {
  }
  close(fd);
  return NULL;
}

/* After a connection lost without GOAWAY, a request of a repeatable command
 * is sent again on the next connection; another command's fails with
 * CONNECTION_LOST and is not sent again. */
static void test_repeatable_commands_are_sent_again(void) {
  char addr[32];
  int listener = bind_loopback(addr, sizeof addr);
  pthread_t server, threads[2];
  gopro_client_config *config = NULL;
  gopro_client *client = NULL;
  gopro_client_counters counters;
  struct thread_call calls[2] = {{NULL, 16, "again", GOPRO_STATUS_OK, NULL},
                                 {NULL, 17, "once", GOPRO_STATUS_OK, NULL}};
  CHECK(listen(listener, 4) == 0);
  CHECK(pthread_create(&server, NULL, lost_then_answers, &listener) == 0);
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, addr));
  OK(gopro_client_config_set_reconnect(config, true));
  OK(gopro_client_config_add_repeatable(config, 16));
  OK(gopro_client_connect_with(config, &client));
  gopro_client_config_free(config);
  for (int i = 0; i < 2; i++) {
    calls[i].client = client;
    CHECK(pthread_create(&threads[i], NULL, thread_request, &calls[i]) == 0);
  }
  for (int i = 0; i < 2; i++) {
    CHECK(pthread_join(threads[i], NULL) == 0);
  }
  OK(calls[0].status);
  check_reply(calls[0].reply, 16, "re again", NULL);
  gopro_frame_free(calls[0].reply);
  CHECK(calls[1].status == GOPRO_STATUS_CONNECTION_LOST && calls[1].reply == NULL);
  OK(gopro_client_stats(client, &counters, sizeof counters));
  CHECK(counters.resent == 1 && counters.lost == 1 && counters.reconnects == 1);
  gopro_client_free(client);
  CHECK(pthread_join(server, NULL) == 0);
  close(listener);
}

/* A caller that goes on submitting `n` requests of `len` bytes until one
 * is refused, counting those taken. */
struct submitter {
  gopro_client *client;
  struct call *calls;
  const uint8_t *body;
  size_t len;
  int n;
  atomic_int taken;
  atomic_int done;
  gopro_status last;
};

static void *submit_until_refused(void *arg) {
  struct submitter *s = arg;
  for (int i = 0; i < s->n; i++) {
    s->last = gopro_client_submit(s->client, GOPRO_COMMAND_MESSAGE, s->body, s->len, on_reply,
                                  &s->calls[i]);
    if (s->last != GOPRO_STATUS_OK) {
      break;
    }
    atomic_fetch_add(&s->taken, 1);
  }
  atomic_store(&s->done, 1);
  return NULL;
}

/* Against a server that takes no byte, a caller past the bounds waits:
 * past max_in_flight requests, and past what the kernel holds plus
 * max_queued_bytes; closing the client ends the wait. */
static void test_bounds_against_a_server_that_does_not_read(void) {
  static struct tally tally;
  static struct call calls[64];
  char addr[32];
  int fd = silent_server(addr, sizeof addr);
  uint8_t *big = calloc(1, 1 << 20);
  struct {
    size_t max_in_flight, max_bytes, len;
    int n, taken_at_most;
  } bounds[] = {
      /* Eight taken, the ninth waits. */
      {8, 16 << 20, 1, 12, 8},
      /* 56 MiB offered: what the kernel takes plus the 1 MiB cap. */
      {1024, 1 << 20, 1 << 20, 56, 47},
  };
  CHECK(big != NULL);
  for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
    gopro_client_config *config = NULL;
    struct submitter s;
    pthread_t thread;
    int taken;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < bounds[b].n; i++) {
      calls[i] = (struct call){&tally, "", NULL, 0, 0};
    }
    OK(gopro_client_config_new(&config));
    OK(gopro_client_config_add_address(config, addr));
    OK(gopro_client_config_set_timeout(config, 5000));
    OK(gopro_client_config_set_max_in_flight(config, bounds[b].max_in_flight));
    OK(gopro_client_config_set_max_queued_bytes(config, bounds[b].max_bytes));
    OK(gopro_client_connect_with(config, &s.client));
    gopro_client_config_free(config);
    s.calls = calls;
    s.body = big;
    s.len = bounds[b].len;
    s.n = bounds[b].n;
    atomic_init(&s.taken, 0);
    atomic_init(&s.done, 0);
    CHECK(pthread_create(&thread, NULL, submit_until_refused, &s) == 0);
    sleep_ms(700);
    taken = atomic_load(&s.taken);
    sleep_ms(300);
    /* Waiting, and no further than the bound. */
    CHECK(atomic_load(&s.done) == 0);
    CHECK(atomic_load(&s.taken) == taken);
    CHECK(taken >= 1 && taken <= bounds[b].taken_at_most);
    if (bounds[b].len == 1) {
      CHECK(taken == bounds[b].taken_at_most);
    }
    OK(gopro_client_close(s.client));
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(s.last == GOPRO_STATUS_CLOSED);
    gopro_client_free(s.client);
  }
  free(big);
  close(fd);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }
  test_threads(argv[1]);
  test_submit(argv[1]);
  test_submit_when_full_in_a_callback(argv[1]);
  test_close_with_callbacks_owed();
  test_timeout_with_the_server_still_answering();
  test_bounds_against_a_server_that_does_not_read();
  test_repeatable_commands_are_sent_again();
  printf("test_shared: ok\n");
  return 0;
}

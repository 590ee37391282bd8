/* A reconnecting client shared by threads while `gopro serve` restarts:
 * graceful stops (GOAWAY), failover to a second address, LOGIN sent again
 * on every connection, and SIGKILL; keep-alive against a read deadline.
 * Usage: test_restart PATH_TO_GOPRO */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"
#include "reply.h"
#include "servers.h"

#define THREADS 4
#define TIMEOUT_MS 5000
#define MARGIN_MS 2000.0

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct load {
  gopro_client *client;
  atomic_int running;
  atomic_int right;
  atomic_int statuses[32];
  atomic_int id;
  double slowest_ms;
};

/* Requests with bodies of their own until told to stop; each reply must be
 * its own request's, each failure a status, within the timeout. */
static void *request_loop(void *arg) {
  struct load *l = arg;
  int id = atomic_fetch_add(&l->id, 1);
  char body[32], want[64];
  for (int i = 0; atomic_load(&l->running); i++) {
    gopro_frame *reply = NULL;
    double started = now_ms(), took;
    gopro_status status;
    snprintf(body, sizeof body, "r%d-%d", id, i);
    snprintf(want, sizeof want, "Server says: %s", body);
    status = gopro_client_request(l->client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)body,
                                  strlen(body), &reply);
    took = now_ms() - started;
    check_log_status((int)status);
    CHECK(took < TIMEOUT_MS + MARGIN_MS);
    if (took > l->slowest_ms) {
      l->slowest_ms = took; /* a rough figure: races are harmless */
    }
    atomic_fetch_add(&l->statuses[status], 1);
    if (status == GOPRO_STATUS_OK) {
      check_reply(reply, GOPRO_COMMAND_MESSAGE, want, NULL);
      gopro_frame_free(reply);
      atomic_fetch_add(&l->right, 1);
    } else {
      CHECK(reply == NULL);
      sleep_ms(5);
    }
  }
  return NULL;
}

static void load_start(struct load *l, pthread_t *threads) {
  atomic_store(&l->running, 1);
  for (int i = 0; i < THREADS; i++) {
    CHECK(pthread_create(&threads[i], NULL, request_loop, l) == 0);
  }
}

static void load_stop(struct load *l, pthread_t *threads) {
  atomic_store(&l->running, 0);
  for (int i = 0; i < THREADS; i++) {
    CHECK(pthread_join(threads[i], NULL) == 0);
  }
}

/* No call of the load failed, but with `allowed` (GOPRO_STATUS_OK: none). */
static void check_failed_only_with(struct load *l, gopro_status allowed) {
  for (int st = 1; st < 32; st++) {
    if (st != (int)allowed) {
      CHECK(atomic_load(&l->statuses[st]) == 0);
    }
  }
}

static gopro_client *connect_reconnecting(const struct server *a, const struct server *b,
                                          const char *login) {
  gopro_client_config *config = NULL;
  gopro_client *client = NULL;
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, a->addr));
  if (b != NULL) {
    OK(gopro_client_config_add_address(config, b->addr));
  }
  OK(gopro_client_config_set_reconnect(config, true));
  OK(gopro_client_config_set_reconnect_max_delay(config, 400));
  OK(gopro_client_config_set_timeout(config, TIMEOUT_MS));
  if (login != NULL) {
    OK(gopro_client_config_set_login(config, (const uint8_t *)login, strlen(login)));
  }
  OK(gopro_client_connect_with(config, &client));
  gopro_client_config_free(config);
  return client;
}

static gopro_client_counters counters_of(gopro_client *client) {
  gopro_client_counters c;
  OK(gopro_client_stats(client, &c, sizeof c));
  return c;
}

/* SIGTERM mid-load, then the server again on the same port after a pause:
 * the requests the GOAWAY left unanswered are sent again; nothing fails. */
static void test_restart(const char *bin) {
  struct server s = {bin, NULL, "", NULL, 0};
  static struct load l;
  pthread_t threads[THREADS];
  gopro_client_counters c;
  server_open(&s);
  l.client = connect_reconnecting(&s, NULL, NULL);
  load_start(&l, threads);
  sleep_ms(300);
  server_stop(&s, SIGTERM);
  sleep_ms(300);
  server_start(&s);
  sleep_ms(300);
  load_stop(&l, threads);
  c = counters_of(l.client);
  printf("restart: %d right, reconnects %llu, re-sent %llu, slowest call %.0f ms\n",
         atomic_load(&l.right), (unsigned long long)c.reconnects, (unsigned long long)c.resent,
         l.slowest_ms);
  CHECK(atomic_load(&l.right) > 0);
  CHECK(atomic_load(&l.right) == atomic_load(&l.statuses[GOPRO_STATUS_OK]));
  check_failed_only_with(&l, GOPRO_STATUS_OK); /* nothing lost or failed */
  CHECK(c.reconnects >= 1 && c.lost == 0);
  gopro_client_free(l.client);
  server_stop(&s, SIGTERM);
}

/* Two addresses: the first stops for good, the client goes on with the
 * second without a failed call. */
static void test_failover(const char *bin) {
  struct server a = {bin, NULL, "", NULL, 0}, b = {bin, NULL, "", NULL, 0};
  static struct load l;
  pthread_t threads[THREADS];
  gopro_client_counters c;
  server_open(&a);
  server_open(&b);
  l.client = connect_reconnecting(&a, &b, NULL);
  load_start(&l, threads);
  sleep_ms(200);
  server_stop(&a, SIGTERM);
  sleep_ms(400);
  load_stop(&l, threads);
  c = counters_of(l.client);
  printf("failover: %d right, reconnects %llu, re-sent %llu\n", atomic_load(&l.right),
         (unsigned long long)c.reconnects, (unsigned long long)c.resent);
  check_failed_only_with(&l, GOPRO_STATUS_OK);
  CHECK(c.reconnects >= 1);
  check_message(l.client, "served by the second now");
  gopro_client_free(l.client);
  server_stop(&b, SIGTERM);
}

/* A server that wants LOGIN first: the client's credentials are sent again
 * on the new connection, before the requests waiting for it. */
static void test_login_replay(const char *bin) {
  struct server s = {bin, "user:secret", "", NULL, 0};
  gopro_client *client = NULL, *anonymous = NULL;
  gopro_frame *reply = NULL;
  server_open(&s);
  /* Without credentials, the server refuses MESSAGE. */
  OK(gopro_client_connect(s.addr, 2000, TIMEOUT_MS, 0, &anonymous));
  EXPECT(gopro_client_request(anonymous, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"x", 1, &reply),
         GOPRO_STATUS_SERVER_ERROR);
  gopro_client_free(anonymous);
  client = connect_reconnecting(&s, NULL, "user:secret");
  check_message(client, "before");
  server_stop(&s, SIGTERM);
  server_start(&s);
  check_message(client, "after");
  CHECK(counters_of(client).reconnects == 1);
  gopro_client_free(client);
  server_stop(&s, SIGTERM);
}

struct owed {
  atomic_int calls;
  atomic_int lost;
};

static void count_lost(void *user_data, gopro_status status, const gopro_frame *reply) {
  struct owed *o = user_data;
  (void)reply;
  if (status == GOPRO_STATUS_CONNECTION_LOST) {
    const char *m = check_last_error();
    CHECK(strncmp(m, "connection lost (", 17) == 0);
    CHECK(strstr(m, "the request may have been handled") != NULL);
    atomic_fetch_add(&o->lost, 1);
  }
  atomic_fetch_add(&o->calls, 1);
}

/* SIGKILL: no GOAWAY. Requests written to the killed server fail with
 * CONNECTION_LOST (they may have been handled) and are not sent again;
 * the others succeed once a server is back. */
static void test_sigkill(const char *bin) {
  struct server s = {bin, NULL, "", NULL, 0};
  static struct load l;
  static struct owed owed;
  pthread_t threads[THREADS];
  gopro_client_counters c;
  server_open(&s);
  l.client = connect_reconnecting(&s, NULL, NULL);
  load_start(&l, threads);
  sleep_ms(200);
  /* Stopped, the server takes requests into its socket without answering:
   * these 20 are surely written, unanswered, when it is killed. */
  server_pause(&s);
  for (int i = 0; i < 20; i++) {
    OK(gopro_client_submit(l.client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"k", 1, count_lost,
                           &owed));
  }
  sleep_ms(100);
  server_stop(&s, SIGKILL);
  sleep_ms(300);
  server_start(&s);
  sleep_ms(300);
  load_stop(&l, threads);
  c = counters_of(l.client);
  printf("sigkill: %d right, %d lost by threads, %d of %d submitted lost; reconnects %llu, "
         "re-sent %llu, lost %llu\n",
         atomic_load(&l.right), atomic_load(&l.statuses[GOPRO_STATUS_CONNECTION_LOST]),
         atomic_load(&owed.lost), atomic_load(&owed.calls), (unsigned long long)c.reconnects,
         (unsigned long long)c.resent, (unsigned long long)c.lost);
  CHECK(atomic_load(&owed.calls) == 20 && atomic_load(&owed.lost) == 20);
  check_failed_only_with(&l, GOPRO_STATUS_CONNECTION_LOST);
  CHECK(c.lost == (unsigned long long)(20 + atomic_load(&l.statuses[GOPRO_STATUS_CONNECTION_LOST])));
  CHECK(c.reconnects >= 1);
  check_message(l.client, "back");
  gopro_client_free(l.client);
  server_stop(&s, SIGTERM);
}

/* A server that closes connections quiet for 300 ms: a client idle for
 * longer keeps its connection with HEARTBEATs every 100 ms; without them,
 * the server closes it. */
static void test_keep_alive(const char *bin) {
  struct server s = {bin, NULL, "", "300ms", 0};
  gopro_client_config *config = NULL;
  gopro_client *client = NULL, *quiet = NULL;
  gopro_client_counters c;
  server_open(&s);
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, s.addr));
  OK(gopro_client_config_set_keep_alive(config, 100));
  OK(gopro_client_connect_with(config, &client));
  gopro_client_config_free(config);
  OK(gopro_client_connect(s.addr, 0, TIMEOUT_MS, 0, &quiet));
  sleep_ms(800);
  check_message(client, "awake");
  c = counters_of(client);
  CHECK(c.reconnects == 0);
  EXPECT(gopro_client_heartbeat(quiet), GOPRO_STATUS_CLOSED);
  gopro_client_free(quiet);
  gopro_client_free(client);
  server_stop(&s, SIGTERM);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH_TO_GOPRO\n", argv[0]);
    return 2;
  }
  test_restart(argv[1]);
  test_failover(argv[1]);
  test_login_replay(argv[1]);
  test_sigkill(argv[1]);
  test_keep_alive(argv[1]);
  printf("test_restart: ok\n");
  return 0;
}

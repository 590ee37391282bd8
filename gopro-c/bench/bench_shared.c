/* One C client shared by many callers, against `gopro serve`:
 *   bench_shared HOST:PORT N threads T   T threads, each gopro_client_request
 *                                        in turn, N requests in all
 *   bench_shared HOST:PORT N submit D    one thread, gopro_client_submit with
 *                                        D in flight (max_in_flight D)
 * Prints c_shared_replies_per_s. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gopro.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const uint8_t body[32] = {0};
static atomic_size_t right, done;

static void fail(const char *what) {
  fprintf(stderr, "bench_shared: %s failed\n", what);
  exit(1);
}

struct worker {
  gopro_client *client;
  size_t n;
};

static void *request_loop(void *arg) {
  struct worker *w = arg;
  for (size_t i = 0; i < w->n; i++) {
    gopro_frame *reply = NULL;
    uint8_t command;
    const uint8_t *b;
    size_t len;
    if (gopro_client_request(w->client, GOPRO_COMMAND_MESSAGE, body, sizeof body, &reply) !=
        GOPRO_STATUS_OK)
      fail("gopro_client_request");
    gopro_frame_get(reply, &command, NULL, &b, &len);
    if (len == 13 + sizeof body) atomic_fetch_add_explicit(&right, 1, memory_order_relaxed);
    gopro_frame_free(reply);
  }
  return NULL;
}

static void on_reply(void *user_data, gopro_status status, const gopro_frame *reply) {
  uint8_t command;
  const uint8_t *b;
  size_t len;
  (void)user_data;
  if (status != GOPRO_STATUS_OK) {
    char m[256];
    size_t len = 0;
    gopro_last_error_message(m, sizeof m, &len);
    fprintf(stderr, "bench_shared: status %d: %s\n", (int)status, m);
    exit(1);
  }
  gopro_frame_get(reply, &command, NULL, &b, &len);
  if (len == 13 + sizeof body) atomic_fetch_add_explicit(&right, 1, memory_order_relaxed);
  atomic_fetch_add(&done, 1);
}

int main(int argc, char **argv) {
  gopro_client_config *config = NULL;
  gopro_client *client = NULL;
  size_t n, k;
  double start;
  if (argc != 5 || (strcmp(argv[3], "threads") != 0 && strcmp(argv[3], "submit") != 0)) {
    fprintf(stderr, "usage: %s HOST:PORT N threads|submit K\n", argv[0]);
    return 2;
  }
  n = (size_t)strtoull(argv[2], NULL, 10);
  k = (size_t)strtoull(argv[4], NULL, 10);
  if (gopro_client_config_new(&config) != GOPRO_STATUS_OK ||
      gopro_client_config_add_address(config, argv[1]) != GOPRO_STATUS_OK)
    fail("config");
  if (strcmp(argv[3], "submit") == 0 &&
      gopro_client_config_set_max_in_flight(config, k) != GOPRO_STATUS_OK)
    fail("max_in_flight");
  if (gopro_client_connect_with(config, &client) != GOPRO_STATUS_OK) fail("connect");
  gopro_client_config_free(config);
  start = now();
  if (strcmp(argv[3], "threads") == 0) {
    pthread_t *threads = calloc(k, sizeof *threads);
    struct worker w = {client, n / k};
    for (size_t i = 0; i < k; i++) pthread_create(&threads[i], NULL, request_loop, &w);
    for (size_t i = 0; i < k; i++) pthread_join(threads[i], NULL);
    free(threads);
    n = w.n * k;
  } else {
    /* Waits for room whenever k are in flight. */
    for (size_t i = 0; i < n; i++) {
      if (gopro_client_submit(client, GOPRO_COMMAND_MESSAGE, body, sizeof body, on_reply, NULL) !=
          GOPRO_STATUS_OK)
        fail("gopro_client_submit");
    }
    /* Until every callback has run (closing would fail those owed). */
    while (atomic_load(&done) < n) {
      struct timespec pause = {0, 20000};
      nanosleep(&pause, NULL);
    }
  }
  if (atomic_load(&right) != n) fail("a reply check");
  printf("c_shared_replies_per_s %.0f\n", (double)n / (now() - start));
  gopro_client_free(client);
  return 0;
}

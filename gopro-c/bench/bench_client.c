/* N MESSAGE requests through the C client, DEPTH in flight at a time (as
 * examples/bench_client.rs does through the Rust blocking client).
 * Usage: bench_client HOST:PORT N DEPTH */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gopro.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  gopro_client *client = NULL;
  size_t n, depth, sent = 0, received = 0;
  uint8_t body[32] = {0};
  double start;
  if (argc != 4) {
    fprintf(stderr, "usage: %s HOST:PORT N DEPTH\n", argv[0]);
    return 2;
  }
  n = (size_t)strtoull(argv[2], NULL, 10);
  depth = (size_t)strtoull(argv[3], NULL, 10);
  if (gopro_client_connect(argv[1], 0, 0, 0, &client) != GOPRO_STATUS_OK) return 1;
  start = now();
  while (received < n) {
    gopro_frame *reply = NULL;
    uint8_t command;
    const uint8_t *b;
    size_t len;
    while (sent < n && sent - received < depth) {
      if (gopro_client_send(client, GOPRO_COMMAND_MESSAGE, body, sizeof body) != GOPRO_STATUS_OK)
        return 1;
      sent++;
    }
    if (gopro_client_recv(client, &reply) != GOPRO_STATUS_OK) return 1;
    gopro_frame_get(reply, &command, NULL, &b, &len);
    if (len != 13 + sizeof body) return 1;
    gopro_frame_free(reply);
    received++;
  }
  printf("c_client_replies_per_s %.0f\n", (double)n / (now() - start));
  gopro_client_free(client);
  return 0;
}

/* Pipelining, shared by the client and server tests: `n` requests sent back
 * to back without waiting, then their replies read in order. Request i has
 * the body `body_prefix` + i; its reply must have the same command and the
 * body `reply_prefix` + that body. */
#ifndef GOPRO_TEST_PIPELINE_H
#define GOPRO_TEST_PIPELINE_H

#include "check.h"

static inline void check_pipeline(gopro_client *client, uint8_t command, int n,
                                  const char *body_prefix, const char *reply_prefix) {
  size_t in_flight = 0;
  int i;
  for (i = 0; i < n; i++) {
    char body[64];
    snprintf(body, sizeof body, "%s%d", body_prefix, i);
    OK(gopro_client_send(client, command, (const uint8_t *)body, strlen(body)));
  }
  OK(gopro_client_in_flight(client, &in_flight));
  CHECK(in_flight == (size_t)n);
  OK(gopro_client_flush(client));
  for (i = 0; i < n; i++) {
    char want[128];
    gopro_frame *reply = NULL;
    uint8_t c = 0, v = 0;
    const uint8_t *b = NULL;
    size_t len = 0;
    snprintf(want, sizeof want, "%s%s%d", reply_prefix, body_prefix, i);
    OK(gopro_client_recv(client, &reply));
    OK(gopro_frame_get(reply, &c, &v, &b, &len));
    CHECK(c == command && v == GOPRO_PROTOCOL_VERSION);
    CHECK(len == strlen(want) && memcmp(b, want, len) == 0);
    gopro_frame_free(reply);
  }
  OK(gopro_client_in_flight(client, &in_flight));
  CHECK(in_flight == 0);
}

#endif

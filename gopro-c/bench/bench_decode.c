/* 1,000,000 frames with 32-byte bodies through the C decoder handle, fed
 * 64 KiB at a time (as examples/bench_decode.rs feeds the Rust core). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gopro.h"

#define FRAMES 1000000
#define FRAME_LEN (GOPRO_HEADER_LEN + 32)
#define CHUNK (64 * 1024)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void) {
  size_t total = (size_t)FRAMES * FRAME_LEN, i, written;
  uint8_t *wire = malloc(total);
  double best = 1e9;
  int run;
  if (wire == NULL) return 1;
  for (i = 0; i < FRAMES; i++) {
    uint8_t body[32];
    memset(body, (int)(i % 251), sizeof body);
    if (gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, body, 32, GOPRO_DEFAULT_MAX_BODY,
                           wire + i * FRAME_LEN, FRAME_LEN, &written) != GOPRO_STATUS_OK) {
      return 1;
    }
  }
  for (int many = 0; many < 2; many++) {
    best = 1e9;
    for (run = 0; run < 5; run++) {
      gopro_decoder *d = NULL;
      size_t off, frames = 0, bytes = 0;
      double start = now(), secs;
      if (gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &d) != GOPRO_STATUS_OK) {
        return 1;
      }
      for (off = 0; off < total; off += CHUNK) {
        size_t n = total - off < CHUNK ? total - off : CHUNK;
        gopro_status st;
        gopro_decoder_feed(d, wire + off, n);
        if (many) {
          gopro_frame_view views[256];
          size_t count, k;
          while ((st = gopro_decoder_next_many(d, views, 256, &count)) == GOPRO_STATUS_OK) {
            for (k = 0; k < count; k++) {
              frames++;
              bytes += views[k].body_len + views[k].command;
            }
          }
        } else {
          uint8_t command;
          const uint8_t *body;
          size_t len;
          while ((st = gopro_decoder_next(d, &command, NULL, &body, &len)) == GOPRO_STATUS_OK) {
            frames++;
            bytes += len + command;
          }
        }
        if (st != GOPRO_STATUS_NEED_MORE) return 1;
      }
      secs = now() - start;
      gopro_decoder_free(d);
      if (frames != FRAMES || bytes != (size_t)FRAMES * 33) return 1;
      if (secs < best) best = secs;
    }
    printf("%s %.0f\n", many ? "c_decode_many_frames_per_s" : "c_decode_frames_per_s",
           FRAMES / best);
  }
  free(wire);
  return 0;
}

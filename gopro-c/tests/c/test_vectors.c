/* The shared conformance vectors (tests/vectors/frames.txt) through the C
 * decoder, whole and split at every byte, and the decoded frames back
 * through the C encoder. Uses the codec only, so it also runs against the
 * codec-only build. Usage: test_vectors PATH/TO/frames.txt */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>

#include "check.h"

#define MAX_INPUT 4096
#define MAX_TOKENS 16

struct expected_frame {
  unsigned version, command;
  unsigned char body[MAX_INPUT];
  size_t body_len;
};

struct vector {
  char name[128];
  size_t max_body;
  int required_version;
  unsigned char input[MAX_INPUT];
  size_t input_len;
  struct expected_frame frames[4];
  size_t n_frames;
  char outcome[64]; /* end, partial, or an error kind */
};

static size_t hex_decode(const char *hex, unsigned char *out, size_t cap) {
  size_t n = 0;
  if (strcmp(hex, "-") == 0) {
    return 0;
  }
  CHECK(strlen(hex) % 2 == 0);
  while (hex[0] != '\0') {
    unsigned byte;
    CHECK(n < cap);
    CHECK(sscanf(hex, "%2x", &byte) == 1);
    out[n++] = (unsigned char)byte;
    hex += 2;
  }
  return n;
}

static void parse_options(struct vector *v, char *options) {
  char *save = NULL;
  char *opt;
  v->max_body = GOPRO_DEFAULT_MAX_BODY;
  v->required_version = GOPRO_ANY_VERSION;
  if (strcmp(options, "-") == 0) {
    return;
  }
  for (opt = strtok_r(options, ",", &save); opt != NULL; opt = strtok_r(NULL, ",", &save)) {
    if (strncmp(opt, "max_body=", 9) == 0) {
      v->max_body = (size_t)strtoull(opt + 9, NULL, 10);
    } else if (strncmp(opt, "version=", 8) == 0) {
      v->required_version = atoi(opt + 8);
    } else {
      fprintf(stderr, "unknown option %s\n", opt);
      exit(1);
    }
  }
}

static int parse_line(char *line, struct vector *v) {
  char *tokens[MAX_TOKENS];
  size_t n = 0, i;
  char *save = NULL;
  char *tok;
  line[strcspn(line, "\r\n")] = '\0';
  if (line[0] == '#' || line[0] == '\0') {
    return 0;
  }
  for (tok = strtok_r(line, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
    CHECK(n < MAX_TOKENS);
    tokens[n++] = tok;
  }
  CHECK(n >= 4);
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", tokens[0]);
  parse_options(v, tokens[1]);
  v->input_len = hex_decode(tokens[2], v->input, sizeof v->input);
  for (i = 3; i + 1 < n; i++) {
    struct expected_frame *f = &v->frames[v->n_frames++];
    char body[2 * MAX_INPUT + 1];
    CHECK(v->n_frames <= 4);
    CHECK(sscanf(tokens[i], "frame:%u:%u:%8192s", &f->version, &f->command, body) == 3);
    f->body_len = hex_decode(body, f->body, sizeof f->body);
  }
  if (strncmp(tokens[n - 1], "error:", 6) == 0) {
    snprintf(v->outcome, sizeof v->outcome, "%s", tokens[n - 1] + 6);
  } else {
    snprintf(v->outcome, sizeof v->outcome, "%s", tokens[n - 1]);
  }
  return 1;
}

static gopro_status status_of_kind(const char *kind) {
  if (strcmp(kind, "bad_magic") == 0) return GOPRO_STATUS_BAD_MAGIC;
  if (strcmp(kind, "body_too_large") == 0) return GOPRO_STATUS_BODY_TOO_LARGE;
  if (strcmp(kind, "unsupported_version") == 0) return GOPRO_STATUS_UNSUPPORTED_VERSION;
  fprintf(stderr, "unknown error kind %s\n", kind);
  exit(1);
}

/* Runs one vector, feeding `step` bytes at a time (0: all at once). */
static void run(const struct vector *v, size_t step) {
  gopro_decoder *d = NULL;
  size_t fed = 0, taken = 0, reencoded = 0;
  gopro_status last = GOPRO_STATUS_NEED_MORE;
  unsigned char wire[MAX_INPUT];
  OK(gopro_decoder_new(v->max_body, v->required_version, &d));
  for (;;) {
    uint8_t command = 0, version = 0;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    last = gopro_decoder_next(d, &command, &version, &body, &body_len);
    if (last == GOPRO_STATUS_OK) {
      const struct expected_frame *f;
      size_t written = 0;
      if (taken >= v->n_frames) {
        fprintf(stderr, "%s: unexpected extra frame\n", v->name);
        exit(1);
      }
      f = &v->frames[taken++];
      CHECK(command == f->command && version == f->version);
      CHECK(body_len == f->body_len);
      CHECK(body_len == 0 ? body == NULL : memcmp(body, f->body, body_len) == 0);
      /* Back through the encoder: the same bytes as the input. */
      OK(gopro_frame_encode(version, command, body, body_len, v->max_body, wire, sizeof wire,
                            &written));
      CHECK(written == GOPRO_HEADER_LEN + body_len);
      CHECK(reencoded + written <= v->input_len);
      CHECK(memcmp(wire, v->input + reencoded, written) == 0);
      reencoded += written;
      continue;
    }
    if (last != GOPRO_STATUS_NEED_MORE || fed == v->input_len) {
      break;
    }
    {
      size_t n = step == 0 ? v->input_len - fed : step;
      if (n > v->input_len - fed) n = v->input_len - fed;
      OK(gopro_decoder_feed(d, v->input + fed, n));
      fed += n;
    }
  }
  if (taken != v->n_frames) {
    fprintf(stderr, "%s: %zu frames, wanted %zu\n", v->name, taken, v->n_frames);
    exit(1);
  }
  check_log_status((int)last);
  if (strcmp(v->outcome, "end") == 0) {
    CHECK(last == GOPRO_STATUS_NEED_MORE);
    OK(gopro_decoder_finish(d));
  } else if (strcmp(v->outcome, "partial") == 0) {
    CHECK(last == GOPRO_STATUS_NEED_MORE);
    EXPECT(gopro_decoder_finish(d), GOPRO_STATUS_UNEXPECTED_EOF);
  } else {
    gopro_status want = status_of_kind(v->outcome);
    uint8_t c;
    const uint8_t *b;
    size_t l;
    if (last != want) {
      fprintf(stderr, "%s: decoder returned %d (%s), wanted %s\n", v->name, (int)last,
              gopro_status_str((int)last), v->outcome);
      exit(1);
    }
    /* The error sticks: the stream cannot be trusted any more. */
    EXPECT(gopro_decoder_next(d, &c, NULL, &b, &l), want);
    EXPECT(gopro_decoder_feed(d, v->input, 1), want);
  }
  /* A header seen on its own, through the stateless header decoder. */
  if (v->input_len >= GOPRO_HEADER_LEN) {
    uint8_t version, command;
    uint32_t length;
    gopro_status st = gopro_header_decode(v->input, v->input_len, &version, &command, &length);
    CHECK(st == GOPRO_STATUS_OK || st == GOPRO_STATUS_BAD_MAGIC);
    CHECK((st == GOPRO_STATUS_BAD_MAGIC) == (v->input[0] != 0x47 || v->input[1] != 0x4F));
    if (st == GOPRO_STATUS_OK) {
      uint8_t head[GOPRO_HEADER_LEN];
      size_t written;
      CHECK(version == v->input[2] && command == v->input[3]);
      CHECK(length == ((uint32_t)v->input[4] << 24 | (uint32_t)v->input[5] << 16 |
                       (uint32_t)v->input[6] << 8 | (uint32_t)v->input[7]));
      OK(gopro_header_encode(version, command, length, head, sizeof head, &written));
      CHECK(written == GOPRO_HEADER_LEN && memcmp(head, v->input, GOPRO_HEADER_LEN) == 0);
    }
  }
  gopro_decoder_free(d);
}

int main(int argc, char **argv) {
  FILE *f;
  char line[3 * MAX_INPUT];
  static struct vector v;
  int cases = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s frames.txt\n", argv[0]);
    return 2;
  }
  f = fopen(argv[1], "r");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f) != NULL) {
    if (!parse_line(line, &v)) {
      continue;
    }
    run(&v, 0);
    run(&v, 1);
    run(&v, 3);
    cases++;
  }
  fclose(f);
  CHECK(cases >= 40);
  printf("test_vectors: %d vectors passed (whole, byte by byte, 3 bytes at a time)\n", cases);
  return 0;
}

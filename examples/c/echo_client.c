/* A complete GoPro client in C: connect, send a MESSAGE, print the reply.
 *   cc echo_client.c $(pkg-config --cflags --libs gopro) -o echo_client
 *   ./echo_client 127.0.0.1:8888 "Hello TCP World!"                      */
#include <stdio.h>
#include <string.h>

#include <gopro.h>

static int fail(const char *what, gopro_status status) {
  char message[512];
  size_t len;
  if (gopro_last_error_message(message, sizeof message, &len) != GOPRO_STATUS_OK) {
    message[0] = '\0';
  }
  fprintf(stderr, "%s: %s (%s)\n", what, gopro_status_str(status), message);
  return 1;
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
  const char *text = argc > 2 ? argv[2] : "Hello TCP World!";
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  uint8_t command;
  const uint8_t *body;
  size_t len;
  gopro_status st;

  /* 2 s to connect, 5 s for each call, the default body limit. */
  st = gopro_client_connect(addr, 2000, 5000, 0, &client);
  if (st != GOPRO_STATUS_OK) return fail("connect", st);

  st = gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)text, strlen(text),
                            &reply);
  if (st != GOPRO_STATUS_OK) {
    gopro_client_free(client);
    return fail("request", st); /* ERROR replies: the reason is in the message */
  }
  gopro_frame_get(reply, &command, NULL, &body, &len);
  printf("%u %.*s\n", (unsigned)command, (int)len, (const char *)body);

  gopro_frame_free(reply); /* the body pointer dies with the frame */
  gopro_client_free(client);
  return 0;
}

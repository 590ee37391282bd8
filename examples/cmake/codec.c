/* A frame encoded and decoded again through libgopro, from C: exits 0 only
 * if the bytes and the decoded frame are the expected ones. */
#include <stdio.h>
#include <string.h>

#include <gopro.h>

int main(void) {
  static const char body[] = "Hello TCP World!";
  static const uint8_t header[GOPRO_HEADER_LEN] = {0x47, 0x4F, 0x01, 0x01, 0x00, 0x00, 0x00, 0x10};
  uint8_t wire[64];
  size_t written = 0, len = 0;
  uint8_t command = 0;
  const uint8_t *out = NULL;
  gopro_decoder *decoder = NULL;
  int ok;

  if (gopro_frame_encode(GOPRO_PROTOCOL_VERSION, GOPRO_COMMAND_MESSAGE, (const uint8_t *)body,
                         strlen(body), GOPRO_DEFAULT_MAX_BODY, wire, sizeof wire,
                         &written) != GOPRO_STATUS_OK ||
      written != GOPRO_HEADER_LEN + strlen(body) || memcmp(wire, header, sizeof header) != 0) {
    fprintf(stderr, "codec: encode gave other bytes\n");
    return 1;
  }
  if (gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &decoder) != GOPRO_STATUS_OK) {
    return 1;
  }
  ok = gopro_decoder_feed(decoder, wire, written) == GOPRO_STATUS_OK &&
       gopro_decoder_next(decoder, &command, NULL, &out, &len) == GOPRO_STATUS_OK &&
       command == GOPRO_COMMAND_MESSAGE && len == strlen(body) && memcmp(out, body, len) == 0;
  gopro_decoder_free(decoder);
  if (!ok) {
    fprintf(stderr, "codec: decode gave another frame\n");
    return 1;
  }
  printf("codec: libgopro %s\n", gopro_version());
  return 0;
}

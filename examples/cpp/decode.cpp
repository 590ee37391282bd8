// Decoding a GoPro byte stream in C++ with the sans-IO decoder: bytes in,
// frames out, in whatever pieces they arrive.
//   c++ -std=c++17 decode.cpp $(pkg-config --cflags --libs gopro) -o decode
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <gopro.h>

int main() {
  // Two frames back to back, as a socket might deliver them.
  std::vector<uint8_t> stream(64);
  size_t n1 = 0, n2 = 0;
  const std::string hello = "Hello TCP World!";
  gopro_frame_encode(GOPRO_PROTOCOL_VERSION, GOPRO_COMMAND_HEARTBEAT, nullptr, 0,
                     GOPRO_DEFAULT_MAX_BODY, stream.data(), stream.size(), &n1);
  gopro_frame_encode(GOPRO_PROTOCOL_VERSION, GOPRO_COMMAND_MESSAGE,
                     reinterpret_cast<const uint8_t *>(hello.data()), hello.size(),
                     GOPRO_DEFAULT_MAX_BODY, stream.data() + n1, stream.size() - n1, &n2);

  gopro_decoder *raw = nullptr;
  if (gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &raw) != GOPRO_STATUS_OK) {
    return 1;
  }
  std::unique_ptr<gopro_decoder, decltype(&gopro_decoder_free)> decoder(raw, gopro_decoder_free);

  // Feed 5 bytes at a time; take every frame that is complete.
  int frames = 0;
  for (size_t off = 0; off < n1 + n2; off += 5) {
    size_t piece = std::min<size_t>(5, n1 + n2 - off);
    gopro_decoder_feed(decoder.get(), stream.data() + off, piece);
    uint8_t command;
    const uint8_t *body;
    size_t len;
    gopro_status st;
    while ((st = gopro_decoder_next(decoder.get(), &command, nullptr, &body, &len)) ==
           GOPRO_STATUS_OK) {
      std::printf("frame: command %u, %zu byte body \"%.*s\"\n", unsigned(command), len, int(len),
                  reinterpret_cast<const char *>(body));
      frames++;
    }
    if (st != GOPRO_STATUS_NEED_MORE) {
      std::fprintf(stderr, "decode: %s\n", gopro_status_str(st));
      return 1;
    }
  }
  return gopro_decoder_finish(decoder.get()) == GOPRO_STATUS_OK && frames == 2 ? 0 : 1;
}

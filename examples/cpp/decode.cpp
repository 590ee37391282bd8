// Decoding a GoPro byte stream in C++ with the sans-IO decoder: bytes in,
// frames out, in whatever pieces they arrive.
//   c++ -std=c++17 decode.cpp $(pkg-config --cflags --libs gopro) -o decode
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include <gopro.hpp>

int main() {
  // Two frames back to back, as a socket might deliver them.
  const std::string stream =
      gopro::encode(gopro::HEARTBEAT, "") + gopro::encode(gopro::MESSAGE, "Hello TCP World!");

  gopro::Decoder decoder;
  int frames = 0;
  try {
    // Feed 5 bytes at a time; take every frame that is complete.
    for (std::size_t off = 0; off < stream.size(); off += 5) {
      decoder.feed(std::string_view(stream).substr(off, 5));
      while (std::optional<gopro::Frame> frame = decoder.next()) {
        std::printf("frame: command %u, %zu byte body \"%.*s\"\n", unsigned(frame->command()),
                    frame->body().size(), int(frame->body().size()), frame->body().data());
        frames++;
      }
    }
    decoder.finish();
  } catch (const gopro::Error &e) {
    std::fprintf(stderr, "decode: %s (status %d)\n", e.what(), int(e.status()));
    return 1;
  }
  return frames == 2 ? 0 : 1;
}

// TLS in the C++ API (include/gopro.hpp): gopro::TlsConfig, the client and
// server configs' tls(), connection_info() in handlers and the
// authenticator, Server::reload_tls(), and the errors each throws.
// Usage: test_hpp_tls CERT_DIR WORK_DIR
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "check.hpp"
#include "gopro.hpp"

using namespace std::chrono_literals;

static_assert(!std::is_copy_constructible_v<gopro::TlsConfig> &&
              std::is_nothrow_move_constructible_v<gopro::TlsConfig> &&
              std::is_nothrow_move_assignable_v<gopro::TlsConfig>);

static std::string certs, work;

static std::string cert(const std::string &name) { return certs + "/" + name; }

static std::string slurp(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

static void spill(const std::string &path, const std::string &data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  REQUIRE(out.good());
}

static gopro::Client connect(std::uint16_t port, const gopro::TlsConfig &tls) {
  return gopro::Client::connect(gopro::ClientConfig()
                                    .address("127.0.0.1:" + std::to_string(port))
                                    .connect_timeout(5s)
                                    .timeout(5s)
                                    .tls(tls));
}

static void test_settings() {
  gopro::TlsConfig tls;
  std::string what = THROWS(tls.ca_file(work + "/missing.pem"), GOPRO_STATUS_TLS_CONFIG);
  REQUIRE(what.find("missing.pem") != std::string::npos);
  what = THROWS(tls.cert_files(cert("server.pem"), cert("client.key")), GOPRO_STATUS_TLS_CONFIG);
  REQUIRE(what.find("does not fit") != std::string::npos);
  THROWS(tls.cert_pem("junk", slurp(cert("server.key"))), GOPRO_STATUS_TLS_CONFIG);
  THROWS(tls.server_name("no such name!"), GOPRO_STATUS_TLS_CONFIG);
  THROWS(tls.client_auth(static_cast<gopro::ClientAuth>(9)), GOPRO_STATUS_INVALID_ARGUMENT);
  // Nothing refused was kept: no certificate for a server.
  gopro::ServerConfig config;
  what = THROWS(config.tls(tls), GOPRO_STATUS_TLS_CONFIG);
  REQUIRE(what.find("certificate") != std::string::npos);
  THROWS(config.tls_handshake_timeout(0ms), GOPRO_STATUS_INVALID_ARGUMENT);
  THROWS(config.tls_handshake_timeout(-1ms), GOPRO_STATUS_INVALID_ARGUMENT);
  config.tls_handshake_timeout(2s);
  tls.cert_pem(slurp(cert("server.pem")), slurp(cert("server.key"))).ca_pem(slurp(cert("ca.pem")));
  config.tls(tls);
  // A moved-from TlsConfig throws.
  gopro::TlsConfig moved = std::move(tls);
  THROWS(tls.server_name("localhost"), GOPRO_STATUS_NULL_ARGUMENT);
  THROWS(config.tls(tls), GOPRO_STATUS_NULL_ARGUMENT);
  moved.server_name("localhost");
  // Outside a callback there is no connection.
  THROWS(gopro::connection_info(), GOPRO_STATUS_NOT_IN_CALLBACK);
  // A server without TLS has nothing to reload.
  gopro::Server plain = gopro::Server::start("127.0.0.1:0");
  THROWS(plain.reload_tls(), GOPRO_STATUS_TLS_CONFIG);
}

// Mutual TLS: the authenticator and a handler read the client certificate.
static void test_mtls_server() {
  gopro::ServerConfig config;
  config.tls(gopro::TlsConfig().cert_files(cert("server.pem"), cert("server.key")).ca_file(
      cert("ca.pem")));
  config.authenticator([](std::string_view credentials) {
    return gopro::connection_info().client_common_name == credentials;
  });
  config.handler(16, [](std::uint8_t, std::string_view) -> std::string {
    gopro::ConnectionInfo info = gopro::connection_info();
    std::ostringstream out;
    out << info.client_common_name << "|" << info.client_subject << "|" << info.tls_version << "|"
        << info.tls_server_name << "|" << info.peer.rfind("127.0.0.1:", 0) << "|"
        << info.local.rfind("127.0.0.1:", 0);
    return out.str();
  });
  gopro::Server server = gopro::Server::start("127.0.0.1:0", config);

  gopro::Client client = connect(
      server.port(),
      gopro::TlsConfig().ca_file(cert("ca.pem")).cert_files(cert("client.pem"), cert("client.key"))
          .server_name("localhost"));
  std::string what = THROWS(client.login("device-1"), GOPRO_STATUS_SERVER_ERROR);
  REQUIRE(what.find("login refused") != std::string::npos);
  client.login("device-42");
  REQUIRE(client.request(16, "").body() == "device-42|CN=device-42|TLSv1.3|localhost|0|0");

  // The wrong CA: the handshake fails at connect.
  THROWS(connect(server.port(), gopro::TlsConfig().ca_file(cert("other-ca.pem"))),
         GOPRO_STATUS_TLS_HANDSHAKE);
  // The server counts the refusal once the client's alert reaches it.
  for (int i = 0; i < 500 && server.stats().errors_tls == 0; i++) {
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(server.stats().tls_handshakes == 1);
  REQUIRE(server.stats().errors_tls == 1);
}

// A renewed certificate: reload_tls() reads the files again.
static void test_reload() {
  spill(work + "/hpp-live.pem", slurp(cert("server.pem")));
  spill(work + "/hpp-live.key", slurp(cert("server.key")));
  gopro::ServerConfig config;
  config.tls(gopro::TlsConfig().cert_files(work + "/hpp-live.pem", work + "/hpp-live.key"));
  gopro::Server server = gopro::Server::start("127.0.0.1:0", config);
  connect(server.port(), gopro::TlsConfig().ca_file(cert("ca.pem"))).heartbeat();

  spill(work + "/hpp-live.pem", "garbage");
  THROWS(server.reload_tls(), GOPRO_STATUS_TLS_CONFIG);
  connect(server.port(), gopro::TlsConfig().ca_file(cert("ca.pem"))).heartbeat();

  spill(work + "/hpp-live.pem", slurp(cert("wrong-host.pem")));
  spill(work + "/hpp-live.key", slurp(cert("wrong-host.key")));
  server.reload_tls();
  THROWS(connect(server.port(), gopro::TlsConfig().ca_file(cert("ca.pem"))),
         GOPRO_STATUS_TLS_HANDSHAKE);
  connect(server.port(),
          gopro::TlsConfig().ca_file(cert("ca.pem")).server_name("example.invalid"))
      .heartbeat();
  server.reload_tls_pem(slurp(cert("server.pem")), slurp(cert("server.key")));
  connect(server.port(), gopro::TlsConfig().ca_file(cert("ca.pem"))).heartbeat();
}

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: test_hpp_tls CERT_DIR WORK_DIR\n");
    return 2;
  }
  certs = argv[1];
  work = argv[2];
  test_settings();
  test_mtls_server();
  test_reload();
  std::printf("test_hpp_tls: passed\n");
  return 0;
}

/* TLS through the C ABI: gopro_tls_config and its checks, the C client
 * against `gopro serve --tls-cert` and the Go peer's TLS server (Go's
 * crypto/tls), the C server with TLS against the C client, `gopro send`,
 * openssl s_client and CPython's ssl; mutual TLS with a handler that reads
 * the client certificate's common name; refused certificates, plaintext
 * clients, late handshakes, reloads.
 *
 * Usage: test_tls GOPRO_BIN GO_SERVER_BIN CERT_DIR SCRIPTS_LIB_DIR WORK_DIR
 * (CERT_DIR made by scripts/tls-certs.sh; WORK_DIR an existing directory
 * for files the test writes). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "reply.h"
#include "spawn.h"

#define CMD_WHO 16  /* answered with the client certificate's CN, or "anonymous" */
#define CMD_INFO 17 /* answered "TLS version|SNI|subject|peer host|local == server" */

static const char *gopro_bin, *go_server_bin, *cert_dir, *lib_dir, *work_dir;

/* A file of CERT_DIR (or of WORK_DIR with work_path), in a static buffer
 * per call site's slot: up to 8 live at once. */
static const char *in_dir(const char *dir, const char *name) {
  static char paths[8][512];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, sizeof paths[0], "%s/%s", dir, name);
  return p;
}
static const char *cert(const char *name) { return in_dir(cert_dir, name); }
static const char *work_path(const char *name) { return in_dir(work_dir, name); }

/* A whole file, NUL-terminated; the caller frees it. */
static char *read_file(const char *path, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  char *data;
  long len;
  CHECK(f != NULL);
  CHECK(fseek(f, 0, SEEK_END) == 0);
  len = ftell(f);
  CHECK(len >= 0);
  rewind(f);
  data = malloc((size_t)len + 1);
  CHECK(data != NULL);
  CHECK(fread(data, 1, (size_t)len, f) == (size_t)len);
  data[len] = '\0';
  fclose(f);
  *out_len = (size_t)len;
  return data;
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  CHECK(fwrite(data, 1, len, f) == len);
  CHECK(fclose(f) == 0);
}

static void copy_file(const char *from, const char *to) {
  size_t len = 0;
  char *data = read_file(from, &len);
  write_file(to, data, len);
  free(data);
}

static int contains(const char *haystack, const char *needle) {
  return strstr(haystack, needle) != NULL;
}

/* The last error message must contain `part`. */
#define EXPECT_MESSAGE_HAS(part)                                                       \
  do {                                                                                 \
    const char *m_ = check_last_error();                                               \
    if (!contains(m_, (part))) {                                                       \
      fprintf(stderr, "%s:%d: last error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, m_, \
              (part));                                                                 \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* TLS settings: CA `ca` (NULL: none), certificate `name`.pem/.key of
 * CERT_DIR (NULL: none), server name (NULL: none). */
static gopro_tls_config *tls_config(const char *ca, const char *name, const char *server_name) {
  gopro_tls_config *tls = NULL;
  OK(gopro_tls_config_new(&tls));
  if (ca != NULL) {
    OK(gopro_tls_config_set_ca_file(tls, cert(ca)));
  }
  if (name != NULL) {
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    OK(gopro_tls_config_set_cert_files(tls, cert(pem), cert(key)));
  }
  if (server_name != NULL) {
    OK(gopro_tls_config_set_server_name(tls, server_name));
  }
  return tls;
}

/* Connects a TLS client to `addr` with those settings; gives the status
 * and, on success, the client in *out. */
static gopro_status tls_connect(const char *addr, const char *ca, const char *name,
                                const char *server_name, gopro_client **out) {
  gopro_client_config *config = NULL;
  gopro_tls_config *tls = tls_config(ca, name, server_name);
  gopro_status st;
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_add_address(config, addr));
  OK(gopro_client_config_set_connect_timeout(config, 5000));
  OK(gopro_client_config_set_timeout(config, 5000));
  OK(gopro_client_config_set_tls(config, tls));
  gopro_tls_config_free(tls); /* the client config copied what it needs */
  *out = NULL;
  st = gopro_client_connect_with(config, out);
  check_log_status((int)st);
  gopro_client_config_free(config);
  return st;
}

/* A TLS client that must connect and pass a HEARTBEAT and a MESSAGE. */
static void tls_ok(const char *addr, const char *ca, const char *name, const char *server_name) {
  gopro_client *client = NULL;
  EXPECT(tls_connect(addr, ca, name, server_name, &client), GOPRO_STATUS_OK);
  OK(gopro_client_heartbeat(client));
  check_message(client, "over TLS");
  gopro_client_free(client);
}

/* A TLS client refused during the handshake, with `reason` in the message. */
static void tls_refused(const char *addr, const char *ca, const char *name,
                        const char *server_name, const char *reason) {
  gopro_client *client = NULL;
  EXPECT(tls_connect(addr, ca, name, server_name, &client), GOPRO_STATUS_TLS_HANDSHAKE);
  CHECK(client == NULL);
  EXPECT_MESSAGE_HAS(reason);
}

/* A server that requires a client certificate chained to ca.pem refuses a
 * client without one, and one with a certificate of another CA. With TLS
 * 1.3 the client finishes its side of the handshake before the server has
 * checked its certificate, so the refusal may come at the first request
 * instead of at connect; every later call fails the same way. */
static void client_certificate_refused(const char *addr) {
  const char *who[] = {NULL, "other-client"};
  for (int i = 0; i < 2; i++) {
    gopro_client *client = NULL;
    gopro_status st = tls_connect(addr, "ca.pem", who[i], NULL, &client);
    if (st == GOPRO_STATUS_OK) {
      gopro_status hb = gopro_client_heartbeat(client);
      check_log_status((int)hb);
      CHECK(hb == GOPRO_STATUS_TLS_HANDSHAKE);
      CHECK(gopro_client_heartbeat(client) == GOPRO_STATUS_TLS_HANDSHAKE);
      gopro_client_free(client);
    } else {
      CHECK(st == GOPRO_STATUS_TLS_HANDSHAKE);
    }
  }
}

/* ---- the settings ---- */

static void test_tls_config_errors(void) {
  gopro_tls_config *tls = NULL;
  gopro_client_config *client_config = NULL;
  gopro_server_config *server_config = NULL;
  gopro_server *plain = NULL;
  size_t cert_len = 0, key_len = 0, other_key_len = 0;
  char *cert_pem = read_file(cert("server.pem"), &cert_len);
  char *key_pem = read_file(cert("server.key"), &key_len);
  char *other_key = read_file(cert("client.key"), &other_key_len);
  char buf[64];
  size_t len = 0;

  EXPECT(gopro_tls_config_new(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_tls_config_new(&tls));
  EXPECT(gopro_tls_config_set_ca_file(NULL, cert("ca.pem")), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_ca_file(tls, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_ca_pem(tls, NULL, 10), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_cert_files(tls, cert("server.pem"), NULL),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_cert_files(tls, NULL, cert("server.key")),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_cert_pem(tls, NULL, 5, (const uint8_t *)key_pem, key_len),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_server_name(tls, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_tls_config_set_client_auth(NULL, GOPRO_TLS_CLIENT_AUTH_OPTIONAL),
         GOPRO_STATUS_NULL_ARGUMENT);
  gopro_tls_config_free(NULL);

  /* Missing files, bad PEM, a key of another certificate: refused at the
   * setter, naming the file. */
  EXPECT(gopro_tls_config_set_ca_file(tls, work_path("missing.pem")), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("missing.pem");
  write_file(work_path("garbage.pem"), "not a certificate\n", 18);
  EXPECT(gopro_tls_config_set_ca_file(tls, work_path("garbage.pem")), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("garbage.pem");
  EXPECT(gopro_tls_config_set_ca_pem(tls, (const uint8_t *)"junk", 4), GOPRO_STATUS_TLS_CONFIG);
  EXPECT(gopro_tls_config_set_cert_files(tls, work_path("garbage.pem"), cert("server.key")),
         GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("garbage.pem");
  EXPECT(gopro_tls_config_set_cert_files(tls, cert("server.pem"), work_path("missing.key")),
         GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("missing.key");
  EXPECT(gopro_tls_config_set_cert_files(tls, cert("server.pem"), cert("client.key")),
         GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("does not fit");
  EXPECT(gopro_tls_config_set_cert_pem(tls, (const uint8_t *)cert_pem, cert_len,
                                       (const uint8_t *)other_key, other_key_len),
         GOPRO_STATUS_TLS_CONFIG);
  EXPECT(gopro_tls_config_set_server_name(tls, "not a name!"), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("not a name!");
  EXPECT(gopro_tls_config_set_client_auth(tls, 7), GOPRO_STATUS_INVALID_ARGUMENT);

  /* A server needs a certificate: this config has none, as every setter
   * above failed. */
  OK(gopro_server_config_new(&server_config));
  EXPECT(gopro_server_config_set_tls(server_config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_tls(NULL, tls), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_tls(server_config, tls), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("certificate");
  EXPECT(gopro_server_config_set_tls_handshake_timeout(server_config, 0),
         GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_tls_handshake_timeout(NULL, 10), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_server_config_set_tls_handshake_timeout(server_config,
                                                   GOPRO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS));
  /* The good ones pass, from files and from bytes. */
  OK(gopro_tls_config_set_cert_pem(tls, (const uint8_t *)cert_pem, cert_len,
                                   (const uint8_t *)key_pem, key_len));
  OK(gopro_tls_config_set_ca_pem(tls, (const uint8_t *)cert_pem, cert_len));
  OK(gopro_tls_config_set_ca_file(tls, cert("ca.pem")));
  OK(gopro_tls_config_set_server_name(tls, "127.0.0.1"));
  OK(gopro_tls_config_set_client_auth(tls, GOPRO_TLS_CLIENT_AUTH_REQUIRED));
  OK(gopro_server_config_set_tls(server_config, tls));
  OK(gopro_client_config_new(&client_config));
  EXPECT(gopro_client_config_set_tls(client_config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_config_set_tls(NULL, tls), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_client_config_set_tls(client_config, tls));
  gopro_tls_config_free(tls);
  gopro_client_config_free(client_config);
  gopro_server_config_free(server_config);

  /* Reloading a server without TLS, or none at all. */
  OK(gopro_server_start("127.0.0.1:0", NULL, &plain));
  EXPECT(gopro_server_reload_tls(plain), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("without TLS");
  EXPECT(gopro_server_reload_tls_pem(plain, (const uint8_t *)cert_pem, cert_len,
                                     (const uint8_t *)key_pem, key_len),
         GOPRO_STATUS_TLS_CONFIG);
  EXPECT(gopro_server_reload_tls(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  gopro_server_free(plain);

  /* Connection information only exists inside a server callback. */
  EXPECT(gopro_connection_peer(buf, sizeof buf, &len), GOPRO_STATUS_NOT_IN_CALLBACK);
  EXPECT(gopro_connection_client_common_name(buf, sizeof buf, &len),
         GOPRO_STATUS_NOT_IN_CALLBACK);
  EXPECT(gopro_connection_peer(buf, sizeof buf, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  free(cert_pem);
  free(key_pem);
  free(other_key);
}

/* ---- the C client against TLS servers that are not the C server ---- */

static void test_client_against_gopro_serve(const char *plain_addr) {
  struct server s;
  pid_t pid;
  gopro_client *client = NULL;
  memset(&s, 0, sizeof s);
  server_pick_port(&s);
  {
    const char *argv[] = {gopro_bin, "serve", "--listen", s.addr, "--tls-cert",
                          cert("server.pem"), "--tls-key", cert("server.key"), NULL};
    pid = spawn_server(argv, s.addr);
  }
  tls_ok(s.addr, "ca.pem", NULL, NULL);          /* by IP: the IP SAN */
  tls_ok(s.addr, "ca.pem", NULL, "localhost");   /* by name: the DNS SAN */
  tls_ok(s.addr, "ca.pem", "client", NULL);      /* a certificate nobody asked for */
  tls_refused(s.addr, "other-ca.pem", NULL, NULL, "UnknownIssuer");
  tls_refused(s.addr, "ca.pem", NULL, "example.invalid", "not valid for name");

  /* A plaintext client on the TLS port is told so in an ERROR. */
  OK(gopro_client_connect(s.addr, 2000, 5000, 0, &client));
  {
    gopro_frame *reply = NULL;
    EXPECT(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"hi", 2, &reply),
           GOPRO_STATUS_SERVER_ERROR);
    EXPECT_MESSAGE("this port requires TLS");
  }
  gopro_client_free(client);
  /* A TLS client on a plaintext port. */
  tls_refused(plain_addr, "ca.pem", NULL, NULL, "TLS");
  tls_ok(s.addr, "ca.pem", NULL, NULL); /* still serving */
  spawn_stop(pid);
}

static void test_client_against_go(void) {
  struct server s, m;
  pid_t pid, mtls;
  memset(&s, 0, sizeof s);
  memset(&m, 0, sizeof m);
  server_pick_port(&s);
  server_pick_port(&m);
  {
    const char *argv[] = {go_server_bin, "-addr", s.addr, "-quiet", "-tls-cert",
                          cert("server.pem"), "-tls-key", cert("server.key"), NULL};
    pid = spawn_server(argv, s.addr);
  }
  {
    const char *argv[] = {go_server_bin,     "-addr",       m.addr,
                          "-quiet",          "-tls-cert",   cert("server.pem"),
                          "-tls-key",        cert("server.key"), "-tls-client-ca",
                          cert("ca.pem"),    NULL};
    mtls = spawn_server(argv, m.addr);
  }
  tls_ok(s.addr, "ca.pem", NULL, NULL);
  tls_ok(s.addr, "ca.pem", NULL, "localhost");
  tls_refused(s.addr, "other-ca.pem", NULL, NULL, "UnknownIssuer");
  tls_ok(m.addr, "ca.pem", "client", NULL);
  client_certificate_refused(m.addr); /* Go requires the certificate */
  tls_ok(m.addr, "ca.pem", "client", NULL); /* still serving */
  spawn_stop(pid);
  spawn_stop(mtls);
}

/* ---- the C server with TLS ---- */

struct probe {
  pthread_mutex_t lock;
  int small_status; /* a 2-byte buffer for the common name */
  int size_status;  /* buf NULL, cap 0 */
  size_t size_len;
  char local_want[64];
};

/* Copies a connection value into `buf`; on failure makes the handler
 * answer ERROR naming the call. */
#define CONN(call, buf)                                                        \
  do {                                                                         \
    size_t n_ = 0;                                                             \
    gopro_status st_ = call((buf), sizeof(buf), &n_);                          \
    if (st_ != GOPRO_STATUS_OK) {                                              \
      gopro_reply_set_error(reply, #call " failed");                           \
      return (int)st_;                                                         \
    }                                                                          \
    CHECK(n_ == strlen(buf));                                                  \
  } while (0)

static int who(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
               gopro_reply *reply) {
  struct probe *probe = (struct probe *)user_data;
  char cn[128], version[32], sni[128], subject[256], peer[64], local[64], out[700];
  (void)body;
  (void)body_len;
  CONN(gopro_connection_client_common_name, cn);
  if (command == CMD_WHO) {
    const char *name = cn[0] != '\0' ? cn : "anonymous";
    char tiny[2];
    size_t n = 0;
    gopro_status small = gopro_connection_client_common_name(tiny, sizeof tiny, &n);
    gopro_status size = gopro_connection_client_common_name(NULL, 0, &n);
    pthread_mutex_lock(&probe->lock);
    probe->small_status = (int)small;
    probe->size_status = (int)size;
    probe->size_len = n;
    pthread_mutex_unlock(&probe->lock);
    return gopro_reply_set_body(reply, (const uint8_t *)name, strlen(name));
  }
  CONN(gopro_connection_tls_version, version);
  CONN(gopro_connection_tls_server_name, sni);
  CONN(gopro_connection_client_subject, subject);
  CONN(gopro_connection_peer, peer);
  CONN(gopro_connection_local, local);
  snprintf(out, sizeof out, "%s|%s|%s|%s|%s", version, sni, subject,
           strncmp(peer, "127.0.0.1:", 10) == 0 ? "loopback" : peer,
           strcmp(local, probe->local_want) == 0 ? "local ok" : local);
  return gopro_reply_set_body(reply, (const uint8_t *)out, strlen(out));
}

/* Accepts a LOGIN whose credentials are the client certificate's CN, or
 * "anonymous" from a client without a certificate. */
static int login_as_cn(void *user_data, const uint8_t *credentials, size_t len,
                       gopro_reply *reply) {
  char cn[128];
  size_t n = 0;
  (void)user_data;
  if (gopro_connection_client_common_name(cn, sizeof cn, &n) != GOPRO_STATUS_OK) {
    gopro_reply_set_error(reply, "no connection information");
    return GOPRO_STATUS_NOT_IN_CALLBACK;
  }
  if (n == 0) {
    snprintf(cn, sizeof cn, "anonymous");
    n = strlen(cn);
  }
  if (n != len || memcmp(cn, credentials, len) != 0) {
    gopro_reply_set_error(reply, "credentials are not the certificate's name");
    return GOPRO_STATUS_INVALID_ARGUMENT;
  }
  return GOPRO_STATUS_OK;
}

/* Starts a C server on a free port with TLS settings `tls` and the
 * handlers above; its address goes into `addr`. */
static gopro_server *tls_server(gopro_tls_config *tls, struct probe *probe, int with_login,
                                uint64_t handshake_ms, char *addr, size_t cap) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  uint16_t port = 0;
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_tls(config, tls));
  OK(gopro_server_config_set_grace(config, 500));
  if (handshake_ms > 0) {
    OK(gopro_server_config_set_tls_handshake_timeout(config, handshake_ms));
  }
  OK(gopro_server_config_set_handler(config, CMD_WHO, who, probe));
  OK(gopro_server_config_set_handler(config, CMD_INFO, who, probe));
  if (with_login) {
    OK(gopro_server_config_set_authenticator(config, login_as_cn, NULL));
  }
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  OK(gopro_server_port(server, &port));
  snprintf(addr, cap, "127.0.0.1:%u", (unsigned)port);
  snprintf(probe->local_want, sizeof probe->local_want, "%s", addr);
  return server;
}

/* The reply to `command` must be `want`. */
static void expect_request(gopro_client *client, uint8_t command, const char *want) {
  gopro_frame *reply = NULL;
  OK(gopro_client_request(client, command, NULL, 0, &reply));
  check_reply(reply, command, want, NULL);
  gopro_frame_free(reply);
}

/* Mutual TLS, required: the handler sees the client certificate; clients
 * without one (or with another CA's) are refused and the server goes on
 * serving. Foreign clients: gopro send, CPython, openssl. */
static void test_server_mtls(void) {
  struct probe probe;
  gopro_tls_config *tls = tls_config("ca.pem", "server", NULL);
  gopro_server *server;
  gopro_client *client = NULL;
  gopro_stats stats;
  char addr[64], port[16], out[1024];
  memset(&probe, 0, sizeof probe);
  pthread_mutex_init(&probe.lock, NULL);
  server = tls_server(tls, &probe, 0, 0, addr, sizeof addr);
  gopro_tls_config_free(tls);
  snprintf(port, sizeof port, "%s", strchr(addr, ':') + 1);

  EXPECT(tls_connect(addr, "ca.pem", "client", "localhost", &client), GOPRO_STATUS_OK);
  OK(gopro_client_heartbeat(client));
  expect_request(client, CMD_WHO, "device-42");
  expect_request(client, CMD_INFO, "TLSv1.3|localhost|CN=device-42|loopback|local ok");
  pthread_mutex_lock(&probe.lock);
  CHECK(probe.small_status == GOPRO_STATUS_BUFFER_TOO_SMALL);
  check_log_status(probe.small_status);
  CHECK(probe.size_status == GOPRO_STATUS_OK && probe.size_len == 9);
  pthread_mutex_unlock(&probe.lock);
  gopro_client_free(client);

  /* No SNI when connecting by IP without a server name. */
  EXPECT(tls_connect(addr, "ca.pem", "client", NULL, &client), GOPRO_STATUS_OK);
  expect_request(client, CMD_INFO, "TLSv1.3||CN=device-42|loopback|local ok");
  gopro_client_free(client);

  client_certificate_refused(addr);
  tls_refused(addr, "other-ca.pem", "client", NULL, "UnknownIssuer");

  /* gopro send (rustls, the CLI), CPython's ssl and openssl s_client. */
  {
    const char *argv[] = {gopro_bin,      "send",           "--addr",        addr,
                          "--command",    "16",             "--tls-ca",      cert("ca.pem"),
                          "--tls-cert",   cert("client.pem"), "--tls-key",   cert("client.key"),
                          "x",            NULL};
    CHECK(run_capture(argv, out, sizeof out) == 0);
    CHECK(contains(out, "device-42"));
  }
  {
    const char *argv[] = {gopro_bin, "send", "--addr", addr, "--command", "16",
                          "--tls-ca", cert("ca.pem"), "x", NULL};
    CHECK(run_capture(argv, NULL, 0) != 0); /* no client certificate */
  }
  {
    char script[512];
    snprintf(script, sizeof script, "%s/tls_heartbeat.py", lib_dir);
    const char *argv[] = {"python3",     script,           "127.0.0.1",       port,
                          "--ca",        cert("ca.pem"),   "--cert",          cert("client.pem"),
                          "--key",       cert("client.key"), NULL};
    CHECK(run_capture(argv, out, sizeof out) == 0);
    CHECK(contains(out, "OK: HEARTBEAT and MESSAGE echoed"));
    const char *refused[] = {"python3", script, "127.0.0.1", port, "--ca", cert("ca.pem"), NULL};
    CHECK(run_capture(refused, NULL, 0) == 1);
  }
  {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             ". '%s/tls-peers.sh' && tls_heartbeat_s_client 127.0.0.1 %s '%s' localhost "
             "-cert '%s' -key '%s'",
             lib_dir, port, cert("ca.pem"), cert("client.pem"), cert("client.key"));
    const char *argv[] = {"bash", "-c", cmd, NULL};
    CHECK(run_capture(argv, NULL, 0) == 0);
  }

  /* Still serving after every refusal. */
  EXPECT(tls_connect(addr, "ca.pem", "client", NULL, &client), GOPRO_STATUS_OK);
  expect_request(client, CMD_WHO, "device-42");
  gopro_client_free(client);

  OK(gopro_server_stop(server));
  OK(gopro_server_stats(server, &stats, sizeof stats));
  /* Handshakes: 2 C clients, gopro send, CPython, s_client, the last C
   * client. Refused: 2 C clients without a good certificate, one that
   * refused the server, gopro send and CPython without a certificate. */
  if (stats.tls_handshakes != 6 || stats.errors_tls != 5) {
    fprintf(stderr, "tls_handshakes %llu, errors_tls %llu\n",
            (unsigned long long)stats.tls_handshakes, (unsigned long long)stats.errors_tls);
    exit(1);
  }
  gopro_server_free(server);
  pthread_mutex_destroy(&probe.lock);
}

/* Client certificates optional: the authenticator tells a client with a
 * certificate (its CN logs in) from one without ("anonymous" does). */
static void test_server_optional_client_auth(void) {
  struct probe probe;
  gopro_tls_config *tls = tls_config("ca.pem", "server", NULL);
  gopro_server *server;
  gopro_client *client = NULL;
  char addr[64];
  memset(&probe, 0, sizeof probe);
  pthread_mutex_init(&probe.lock, NULL);
  OK(gopro_tls_config_set_client_auth(tls, GOPRO_TLS_CLIENT_AUTH_OPTIONAL));
  server = tls_server(tls, &probe, 1, 0, addr, sizeof addr);
  gopro_tls_config_free(tls);

  EXPECT(tls_connect(addr, "ca.pem", NULL, NULL, &client), GOPRO_STATUS_OK);
  OK(gopro_client_heartbeat(client)); /* needs no login */
  EXPECT(gopro_client_login(client, (const uint8_t *)"device-42", 9), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE_HAS("credentials are not the certificate's name");
  OK(gopro_client_login(client, (const uint8_t *)"anonymous", 9));
  expect_request(client, CMD_WHO, "anonymous");
  expect_request(client, CMD_INFO, "TLSv1.3|||loopback|local ok");
  gopro_client_free(client);
  EXPECT(tls_connect(addr, "ca.pem", "client", NULL, &client), GOPRO_STATUS_OK);
  EXPECT(gopro_client_login(client, (const uint8_t *)"device-7", 8), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE_HAS("credentials are not the certificate's name");
  OK(gopro_client_login(client, (const uint8_t *)"device-42", 9));
  expect_request(client, CMD_WHO, "device-42");
  gopro_client_free(client);
  gopro_server_free(server);
  pthread_mutex_destroy(&probe.lock);
}

/* Refused server certificates (expired, another host's), a plaintext
 * client and a silent one on the TLS port; statistics. */
static void test_server_refusals(void) {
  struct probe probe;
  gopro_tls_config *tls;
  gopro_server *server;
  gopro_client *client = NULL;
  gopro_stats stats;
  char addr[64];
  memset(&probe, 0, sizeof probe);
  pthread_mutex_init(&probe.lock, NULL);

  tls = tls_config(NULL, "expired", NULL);
  server = tls_server(tls, &probe, 0, 0, addr, sizeof addr);
  gopro_tls_config_free(tls);
  tls_refused(addr, "ca.pem", NULL, NULL, "certificate expired");
  gopro_server_free(server);

  /* wrong-host.pem names example.invalid only; 300 ms for handshakes. */
  tls = tls_config(NULL, "wrong-host", NULL);
  server = tls_server(tls, &probe, 0, 300, addr, sizeof addr);
  gopro_tls_config_free(tls);
  tls_refused(addr, "ca.pem", NULL, NULL, "not valid for name");
  tls_refused(addr, "ca.pem", NULL, "localhost", "not valid for name");
  tls_ok(addr, "ca.pem", NULL, "example.invalid");

  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  EXPECT(gopro_client_heartbeat(client), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("this port requires TLS");
  gopro_client_free(client);

  /* A client that sends nothing is closed at the handshake timeout. */
  {
    int fd;
    char byte;
    struct timespec start, end;
    long ms;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    {
      struct sockaddr_in sa;
      memset(&sa, 0, sizeof sa);
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      sa.sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1));
      CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    CHECK(read(fd, &byte, 1) <= 0); /* closed, nothing sent */
    clock_gettime(CLOCK_MONOTONIC, &end);
    ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    CHECK(ms >= 250 && ms < 5000);
    close(fd);
  }
  tls_ok(addr, "ca.pem", NULL, "example.invalid"); /* still serving */

  OK(gopro_server_stop(server));
  OK(gopro_server_stats(server, &stats, sizeof stats));
  /* Handshakes: the two clients for example.invalid. Refused: the two
   * clients that refused the certificate, the plaintext client, the
   * silent one. */
  if (stats.tls_handshakes != 2 || stats.errors_tls != 4) {
    fprintf(stderr, "tls_handshakes %llu, errors_tls %llu\n",
            (unsigned long long)stats.tls_handshakes, (unsigned long long)stats.errors_tls);
    exit(1);
  }
  {
    /* A struct of the first version (13 counters) gets those only. */
    uint64_t v1[14];
    memset(v1, 0xAA, sizeof v1);
    OK(gopro_server_stats(server, (gopro_stats *)(void *)v1, 13 * sizeof(uint64_t)));
    CHECK(v1[13] == 0xAAAAAAAAAAAAAAAAull);
    CHECK(v1[5] == stats.memory_budget);
  }
  gopro_server_free(server);
  pthread_mutex_destroy(&probe.lock);
}

/* Reloading: a bad file keeps the certificate in use; a new one is used
 * for new connections while open ones keep theirs. */
static void test_server_reload(void) {
  struct probe probe;
  gopro_tls_config *tls = NULL;
  gopro_server *server;
  gopro_client *before = NULL, *client = NULL;
  size_t cert_len = 0, key_len = 0, other_len = 0;
  char *cert_pem = read_file(cert("server.pem"), &cert_len);
  char *key_pem = read_file(cert("server.key"), &key_len);
  char *other_key = read_file(cert("client.key"), &other_len);
  char addr[64];
  memset(&probe, 0, sizeof probe);
  pthread_mutex_init(&probe.lock, NULL);
  copy_file(cert("server.pem"), work_path("live.pem"));
  copy_file(cert("server.key"), work_path("live.key"));
  OK(gopro_tls_config_new(&tls));
  OK(gopro_tls_config_set_cert_files(tls, work_path("live.pem"), work_path("live.key")));
  server = tls_server(tls, &probe, 0, 0, addr, sizeof addr);
  gopro_tls_config_free(tls);

  EXPECT(tls_connect(addr, "ca.pem", NULL, NULL, &before), GOPRO_STATUS_OK);
  /* A broken file: refused, the old certificate stays. */
  write_file(work_path("live.pem"), "-----BEGIN CERTIFICATE-----\nnope\n", 34);
  EXPECT(gopro_server_reload_tls(server), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("live.pem");
  tls_ok(addr, "ca.pem", NULL, NULL);
  /* A key of another certificate: refused. */
  copy_file(cert("server.pem"), work_path("live.pem"));
  copy_file(cert("client.key"), work_path("live.key"));
  EXPECT(gopro_server_reload_tls(server), GOPRO_STATUS_TLS_CONFIG);
  EXPECT_MESSAGE_HAS("does not fit");
  tls_ok(addr, "ca.pem", NULL, NULL);
  /* wrong-host.pem: new connections by IP are refused, by its name let in;
   * the connection made before keeps working. */
  copy_file(cert("wrong-host.pem"), work_path("live.pem"));
  copy_file(cert("wrong-host.key"), work_path("live.key"));
  OK(gopro_server_reload_tls(server));
  tls_refused(addr, "ca.pem", NULL, NULL, "not valid for name");
  tls_ok(addr, "ca.pem", NULL, "example.invalid");
  OK(gopro_client_heartbeat(before));
  /* Back to server.pem from bytes; bad bytes are refused first. */
  EXPECT(gopro_server_reload_tls_pem(server, (const uint8_t *)cert_pem, cert_len,
                                     (const uint8_t *)other_key, other_len),
         GOPRO_STATUS_TLS_CONFIG);
  EXPECT(gopro_server_reload_tls_pem(server, NULL, 1, (const uint8_t *)key_pem, key_len),
         GOPRO_STATUS_NULL_ARGUMENT);
  tls_ok(addr, "ca.pem", NULL, "example.invalid");
  OK(gopro_server_reload_tls_pem(server, (const uint8_t *)cert_pem, cert_len,
                                 (const uint8_t *)key_pem, key_len));
  tls_ok(addr, "ca.pem", NULL, NULL);
  EXPECT(tls_connect(addr, "ca.pem", NULL, NULL, &client), GOPRO_STATUS_OK);
  gopro_client_free(client);
  gopro_client_free(before);
  gopro_server_free(server);
  free(cert_pem);
  free(key_pem);
  free(other_key);
  pthread_mutex_destroy(&probe.lock);
}

int main(int argc, char **argv) {
  gopro_server *plain = NULL;
  uint16_t plain_port = 0;
  char plain_addr[64];
  if (argc != 6) {
    fprintf(stderr, "usage: test_tls GOPRO_BIN GO_SERVER_BIN CERT_DIR SCRIPTS_LIB_DIR WORK_DIR\n");
    return 2;
  }
  gopro_bin = argv[1];
  go_server_bin = argv[2];
  cert_dir = argv[3];
  lib_dir = argv[4];
  work_dir = argv[5];
  /* SIGPIPE keeps its default action: a write of the library to a peer
   * that has gone must fail, not kill the program. */

  OK(gopro_server_start("127.0.0.1:0", NULL, &plain));
  OK(gopro_server_port(plain, &plain_port));
  snprintf(plain_addr, sizeof plain_addr, "127.0.0.1:%u", (unsigned)plain_port);

  test_tls_config_errors();
  test_client_against_gopro_serve(plain_addr);
  test_client_against_go();
  test_server_mtls();
  test_server_optional_client_auth();
  test_server_refusals();
  test_server_reload();
  gopro_server_free(plain);
  printf("test_tls: passed\n");
  return 0;
}

//! TLS: the server and client over rustls, every refusal typed and the
//! server serving others meanwhile, certificates reloaded in place, the
//! client certificate's identity in the handlers, and interop with Go's
//! crypto/tls (a TLS stack that is not rustls).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::{scratch, write, Ca};
use common::server::{start, Peer, Running};
use gopro::client::{Client, ClientError};
use gopro::server::{ConnectionInfo, Server, ServerBuilder};
use gopro::settings::{DefaultValue, ServerSetting};
use gopro::tls::{ClientAuth, ClientTls, ServerTls, TlsError};
use gopro::{Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TLS server with a certificate from `ca` (or the one given).
async fn tls_server(builder: ServerBuilder, tls: ServerTls) -> Running {
    start(builder.tls(tls)).await
}

fn server_tls(ca: &Ca) -> ServerTls {
    let pem = ca.server();
    ServerTls::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()
}

async fn connect(addr: &str, tls: ClientTls) -> Result<Client, ClientError> {
    Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .tls(tls)
        .connect(addr)
        .await
}

fn trusting(ca: &Ca) -> ClientTls {
    ClientTls::ca_pem(ca.pem().as_bytes()).unwrap()
}

/// An echo of command 16, for bodies of any size.
fn echo_16(builder: ServerBuilder) -> ServerBuilder {
    builder.handler(16, |frame: Frame| async move {
        Ok::<_, std::convert::Infallible>(frame.body)
    })
}

fn assert_tls_error(result: Result<impl std::fmt::Debug, ClientError>, needle: &str) {
    match result {
        Err(ClientError::Tls { reason, .. }) => {
            assert!(reason.contains(needle), "{reason:?} should say {needle:?}")
        }
        other => panic!("expected a TLS error saying {needle:?}, got {other:?}"),
    }
}

/// The server still serves a good client.
async fn still_serves(addr: &str, ca: &Ca) {
    let client = connect(addr, trusting(ca)).await.unwrap();
    let reply = client.request(Command::MESSAGE, "still").await.unwrap();
    assert_eq!(reply.body, "Server says: still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_cross_tls_whole_and_in_order_for_many_callers() {
    let ca = Ca::new("test CA");
    let server = tls_server(echo_16(Server::builder()), server_tls(&ca)).await;
    let addr = server.addr.to_string();
    let client = connect(&addr, trusting(&ca)).await.unwrap();
    client.heartbeat().await.unwrap();
    let reply = client.request(Command::MESSAGE, "over TLS").await.unwrap();
    assert_eq!(reply.body, "Server says: over TLS");

    // Larger than a TLS record and than the server's read buffer: split
    // into records, written over many socket writes both ways.
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = client.request(16, big.clone()).await.unwrap();
    assert_eq!(reply.body.len(), big.len());
    assert!(reply.body == big, "the 3 MiB body came back changed");

    // 32 tasks pipelining through one TLS connection.
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for c in 0..40 {
                    let body = format!("{t}-{c}-{}", "y".repeat((t * 13 + c) % 300));
                    let reply = client.request(16, body.clone()).await.unwrap();
                    assert_eq!(reply.body, body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn the_server_name_is_checked_by_address_or_given_name() {
    let ca = Ca::new("test CA");
    let server = tls_server(Server::builder(), server_tls(&ca)).await;
    let port = server.addr.port();
    // The certificate names 127.0.0.1 and localhost.
    still_serves(&format!("127.0.0.1:{port}"), &ca).await;
    still_serves(&format!("localhost:{port}"), &ca).await;
    let named = trusting(&ca).server_name("localhost").unwrap();
    connect(&format!("127.0.0.1:{port}"), named)
        .await
        .unwrap()
        .heartbeat()
        .await
        .unwrap();
    let other = trusting(&ca).server_name("example.invalid").unwrap();
    assert_tls_error(
        connect(&format!("127.0.0.1:{port}"), other).await,
        "not valid for name",
    );
    // A certificate for another host only.
    let wrong = ca.server_for(&["example.invalid"]);
    let misnamed = tls_server(
        Server::builder(),
        ServerTls::from_pem(wrong.cert.as_bytes(), wrong.key.as_bytes()).unwrap(),
    )
    .await;
    assert_tls_error(
        connect(&misnamed.addr.to_string(), trusting(&ca)).await,
        "not valid for name",
    );
    assert!(matches!(
        trusting(&ca).server_name("not a name!"),
        Err(TlsError::ServerName { .. })
    ));
    server.stop().await;
    misnamed.stop().await;
}

#[tokio::test]
async fn an_untrusted_or_expired_certificate_is_refused_and_others_served() {
    let ca = Ca::new("test CA");
    let stranger = Ca::new("another CA");
    let server = tls_server(Server::builder(), server_tls(&ca)).await;
    let addr = server.addr.to_string();
    assert_tls_error(connect(&addr, trusting(&stranger)).await, "UnknownIssuer");
    still_serves(&addr, &ca).await;

    let old = ca.expired_server();
    let expired = tls_server(
        Server::builder(),
        ServerTls::from_pem(old.cert.as_bytes(), old.key.as_bytes()).unwrap(),
    )
    .await;
    assert_tls_error(
        connect(&expired.addr.to_string(), trusting(&ca)).await,
        "certificate expired",
    );
    server.stop().await;
    expired.stop().await;
}

/// The common name of the client certificate, as the handler sees it.
fn whoami(builder: ServerBuilder) -> ServerBuilder {
    builder.handler(17, |_frame: Frame| async move {
        let info = ConnectionInfo::current().expect("inside a handler");
        let tls = info.tls.as_ref().expect("a TLS connection");
        assert_eq!(tls.version, "TLSv1.3");
        let name = match &tls.client {
            Some(id) => format!(
                "{} {} {}",
                id.common_name.clone().unwrap_or_default(),
                id.dns_names.join(","),
                id.uris.join(",")
            ),
            None => "anonymous".to_string(),
        };
        Ok::<_, std::convert::Infallible>(name)
    })
}

#[tokio::test]
async fn mutual_tls_gives_handlers_and_the_authenticator_the_client_identity() {
    let ca = Ca::new("test CA");
    let clients = Ca::new("device CA");
    let tls = server_tls(&ca)
        .client_ca_pem(clients.pem().as_bytes())
        .unwrap();
    // The authenticator lets in only device-42, by certificate.
    let builder = whoami(Server::builder()).authenticator(|_credentials: Bytes| async move {
        let info = ConnectionInfo::current().expect("inside the authenticator");
        let cn = info
            .tls
            .as_ref()
            .and_then(|t| t.client.as_ref())
            .and_then(|c| c.common_name.clone());
        if cn.as_deref() == Some("device-42") {
            Ok(())
        } else {
            Err(format!("certificate {cn:?} may not log in"))
        }
    });
    let server = tls_server(builder, tls).await;
    let addr = server.addr.to_string();

    let device = clients.client("device-42");
    let with_cert = trusting(&ca)
        .identity_pem(device.cert.as_bytes(), device.key.as_bytes())
        .unwrap();
    let client = connect(&addr, with_cert).await.unwrap();
    client.login("anything").await.unwrap();
    let reply = client.request(17, "").await.unwrap();
    assert_eq!(
        reply.body,
        "device-42 device-42.example spiffe://gopro.test/device-42"
    );

    let other = clients.client("device-7");
    let client7 = connect(
        &addr,
        trusting(&ca)
            .identity_pem(other.cert.as_bytes(), other.key.as_bytes())
            .unwrap(),
    )
    .await
    .unwrap();
    match client7.login("anything").await {
        Err(ClientError::Server { reason }) => assert!(reason.contains("device-7"), "{reason}"),
        other => panic!("device-7 logged in: {other:?}"),
    }

    // No certificate: refused in the handshake. Under TLS 1.3 the client
    // learns it at its first request, as the server's alert arrives: that
    // request, and every later call, fails with the TLS error.
    let anonymous = connect(&addr, trusting(&ca)).await;
    let anonymous = match anonymous {
        Ok(client) => {
            let first = client.heartbeat().await.map(|_| ());
            assert_tls_error(first, "CertificateRequired");
            client.heartbeat().await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    assert_tls_error(anonymous, "CertificateRequired");
    // A certificate from a CA the server does not trust for clients.
    let stray = Ca::new("stray CA").client("device-42");
    let strayed = match connect(
        &addr,
        trusting(&ca)
            .identity_pem(stray.cert.as_bytes(), stray.key.as_bytes())
            .unwrap(),
    )
    .await
    {
        Ok(client) => client.heartbeat().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_tls_error(strayed, "");
    // The device is still served.
    assert_eq!(
        client.request(17, "").await.unwrap().body.len(),
        reply.body.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn optional_client_certificates_let_both_in_and_say_which() {
    let ca = Ca::new("test CA");
    let clients = Ca::new("device CA");
    let tls = server_tls(&ca)
        .client_ca_pem(clients.pem().as_bytes())
        .unwrap()
        .client_auth(ClientAuth::Optional);
    let server = tls_server(whoami(Server::builder()), tls).await;
    let addr = server.addr.to_string();
    let anonymous = connect(&addr, trusting(&ca)).await.unwrap();
    assert_eq!(anonymous.request(17, "").await.unwrap().body, "anonymous");
    let device = clients.client("device-9");
    let known = connect(
        &addr,
        trusting(&ca)
            .identity_pem(device.cert.as_bytes(), device.key.as_bytes())
            .unwrap(),
    )
    .await
    .unwrap();
    let reply = known.request(17, "").await.unwrap();
    assert!(reply.body.starts_with(b"device-9 "), "{reply:?}");
    server.stop().await;
}

#[tokio::test]
async fn plaintext_on_a_tls_port_and_tls_on_a_plaintext_port_are_told_apart() {
    let ca = Ca::new("test CA");
    let tls = tls_server(Server::builder(), server_tls(&ca)).await;
    // A plaintext GoPro client hears why, in its own protocol.
    let mut peer = Peer::connect(tls.addr).await;
    peer.send(&Frame::heartbeat()).await;
    let reply = peer.recv().await.expect("an ERROR frame");
    assert_eq!(reply.command, Command::ERROR);
    assert_eq!(reply.body, "this port requires TLS");
    assert!(peer.recv().await.is_none(), "then the end of the stream");
    still_serves(&tls.addr.to_string(), &ca).await;

    // A TLS client on a plaintext port: its handshake fails, typed.
    let plain = start(Server::builder()).await;
    assert_tls_error(connect(&plain.addr.to_string(), trusting(&ca)).await, "");
    let client = Client::connect(&plain.addr.to_string()).await.unwrap();
    client.heartbeat().await.unwrap();
    tls.stop().await;
    plain.stop().await;
}

/// A client whose last request and close_notify come in one read, and
/// which keeps its socket open (waiting for our close_notify, as some TLS
/// stacks do): it gets its reply and then the end at once, not at the read
/// timeout. (The read that brought both drained the socket, clearing its
/// readiness: the close_notify alone must make the stream readable.)
#[tokio::test]
async fn a_close_notify_without_a_fin_ends_the_connection_at_once() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    use std::io::{Read as _, Write as _};

    let ca = Ca::new("test CA");
    let server = start(
        Server::builder()
            .tls(server_tls(&ca))
            .read_timeout(Duration::from_secs(60)),
    )
    .await;
    let addr = server.addr;
    let pem = ca.pem();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        // The request and the close_notify, written together.
        conn.writer()
            .write_all(&Frame::heartbeat().to_bytes())
            .unwrap();
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        let started = Instant::now();
        let mut plaintext = Vec::new();
        loop {
            match conn.read_tls(&mut sock) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("no end after {:?}: {e}", started.elapsed())),
            }
            let state = conn.process_new_packets().map_err(|e| e.to_string())?;
            let mut chunk = vec![0; state.plaintext_bytes_to_read()];
            conn.reader().read_exact(&mut chunk).unwrap();
            plaintext.extend_from_slice(&chunk);
            if state.peer_has_closed() {
                break;
            }
        }
        Ok((plaintext, started.elapsed()))
    })
    .await
    .unwrap();
    let (plaintext, took) = outcome.unwrap();
    assert_eq!(plaintext, Frame::heartbeat().to_bytes());
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
    still_serves(&addr.to_string(), &ca).await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_is_closed_at_once_and_a_trickled_hello_at_the_deadline() {
    let ca = Ca::new("test CA");
    let server = start(
        Server::builder()
            .tls(server_tls(&ca))
            .tls_handshake_timeout(Duration::from_millis(600)),
    )
    .await;
    let addr = server.addr;

    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), garbage.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "garbage was not closed at once");
    assert!(rest.is_empty(), "garbage got an answer: {rest:?}");

    // A ClientHello one byte at a time, slower than the deadline allows.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let trickling = tokio::spawn(async move {
        let hello = [
            0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        for byte in hello.iter().cycle().take(100) {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut rest = Vec::new();
        let _ = trickle.read_to_end(&mut rest).await;
        started.elapsed()
    });
    // Others are served meanwhile.
    still_serves(&addr.to_string(), &ca).await;
    let lasted = tokio::time::timeout(Duration::from_secs(8), trickling)
        .await
        .expect("the trickling client was closed")
        .unwrap();
    assert!(
        lasted >= Duration::from_millis(500) && lasted < Duration::from_secs(5),
        "closed after {lasted:?}"
    );
    still_serves(&addr.to_string(), &ca).await;
    server.stop().await;
}

/// The pieces a trickled ClientHello is sent in.
const PIECES: u32 = 20;

/// A relay to `server` that passes the client's ClientHello on in
/// [`PIECES`] pieces, the first at once and the last after `spread`, and
/// everything else as it comes. Returns its address and a task that ends
/// with the time from its connection to the server until the server
/// closed that connection (an upper bound on how long the server kept it).
async fn trickling_relay(server: SocketAddr, spread: Duration) -> (String, JoinHandle<Duration>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        let (mut from_client, mut to_client) = client.into_split();
        // The first TLS record: the ClientHello.
        let mut hello = vec![0u8; 5];
        from_client.read_exact(&mut hello).await.unwrap();
        assert_eq!(hello[0], 0x16, "a handshake record");
        let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        hello.resize(5 + len, 0);
        from_client.read_exact(&mut hello[5..]).await.unwrap();

        // Taken before the server can have accepted, and so started its
        // deadline.
        let started = Instant::now();
        let upstream = TcpStream::connect(server).await.unwrap();
        upstream.set_nodelay(true).unwrap();
        let (mut from_server, mut to_server) = upstream.into_split();
        let down = async move {
            // A reset counts as a close too.
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            let closed = started.elapsed();
            let _ = to_client.shutdown().await;
            closed
        };
        let up = async move {
            let size = hello.len().div_ceil(PIECES as usize);
            for (i, piece) in (0u32..).zip(hello.chunks(size)) {
                tokio::time::sleep_until((started + spread * i / (PIECES - 1)).into()).await;
                if to_server.write_all(piece).await.is_err() {
                    return;
                }
            }
            let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
            let _ = to_server.shutdown().await;
        };
        tokio::pin!(down);
        tokio::select! {
            closed = &mut down => closed,
            () = up => down.await,
        }
    });
    (addr, task)
}

/// Around the deadline (2 s here): a ClientHello trickled in over half of
/// it makes a handshake that succeeds; one trickled over twice the
/// deadline is closed at the deadline, not before and not much after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_inside_the_deadline_succeeds_and_one_past_it_is_closed_at_it() {
    let deadline = Duration::from_secs(2);
    // How late a close may be on a loaded machine.
    let margin = Duration::from_millis(1500);
    let ca = Ca::new("test CA");
    let server = start(
        Server::builder()
            .tls(server_tls(&ca))
            .tls_handshake_timeout(deadline),
    )
    .await;
    let (inside, inside_relay) = trickling_relay(server.addr, deadline / 2).await;
    let (past, past_relay) = trickling_relay(server.addr, deadline * 2).await;
    let ca_past = trusting(&ca);
    let past_client = tokio::spawn(async move {
        let started = Instant::now();
        (connect(&past, ca_past).await.err(), started.elapsed())
    });

    let started = Instant::now();
    let client = connect(&inside, trusting(&ca))
        .await
        .expect("a handshake finished at half the deadline");
    let took = started.elapsed();
    assert!(took >= deadline / 2, "the hello was not trickled: {took:?}");
    let reply = client.request(Command::MESSAGE, "inside").await.unwrap();
    assert_eq!(reply.body, "Server says: inside");
    // Past the deadline, the connection is still served: the deadline
    // ended with the handshake.
    tokio::time::sleep_until((started + deadline + Duration::from_millis(300)).into()).await;
    let reply = client.request(Command::MESSAGE, "still").await.unwrap();
    assert_eq!(reply.body, "Server says: still");
    drop(client);
    inside_relay.await.unwrap();

    let closed = past_relay.await.unwrap();
    assert!(
        closed >= deadline && closed < deadline + margin,
        "the late handshake was closed after {closed:?}; the deadline is {deadline:?}"
    );
    let (error, failed_after) = past_client.await.unwrap();
    assert!(error.is_some(), "the late handshake succeeded");
    assert!(
        failed_after < deadline + margin,
        "{failed_after:?}: {error:?}"
    );
    still_serves(&server.addr.to_string(), &ca).await;
    server.stop().await;
}

/// Without the setting a handshake has 10 s, as the settings table says.
/// On tokio's paused clock, which jumps to the next timer whenever the
/// runtime waits (the test makes none), so the 10 s pass at once: a
/// connection that starts a handshake and stops is closed 10 s after it
/// connected, by that clock.
#[tokio::test(start_paused = true)]
async fn without_the_setting_a_handshake_has_10_s() {
    let default = Duration::from_secs(10);
    assert_eq!(gopro::server::DEFAULT_TLS_HANDSHAKE_TIMEOUT, default);
    assert_eq!(
        ServerSetting::TlsHandshakeTimeout.default_value(),
        DefaultValue::Duration(default)
    );
    let ca = Ca::new("test CA");
    let server = tls_server(Server::builder(), server_tls(&ca)).await;
    let started = tokio::time::Instant::now();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    // The start of a handshake record, and no more.
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    let closed = started.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        closed >= default && closed < default + Duration::from_millis(100),
        "closed after {closed:?} (paused clock)"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reload_changes_the_certificate_for_new_connections_only() {
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let tls = server_tls(&first);
    let server = tls_server(Server::builder(), tls.clone()).await;
    let addr = server.addr.to_string();
    let before = connect(&addr, trusting(&first)).await.unwrap();
    before.heartbeat().await.unwrap();
    let in_use = tls.certificate();

    // A reload that fails changes nothing.
    let broken = tls.reload_pem(b"not PEM", b"not PEM");
    assert!(matches!(broken, Err(TlsError::Pem { .. })), "{broken:?}");
    let other = second.server();
    let mismatched = tls.reload_pem(other.cert.as_bytes(), first.server().key.as_bytes());
    assert!(
        matches!(mismatched, Err(TlsError::Key { .. })),
        "{mismatched:?}"
    );
    assert_eq!(tls.certificate(), in_use);
    still_serves(&addr, &first).await;

    // A good one is used by the next handshakes; open connections stay.
    tls.reload_pem(other.cert.as_bytes(), other.key.as_bytes())
        .unwrap();
    assert_ne!(tls.certificate(), in_use);
    before.heartbeat().await.unwrap();
    assert_tls_error(connect(&addr, trusting(&first)).await, "UnknownIssuer");
    still_serves(&addr, &second).await;
    before
        .request(Command::MESSAGE, "kept")
        .await
        .map(|r| assert_eq!(r.body, "Server says: kept"))
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn reload_reads_the_files_again() {
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let dir = scratch("reload");
    let pem = first.server();
    let cert = write(&dir, "server.pem", &pem.cert);
    let key = write(&dir, "server.key", &pem.key);
    let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
    let server = tls_server(Server::builder(), tls.clone()).await;
    let addr = server.addr.to_string();
    still_serves(&addr, &first).await;
    // A half-written file: refused, the old certificate stays.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    assert!(tls.reload().is_err());
    still_serves(&addr, &first).await;
    let next = second.server();
    write(&dir, "server.pem", &next.cert);
    write(&dir, "server.key", &next.key);
    tls.reload().unwrap();
    still_serves(&addr, &second).await;
    server.stop().await;
}

#[test]
fn bad_pem_files_are_refused_where_they_are_given_naming_the_file() {
    let dir = scratch("bad-pem");
    let missing = dir.join("missing.pem");
    let err = ServerTls::from_pem_files(&missing, &missing).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { source_name, .. } if source_name.contains("missing.pem")),
        "{err:?}"
    );
    let garbage = write(&dir, "garbage.pem", "hello\n");
    let err = ClientTls::ca_file(&garbage).unwrap_err();
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    let ca = Ca::new("test CA");
    let pem = ca.server();
    let err = ServerTls::from_pem(pem.cert.as_bytes(), b"").unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    let other = ca.server();
    let err = ServerTls::from_pem(pem.cert.as_bytes(), other.key.as_bytes()).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }), "{err:?}");
}

#[tokio::test]
async fn a_zero_handshake_timeout_is_refused() {
    let ca = Ca::new("test CA");
    let result = Server::builder()
        .listen("127.0.0.1:0")
        .tls(server_tls(&ca))
        .tls_handshake_timeout(Duration::ZERO)
        .bind()
        .await;
    assert!(result.is_err());
    assert!(result
        .err()
        .unwrap()
        .to_string()
        .contains("tls_handshake_timeout"));
}

#[tokio::test]
async fn the_stats_count_handshakes_and_refusals() {
    let ca = Ca::new("test CA");
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .tls(server_tls(&ca))
        .bind()
        .await
        .unwrap();
    let stats = server.stats();
    let addr = server.local_addr().to_string();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    still_serves(&addr, &ca).await;
    let _ = connect(&addr, trusting(&Ca::new("stranger"))).await;
    let mut peer = Peer::connect(addr.parse().unwrap()).await;
    peer.send(&Frame::heartbeat()).await;
    let _ = peer.recv().await;
    let s = stats.snapshot();
    assert_eq!(s.tls_handshakes, 1, "{s:?}");
    assert_eq!(s.errors.tls, 2, "{s:?}");
    handle.shutdown();
    task.await.unwrap();
}

/// A shared, reconnecting client over TLS rides a server restart (GOAWAY)
/// on the same port: the new connection does its handshake again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_tls_client_rides_a_restart() {
    let ca = Ca::new("test CA");
    let tls = server_tls(&ca);
    let first = tls_server(Server::builder(), tls.clone()).await;
    let addr = first.addr;
    let client = Client::builder()
        .tls(trusting(&ca))
        .reconnect(true)
        .connect(&addr.to_string())
        .await
        .unwrap();
    client.heartbeat().await.unwrap();
    first.stop().await;
    let server = Server::builder()
        .listen(addr.to_string())
        .tls(tls)
        .bind()
        .await
        .unwrap();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    let reply = client.request(Command::MESSAGE, "again").await.unwrap();
    assert_eq!(reply.body, "Server says: again");
    assert!(client.stats().reconnects >= 1);
    handle.shutdown();
    task.await.unwrap();
}

/// Go's crypto/tls on the other side, both ways.
#[cfg(feature = "cli")]
mod interop {
    use super::*;
    use common::process::{go_bin, go_serve};

    #[tokio::test]
    async fn the_gopro_client_talks_to_the_go_tls_server() {
        let ca = Ca::new("test CA");
        let dir = scratch("go-server");
        let pem = ca.server();
        let cert = write(&dir, "server.pem", &pem.cert);
        let key = write(&dir, "server.key", &pem.key);
        let go = go_serve(&[
            "-tls-cert",
            cert.to_str().unwrap(),
            "-tls-key",
            key.to_str().unwrap(),
        ]);
        let client = connect(&go.addr.to_string(), trusting(&ca)).await.unwrap();
        client.heartbeat().await.unwrap();
        let reply = client.request(Command::MESSAGE, "to Go").await.unwrap();
        assert_eq!(reply.body, "Server says: to Go");
        assert_tls_error(
            connect(&go.addr.to_string(), trusting(&Ca::new("stranger"))).await,
            "UnknownIssuer",
        );
    }

    // The Go client is run from the test's thread: a second worker serves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_go_tls_client_talks_to_the_gopro_server_with_mutual_tls() {
        let ca = Ca::new("test CA");
        let dir = scratch("go-client");
        let ca_file = write(&dir, "ca.pem", &ca.pem());
        let device = ca.client("device-1");
        let cert = write(&dir, "client.pem", &device.cert);
        let key = write(&dir, "client.key", &device.key);
        let tls = server_tls(&ca).client_ca_pem(ca.pem().as_bytes()).unwrap();
        let server = tls_server(Server::builder(), tls).await;
        let run = |extra: &[&str]| {
            let out = std::process::Command::new(go_bin().join("client"))
                .args([
                    "-addr",
                    &server.addr.to_string(),
                    "-scenario",
                    "all",
                    "-tls-ca",
                ])
                .arg(&ca_file)
                .args(extra)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), text)
        };
        let (ok, text) = run(&[
            "-tls-cert",
            cert.to_str().unwrap(),
            "-tls-key",
            key.to_str().unwrap(),
        ]);
        assert!(ok, "the Go client failed: {text}");
        assert!(text.contains("PASS pipeline"), "{text}");
        let (ok, text) = run(&[]);
        assert!(!ok, "the Go client got in without a certificate: {text}");
        let with_cert = trusting(&ca)
            .identity_pem(device.cert.as_bytes(), device.key.as_bytes())
            .unwrap();
        let client = connect(&server.addr.to_string(), with_cert).await.unwrap();
        client.heartbeat().await.unwrap();
        server.stop().await;
    }
}

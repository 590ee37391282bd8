//! The PROXY protocol: the client's address from a trusted balancer's
//! header (v1 and v2) reaches handlers, LOCAL health checks are served,
//! and untrusted peers, missing, invalid, oversized or late headers are
//! refused while others are served. HAProxy itself is the balancer in
//! `scripts/test-deploy.sh`.

mod common;

use std::time::Duration;

use common::pki::Ca;
use common::server::{start, Peer, Running};
use gopro::client::Client;
use gopro::server::{ConnectionInfo, Server, ServerBuilder};
use gopro::tls::{ClientTls, ServerTls};
use gopro::{Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Command 17 answers `peer local` as the handler sees them.
fn whoami(builder: ServerBuilder) -> ServerBuilder {
    builder.handler(17, |_frame: Frame| async move {
        let info = ConnectionInfo::current().expect("inside a handler");
        let local = info.local.map(|l| l.to_string()).unwrap_or_default();
        Ok::<_, std::convert::Infallible>(format!("{} {local}", info.peer))
    })
}

async fn proxied_server(trusted: &[&str]) -> Running {
    start(whoami(Server::builder()).proxy_protocol(trusted.iter().copied())).await
}

fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(addresses);
    header
}

/// A v2 PROXY header for a TCP/IPv4 client `src:sport` that connected to
/// `dst:dport`.
fn v2_tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&src);
    a.extend_from_slice(&dst);
    a.extend_from_slice(&sport.to_be_bytes());
    a.extend_from_slice(&dport.to_be_bytes());
    v2(1, 0x11, &a)
}

async fn ask(peer: &mut Peer) -> String {
    peer.send(&Frame::new(Command(17), "")).await;
    let reply = peer.recv().await.expect("a reply");
    String::from_utf8(reply.body.to_vec()).unwrap()
}

/// The connection is closed without a reply.
async fn refused(mut stream: TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    match read {
        Ok(Ok(_)) => assert!(rest.is_empty(), "a refused connection got {rest:?}"),
        Ok(Err(_)) => {} // reset: refused too
        Err(_) => panic!("the connection was not closed"),
    }
}

#[tokio::test]
async fn the_client_address_comes_from_a_v1_or_v2_header() {
    let server = proxied_server(&["127.0.0.1/32"]).await;
    let mut peer = Peer::connect(server.addr).await;
    peer.send_raw(b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 8888\r\n")
        .await;
    assert_eq!(ask(&mut peer).await, "203.0.113.7:51234 198.51.100.1:8888");
    // The header is read exactly: frames right behind it, in the same
    // segment, are not lost.
    let mut peer = Peer::connect(server.addr).await;
    let mut bytes = v2_tcp4([192, 0, 2, 44], 40000, [10, 0, 0, 1], 8888);
    bytes.extend_from_slice(&Frame::new(Command(17), "").to_bytes());
    bytes.extend_from_slice(&Frame::heartbeat().to_bytes());
    peer.send_raw(&bytes).await;
    let reply = peer.recv().await.unwrap();
    assert_eq!(reply.body, "192.0.2.44:40000 10.0.0.1:8888");
    assert_eq!(peer.recv().await.unwrap(), Frame::heartbeat());
    // IPv6, v1.
    let mut peer = Peer::connect(server.addr).await;
    peer.send_raw(b"PROXY TCP6 2001:db8::5 2001:db8::1 4000 8888\r\n")
        .await;
    assert_eq!(
        ask(&mut peer).await,
        "[2001:db8::5]:4000 [2001:db8::1]:8888"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_local_header_or_unknown_keeps_the_balancers_address() {
    let server = proxied_server(&["127.0.0.0/8"]).await;
    let mut peer = Peer::connect(server.addr).await;
    let balancer = peer.stream.local_addr().unwrap();
    peer.send_raw(&v2(0, 0x00, &[])).await;
    // A health check as HAProxy sends it: a HEARTBEAT, echoed.
    peer.send(&Frame::heartbeat()).await;
    assert_eq!(peer.recv().await.unwrap(), Frame::heartbeat());
    assert!(ask(&mut peer).await.starts_with(&balancer.to_string()));
    let mut peer = Peer::connect(server.addr).await;
    peer.send_raw(b"PROXY UNKNOWN\r\n").await;
    assert!(ask(&mut peer)
        .await
        .starts_with(&peer.stream.local_addr().unwrap().to_string()));
    server.stop().await;
}

#[tokio::test]
async fn untrusted_peers_and_bad_headers_are_refused_while_others_are_served() {
    // Trusts 127.0.0.2 only: connections from 127.0.0.1 are refused even
    // with a valid header, so nobody else can claim an address.
    let server = start(
        whoami(Server::builder())
            .proxy_protocol(["127.0.0.2"])
            .read_timeout(Duration::from_millis(700)),
    )
    .await;
    let mut untrusted = TcpStream::connect(server.addr).await.unwrap();
    untrusted
        .write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
        .await
        .unwrap();
    let _ = untrusted.write_all(&Frame::heartbeat().to_bytes()).await;
    refused(untrusted).await;

    let trusted = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        socket.connect(server.addr).await.unwrap()
    };
    // No header: a GoPro frame first.
    let mut plain = trusted().await;
    plain
        .write_all(&Frame::heartbeat().to_bytes())
        .await
        .unwrap();
    refused(plain).await;
    // Garbage after "PROXY ".
    let mut garbage = trusted().await;
    garbage
        .write_all(b"PROXY TCP4 not an address 1 2\r\n")
        .await
        .unwrap();
    refused(garbage).await;
    // A v1 header with no end.
    let mut endless = trusted().await;
    let _ = endless.write_all(&[b'P'; 1]).await;
    let _ = endless.write_all(b"ROXY TCP4 ").await;
    let _ = endless.write_all(&[b'1'; 200]).await;
    refused(endless).await;
    // A v2 header announcing more than the limit.
    let mut huge = trusted().await;
    let mut header = v2(1, 0x11, &[]);
    header[14..16].copy_from_slice(&60000u16.to_be_bytes());
    huge.write_all(&header).await.unwrap();
    refused(huge).await;
    // Half a header, then nothing: closed at the read timeout.
    let mut late = trusted().await;
    late.write_all(b"PROXY TCP4 1.2.").await.unwrap();
    let started = std::time::Instant::now();
    refused(late).await;
    assert!(started.elapsed() >= Duration::from_millis(500));

    // Meanwhile a good one is served.
    let mut good = trusted().await;
    good.write_all(b"PROXY TCP4 198.51.100.9 198.51.100.1 7 8888\r\n")
        .await
        .unwrap();
    good.write_all(&Frame::new(Command(17), "").to_bytes())
        .await
        .unwrap();
    let mut reply = vec![0u8; 8 + "198.51.100.9:7 198.51.100.1:8888".len()];
    good.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[8..], b"198.51.100.9:7 198.51.100.1:8888");
    server.stop().await;
}

#[tokio::test]
async fn the_stats_count_headers_and_refusals() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .proxy_protocol(["127.0.0.1"])
        .bind()
        .await
        .unwrap();
    let stats = server.stats();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    let mut peer = Peer::connect(addr).await;
    peer.send_raw(b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n").await;
    peer.send(&Frame::heartbeat()).await;
    assert_eq!(peer.recv().await.unwrap(), Frame::heartbeat());
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"HELLO THERE WORLD\r\n").await.unwrap();
    refused(bad).await;
    let s = stats.snapshot();
    assert_eq!((s.proxy_headers, s.proxy_refused), (1, 1), "{s:?}");
    handle.shutdown();
    task.await.unwrap();
}

/// On the wire: the PROXY header, then TLS, then frames.
#[tokio::test]
async fn a_proxy_header_comes_before_tls() {
    let ca = Ca::new("test CA");
    let pem = ca.server();
    let server = start(
        whoami(Server::builder())
            .proxy_protocol(["127.0.0.1"])
            .tls(ServerTls::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()),
    )
    .await;
    // The header by hand, then rustls over the same socket.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.50 203.0.113.1 999 8888\r\n")
        .await
        .unwrap();
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(&Frame::new(Command(17), "").to_bytes())
        .await
        .unwrap();
    let mut reply = vec![0u8; 8 + "203.0.113.50:999 203.0.113.1:8888".len()];
    tls.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[8..], b"203.0.113.50:999 203.0.113.1:8888");
    // A client that skips the header is refused before TLS.
    let direct = Client::builder()
        .tls(ClientTls::ca_pem(ca.pem().as_bytes()).unwrap())
        .connect(&server.addr.to_string())
        .await;
    assert!(direct.is_err(), "a client without a PROXY header got in");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_trusted_network_is_refused_at_bind() {
    for bad in [&["10.0.0.0/40"][..], &["not-an-address"], &[]] {
        let result = Server::builder()
            .listen("127.0.0.1:0")
            .proxy_protocol(bad.iter().copied())
            .bind()
            .await;
        let err = result.err().expect("refused").to_string();
        assert!(err.contains("proxy_protocol"), "{err}");
    }
}

/// A v2 header of 4 KiB (addresses and a NOOP TLV, as balancers pad) is
/// read; one byte more is refused before it is read.
#[tokio::test]
async fn a_v2_header_is_accepted_up_to_four_kib() {
    let server = proxied_server(&["127.0.0.1"]).await;
    for (total, accepted) in [(4096usize, true), (4097, false)] {
        let mut a = Vec::new();
        a.extend_from_slice(&[192, 0, 2, 1, 10, 0, 0, 1]);
        a.extend_from_slice(&1234u16.to_be_bytes());
        a.extend_from_slice(&8888u16.to_be_bytes());
        let pad = total - 16 - a.len() - 3;
        a.push(0x04); // PP2_TYPE_NOOP
        a.extend_from_slice(&(pad as u16).to_be_bytes());
        a.extend(std::iter::repeat_n(0u8, pad));
        let header = v2(1, 0x11, &a);
        assert_eq!(header.len(), total);
        let mut peer = Peer::connect(server.addr).await;
        peer.send_raw(&header).await;
        if accepted {
            assert_eq!(ask(&mut peer).await, "192.0.2.1:1234 10.0.0.1:8888");
        } else {
            let _ = peer
                .stream
                .write_all(&Frame::new(Command(17), "").to_bytes())
                .await;
            refused(peer.stream).await;
        }
    }
    server.stop().await;
}

//! The PROXY protocol (v1 and v2, parsed by the `ppp` crate): a balancer
//! in front of the server says, before anything else on a connection, who
//! the client really is.
//!
//! Only the trusted proxies' addresses may connect, and each connection
//! must start with a header; anybody else is refused, so that nobody can
//! claim an address. The header is read exactly (never a byte of what
//! follows, which is TLS or frames), within the read timeout.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::settings::ConfigError;

/// The v2 signature (12 bytes), then version/command, family, length.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;
/// A v1 header is at most 107 bytes (the specification's bound).
const V1_MAX: usize = 107;
/// The largest v2 header accepted: the addresses and the TLVs a balancer
/// adds (unique ids, TLS details) fit with room to spare; a length beyond
/// it is refused before any of it is read.
pub const MAX_V2_HEADER: usize = 4096;

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proxied {
    /// The client's address, and the address it connected to.
    Address {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The balancer speaking for itself (v2 LOCAL: health checks), or a
    /// v1 `UNKNOWN`: the connection's own addresses stand.
    Local,
}

/// The trusted proxies' networks, from `CIDR`s or single addresses.
pub(crate) fn parse_trusted(items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    if items.is_empty() {
        return Err(ConfigError::Invalid {
            setting: "proxy_protocol",
            reason: "give at least one trusted proxy address or network".to_string(),
        });
    }
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    setting: "proxy_protocol",
                    reason: format!(
                        "{item:?} is not an address or a network (write 10.0.0.0/8 or 127.0.0.1)"
                    ),
                })
        })
        .collect()
}

/// Whether `peer` is one of the trusted proxies.
pub(super) fn is_trusted(trusted: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

/// Reads the PROXY header at the start of `tcp`, and nothing after it.
pub(super) async fn read_header(tcp: &mut TcpStream) -> Result<Proxied, String> {
    // 15 bytes: the shortest v1 header ("PROXY UNKNOWN\r\n"), and enough
    // to tell v1 from v2.
    let mut head = vec![0u8; 15];
    read_exact(tcp, &mut head).await?;
    if head.starts_with(&V2_SIGNATURE[..]) {
        head.resize(V2_FIXED, 0);
        read_exact(tcp, &mut head[15..]).await?;
        let len = u16::from_be_bytes([head[14], head[15]]) as usize;
        if V2_FIXED + len > MAX_V2_HEADER {
            return Err(format!(
                "PROXY v2 header of {} bytes is over the limit of {MAX_V2_HEADER}",
                V2_FIXED + len
            ));
        }
        head.resize(V2_FIXED + len, 0);
        read_exact(tcp, &mut head[V2_FIXED..]).await?;
    } else if head.starts_with(b"PROXY ") {
        // Up to the CRLF, a byte at a time: what follows is not ours.
        while !head.ends_with(b"\r\n") {
            if head.len() >= V1_MAX {
                return Err(format!("PROXY v1 header longer than {V1_MAX} bytes"));
            }
            let mut byte = [0u8];
            read_exact(tcp, &mut byte).await?;
            head.push(byte[0]);
        }
    } else {
        return Err(format!(
            "no PROXY header: the connection starts with {}",
            printable(&head)
        ));
    }
    match HeaderResult::parse(&head) {
        HeaderResult::V1(Ok(header)) => Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => Proxied::Address {
                source: (a.source_address, a.source_port).into(),
                destination: (a.destination_address, a.destination_port).into(),
            },
            v1::Addresses::Tcp6(a) => Proxied::Address {
                source: (a.source_address, a.source_port).into(),
                destination: (a.destination_address, a.destination_port).into(),
            },
            v1::Addresses::Unknown => Proxied::Local,
        }),
        HeaderResult::V2(Ok(header)) => Ok(match (header.command, header.addresses) {
            (v2::Command::Local, _) => Proxied::Local,
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Proxied::Address {
                source: (a.source_address, a.source_port).into(),
                destination: (a.destination_address, a.destination_port).into(),
            },
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Proxied::Address {
                source: (a.source_address, a.source_port).into(),
                destination: (a.destination_address, a.destination_port).into(),
            },
            // A Unix socket or an unspecified family: no IP to take.
            (v2::Command::Proxy, _) => Proxied::Local,
        }),
        HeaderResult::V1(Err(e)) => Err(format!("invalid PROXY v1 header: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("invalid PROXY v2 header: {e}")),
    }
}

async fn read_exact(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    tcp.read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "closed inside the PROXY header".to_string(),
            _ => format!("reading the PROXY header failed: {e}"),
        })
}

/// The first bytes, for a log line: text when they are text.
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains(|c: char| c.is_control()) => format!("{text:?}"),
        _ => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_networks_or_single_addresses() {
        let nets =
            parse_trusted(&["127.0.0.1/32".into(), "10.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(is_trusted(&nets, "127.0.0.1".parse().unwrap()));
        assert!(is_trusted(&nets, "10.1.2.3".parse().unwrap()));
        assert!(is_trusted(&nets, "::1".parse().unwrap()));
        // An IPv4 peer seen on an IPv6 socket.
        assert!(is_trusted(&nets, "::ffff:10.9.9.9".parse().unwrap()));
        assert!(!is_trusted(&nets, "127.0.0.2".parse().unwrap()));
        assert!(!is_trusted(&nets, "192.168.0.1".parse().unwrap()));
        let err = parse_trusted(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
        assert!(parse_trusted(&[]).is_err());
    }
}

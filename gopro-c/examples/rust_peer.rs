//! The Rust client against the C server of `tests/c/test_server.c --serve`:
//! `cargo run -p gopro-c --example rust_peer -- 127.0.0.1:PORT`.

use gopro::blocking::Client;
use gopro::client::ClientError;
use gopro::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: rust_peer HOST:PORT")?;
    let client = Client::connect(&addr)?;
    client.heartbeat()?;
    let reply = client.request(Command::MESSAGE, "hi")?;
    assert_eq!(reply.body, "Server says: hi");
    let reply = client.request(16, "from rust")?;
    assert_eq!(
        (reply.command, &reply.body[..]),
        (Command(16), &b"c:from rust"[..])
    );
    match client.request(17, "") {
        Err(ClientError::Server { reason }) => assert_eq!(reason, "no such thing"),
        other => panic!("wanted the C handler's ERROR, got {other:?}"),
    }
    for i in 0..100 {
        client.send(16, format!("{i}"))?;
    }
    for i in 0..100 {
        assert_eq!(client.recv()?.body, format!("c:{i}"));
    }
    println!("rust_peer: the Rust client got the C server's replies");
    Ok(())
}

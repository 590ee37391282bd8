//! The Rust side of `scripts/bench-c.sh`: N MESSAGE requests through the
//! blocking client, DEPTH in flight at a time, exactly as
//! `bench/bench_client.c` does through the C client.
//! Usage: bench_client HOST:PORT N DEPTH

use std::time::Instant;

use gopro::blocking::Client;
use gopro::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, n, depth] = &args[..] else {
        return Err("usage: bench_client HOST:PORT N DEPTH".into());
    };
    let (n, depth): (usize, usize) = (n.parse()?, depth.parse()?);
    let client = Client::connect(addr)?;
    let body = [b'x'; 32];
    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    while received < n {
        while sent < n && sent - received < depth {
            client.send(Command::MESSAGE, bytes::Bytes::copy_from_slice(&body))?;
            sent += 1;
        }
        let reply = client.recv()?;
        assert_eq!(reply.body.len(), 13 + 32);
        received += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("rust_client_replies_per_s {:.0}", n as f64 / secs);
    Ok(())
}

//! Benchmark baseline: a tokio server that echoes bytes without parsing
//! them — the physical limit for HEARTBEAT load (each reply is the request).
//!
//! `cargo run --release --example echo_baseline -- 127.0.0.1:9001`

#[path = "common/listen.rs"]
mod listen;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> std::io::Result<()> {
    listen::serve("127.0.0.1:9001", |mut socket| async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

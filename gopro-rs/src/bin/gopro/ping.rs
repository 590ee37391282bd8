//! `gopro ping`: HEARTBEAT round-trip times.

use std::time::{Duration, Instant};

use clap::Args;

#[derive(Args)]
pub(crate) struct PingArgs {
    /// Server address.
    #[arg(long, default_value = gopro::server::DEFAULT_LISTEN)]
    addr: String,
    /// Heartbeats to send.
    #[arg(long, default_value_t = 4)]
    count: u32,
    /// Pause between heartbeats.
    #[arg(long, value_parser = crate::duration, default_value = "1s")]
    interval: Duration,
    /// Time allowed to connect and for each reply.
    #[arg(long, value_parser = crate::duration, default_value = "5s")]
    timeout: Duration,
    #[command(flatten)]
    tls: crate::tls::ClientTlsArgs,
}

pub(crate) fn run(args: PingArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(Some(1))?.block_on(async {
        let client = crate::connect(&args.addr, args.timeout, &args.tls).await?;
        let mut times = Vec::with_capacity(args.count as usize);
        for seq in 0..args.count {
            if seq > 0 {
                tokio::time::sleep(args.interval).await;
            }
            let started = Instant::now();
            client.heartbeat().await?;
            let rtt = started.elapsed();
            println!(
                "HEARTBEAT from {}: seq={seq} time={:.3} ms",
                args.addr,
                rtt.as_secs_f64() * 1e3
            );
            times.push(rtt);
        }
        if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
            let avg = times.iter().sum::<Duration>() / times.len() as u32;
            println!(
                "{} heartbeats, rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
                times.len(),
                min.as_secs_f64() * 1e3,
                avg.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
        }
        Ok(())
    })
}

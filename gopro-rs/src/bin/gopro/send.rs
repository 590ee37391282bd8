//! `gopro send`: one frame, and the reply printed, as the article's client does.

use std::time::Duration;

use clap::Args;
use gopro::Command;

#[derive(Args)]
pub(crate) struct SendArgs {
    /// Server address.
    #[arg(long, default_value = gopro::server::DEFAULT_LISTEN)]
    addr: String,
    /// Command code to send (0 HEARTBEAT, 1 MESSAGE, 2 LOGIN, 16-255 applications).
    #[arg(long, default_value_t = 1)]
    command: u8,
    /// Time allowed to connect and for the reply.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    timeout: Duration,
    #[command(flatten)]
    tls: crate::tls::ClientTlsArgs,
    /// The body to send.
    message: String,
}

pub(crate) fn run(args: SendArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(Some(1))?.block_on(async {
        let client = crate::connect(&args.addr, args.timeout, &args.tls).await?;
        let reply = client
            .request(Command(args.command), args.message.into_bytes())
            .await?;
        println!("{} {}", reply.command, reply.body_text());
        Ok(())
    })
}

//! Random sessions against the real server, in process over loopback TCP:
//! frames, logins, raw garbage, lone headers and partial frames, written in
//! pieces of any size, with reads in between. Every reply must be the one
//! the model in `gopro_fuzz::session` calls for, in order (SPEC §3–4): no
//! command but HEARTBEAT and LOGIN is served before a successful LOGIN,
//! bodies over the limit get ERROR and a close, replies stay within the
//! limit, and the heap never grows toward a length that did not arrive.
#![no_main]

use gopro_fuzz::session::{run, warm_up, SessionInput};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: gopro_fuzz::alloc::Counting = gopro_fuzz::alloc::Counting;

fuzz_target!(init: warm_up(), |input: SessionInput| {
    run(&input);
});

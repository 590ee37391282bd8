//! Running the cases: each within a time limit, the quick ones one after
//! another, the ones that wait for the server's deadlines all at once; then
//! one line per case and the totals.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;

use tokio::time::timeout;

use super::args::{CheckArgs, Ctx};
use super::cases::{cases, STALLED};
use super::conn::Conn;

pub(crate) fn run(args: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(Some(1))?.block_on(check(args))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tier {
    Core,
    Ext,
}

/// What a case needs from the command line to run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    Nothing,
    Auth,
    ReadTimeout,
    WriteTimeout,
}

/// How a case did not pass.
pub(super) enum Fail {
    Fail(String),
    Skip(String),
}

impl From<String> for Fail {
    fn from(detail: String) -> Self {
        Fail::Fail(detail)
    }
}

pub(super) type Outcome = Result<(), Fail>;
pub(super) type Run = Box<dyn Fn(Rc<Ctx>) -> Pin<Box<dyn Future<Output = Outcome>>>>;

pub(super) struct Case {
    name: &'static str,
    tier: Tier,
    needs: Needs,
    run: Run,
}

pub(super) fn case<F, Fut>(name: &'static str, tier: Tier, needs: Needs, run: F) -> Case
where
    F: Fn(Rc<Ctx>) -> Fut + 'static,
    Fut: Future<Output = Outcome> + 'static,
{
    Case {
        name,
        tier,
        needs,
        run: Box::new(move |cx| Box::pin(run(cx))),
    }
}

async fn check(args: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    let addr = resolve(&args.addr).await?;
    let tls = args.tls.settings()?;
    let cx = Rc::new(Ctx {
        addr,
        host: args.addr,
        tls,
        timeout: args.timeout,
        auth: args.auth,
        read_timeout: args.read_timeout,
        write_timeout: args.write_timeout,
        max_body: args.max_body,
        prelogin_max_body: args.prelogin_max_body.min(args.max_body),
        max_login_failures: args.max_login_failures,
    });
    // One connection first, so that a wrong address (or a certificate not
    // trusted) is one clear error rather than a FAIL per case.
    if let Err(e) = Conn::open(&cx).await {
        return Err(format!("cannot connect to {addr}: {e}").into());
    }

    let mut tally = Tally::default();
    let (timed, quick): (Vec<Case>, Vec<Case>) = cases()
        .into_iter()
        .partition(|c| matches!(c.needs, Needs::ReadTimeout | Needs::WriteTimeout));
    for case in &quick {
        let outcome = run_case(case, &cx, args.core_only).await;
        tally.report(case, outcome);
    }
    let outcomes = futures_util::future::join_all(
        timed.iter().map(|case| run_case(case, &cx, args.core_only)),
    )
    .await;
    for (case, outcome) in timed.iter().zip(outcomes) {
        tally.report(case, outcome);
    }

    println!(
        "{} passed, {} failed, {} skipped",
        tally.passed,
        tally.core_failed + tally.ext_failed,
        tally.skipped
    );
    let failed = tally.core_failed
        + if args.allow_ext_failures {
            0
        } else {
            tally.ext_failed
        };
    if failed > 0 {
        return Err(format!("{failed} case(s) failed against {addr}").into());
    }
    Ok(())
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}: no address"))
}

async fn run_case(case: &Case, cx: &Rc<Ctx>, core_only: bool) -> Outcome {
    if core_only && case.tier == Tier::Ext {
        return Err(Fail::Skip("--core-only".into()));
    }
    let budget = match case.needs {
        Needs::Nothing | Needs::Auth => cx.timeout * 3 + STALLED * 2,
        Needs::ReadTimeout => match cx.read_timeout {
            Some(d) => d * 3 + cx.timeout * 2,
            None => return Err(Fail::Skip("needs --read-timeout".into())),
        },
        Needs::WriteTimeout => match cx.write_timeout {
            Some(d) => d * 4 + cx.timeout * 3,
            None => return Err(Fail::Skip("needs --write-timeout".into())),
        },
    };
    if case.needs == Needs::Auth && cx.auth.is_none() {
        return Err(Fail::Skip("needs --auth".into()));
    }
    // Every wait inside a case has its own limit; this one only guards
    // against a case that would forget one.
    match timeout(budget, (case.run)(cx.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Fail::Fail(format!("no result within {budget:?}"))),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    core_failed: usize,
    ext_failed: usize,
    skipped: usize,
}

impl Tally {
    fn report(&mut self, case: &Case, outcome: Outcome) {
        let tier = match case.tier {
            Tier::Core => "[core]",
            Tier::Ext => "[ext]",
        };
        let (status, detail) = match outcome {
            Ok(()) => {
                self.passed += 1;
                ("PASS", String::new())
            }
            Err(Fail::Skip(why)) => {
                self.skipped += 1;
                ("SKIP", format!("  ({why})"))
            }
            Err(Fail::Fail(why)) => {
                match case.tier {
                    Tier::Core => self.core_failed += 1,
                    Tier::Ext => self.ext_failed += 1,
                }
                ("FAIL", format!("  ({why})"))
            }
        };
        println!("{status}  {tier:<6}  {}{detail}", case.name);
    }
}

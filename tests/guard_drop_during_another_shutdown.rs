//! Adversary pass 66: a new fault of pass 65's change. A guard dropped while another thread's
//! shutdown (a signal handler's, with a short deadline) is under way waits for it, and now gets
//! that shutdown's `Abandoned`; it prints it as its own:
//! "dropping the guard shut the pipeline down and the drop timeout (30s) passed with 100
//! records not written … Raise `Builder::drop_timeout`". The drop did not shut the pipeline
//! down, its 30 s did not pass (it returned at once), and raising `drop_timeout` changes
//! nothing: the other call's 300 ms deadline cut the records off (and that caller was told,
//! with `Err(Abandoned)`). Before pass 65, the drop was silent here.
mod support;

use std::time::{Duration, Instant};

use support::*;
use tracing_offload::{DropReason, OffloadLayer};

#[test]
#[ignore = "run by a_guard_drop_does_not_blame_its_timeout_for_another_shutdown"]
fn child_drops_the_guard_while_a_hasty_shutdown_runs() {
    let (guard, dispatch, _release_at_the_end) = stuck_in_an_export(
        OffloadLayer::builder().drop_timeout(Duration::from_secs(30)),
        100,
    );
    let handle = guard.handle();
    let hasty = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.shutdown(Duration::from_millis(300)))
    };
    wait_until("the hasty shutdown to close the pipeline", DEADLINE, || {
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("after close"));
        handle.stats().dropped_for(DropReason::Shutdown) > 0
    });
    let started = Instant::now();
    drop(guard);
    let took = started.elapsed();
    eprintln!("P66: guard drop took {took:?}");
    assert!(hasty.join().unwrap().is_err());
}

#[test]
fn a_guard_drop_does_not_blame_its_timeout_for_another_shutdown() {
    let stderr = stderr_of_child_test("child_drops_the_guard_while_a_hasty_shutdown_runs");
    let took = stderr
        .lines()
        .find_map(|l| l.strip_prefix("P66: guard drop took "))
        .unwrap_or_else(|| panic!("the child did not get to drop the guard:\n{stderr}"))
        .to_owned();
    assert!(
        !stderr.contains("drop timeout (30s) passed"),
        "the guard drop (which took {took}, not 30 s, and did not shut the pipeline down) \
         blames its own drop timeout for what another shutdown's 300 ms deadline cut off:\n{stderr}"
    );
}

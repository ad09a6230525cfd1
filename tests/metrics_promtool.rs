//! `promtool check metrics` accepts the rendered metrics in every state: idle, after drops,
//! with a failing sink, with a disabled sink, and after shutdown.
mod support;

use std::time::Duration;

use support::admin::*;
use support::*;
use tracing_offload::OffloadLayer;

#[test]
fn promtool_accepts_the_metrics_in_every_state() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let ok = Gate::new("ok");
    let flaky = Gate::new("flaky");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4)
        .sink(ok.clone())
        .sink(flaky.clone())
        .drop_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle = guard.handle();
    let check = |state: &str| {
        let text = handle.render_prometheus();
        assert!(text.contains("offload_records_total"), "{state}: {text}");
        promtool_check(&promtool, &text);
    };
    check("idle");

    // After drops at the full queue (capacity 4): emit until one is dropped.
    flaky.set(Mode::Fail);
    let dispatch = tracing::Dispatch::new({
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    });
    tracing::dispatcher::with_default(&dispatch, || {
        wait_until("a record dropped at the full queue", DEADLINE, || {
            for i in 0..1_000 {
                tracing::info!(i, "burst");
            }
            handle.stats().dropped > 0
        });
    });
    wait_until("the flaky sink to fail", DEADLINE, || {
        handle.stats().sink("flaky").is_some_and(|s| s.failed > 0)
    });
    check("after drops, with a failing sink");

    flaky.set(Mode::Panic);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("boom"));
    wait_until("the flaky sink to be disabled", DEADLINE, || {
        handle.stats().sink("flaky").is_some_and(|s| s.disabled)
    });
    check("with a disabled sink");

    let _ = guard.shutdown(DEADLINE); // the disabled sink may have abandoned records
    check("after shutdown");
    let text = handle.render_prometheus();
    assert!(
        text.contains("offload_sink_disabled{sink=\"flaky\"} 1\n"),
        "{text}"
    );
    assert!(ok.exported() > 0);
}

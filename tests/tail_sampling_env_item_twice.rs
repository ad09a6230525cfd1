//! Adversary pass 65: `OFFLOAD_TAIL_SAMPLING` with one item given twice with different values
//! (`ratio:0.01,…,ratio:0.5`, an edit that left the old value in, or two sources joined) keeps
//! the last one without a word: no warning, and the strict `try_from_env()` accepts it. The
//! README: an invalid value "is ignored with one warning naming the variable, the value, what
//! was expected"; a conflicting one is at least that ambiguous (which did the operator mean?),
//! and here the silent choice keeps 50 times more traces than the first value says.
mod support;

use support::*;
use tracing_offload::Builder;

fn env(value: &'static str) -> impl Fn(&str) -> Option<String> {
    move |var: &str| (var == "OFFLOAD_TAIL_SAMPLING").then(|| value.to_owned())
}

#[test]
fn an_item_given_twice_with_different_values_is_not_silently_resolved() {
    for value in [
        "errors,ratio:0.01,slow:2s,ratio:0.5",
        "slow:5s,errors,slow:10ms",
        "errors,wait:30s,wait:1s",
    ] {
        let lookup = env(value);
        let strict = Builder::try_from_env_with(&lookup);
        let (_layer, guard) = Builder::from_env_with(&lookup)
            .sink(Collect::new("c"))
            .build()
            .unwrap();
        let config = guard.handle().config();
        let warned = config
            .warnings
            .iter()
            .any(|w| w.var == "OFFLOAD_TAIL_SAMPLING");
        assert!(
            warned || strict.is_err(),
            "OFFLOAD_TAIL_SAMPLING={value:?}: no warning, strict reader accepts it, in force: \
             {:?}",
            config.tail_sampling.value.map(|t| t.to_string())
        );
    }
}

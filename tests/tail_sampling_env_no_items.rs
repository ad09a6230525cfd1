//! `OFFLOAD_TAIL_SAMPLING` with no item at all (only commas and spaces, e.g. from a template
//! whose parts are all empty) is invalid: a warning, and tail sampling stays off. It used to
//! turn tail sampling on with no criterion, silently dropping every sampled trace.
mod support;

use tracing_offload::Builder;

#[test]
fn a_value_with_no_items_warns_and_leaves_tail_sampling_off() {
    for value in [",", " , ,", ",,,"] {
        let env = move |var: &str| (var == "OFFLOAD_TAIL_SAMPLING").then(|| value.to_owned());
        let (_layer, guard) = Builder::from_env_with(&env).build().unwrap();
        let config = guard.handle().config();
        assert_eq!(config.tail_sampling.value, None, "{value:?}");
        let vars: Vec<&str> = config.warnings.iter().map(|w| w.var.as_str()).collect();
        assert_eq!(vars, ["OFFLOAD_TAIL_SAMPLING"], "{value:?}");
        assert!(Builder::try_from_env_with(&env).is_err(), "{value:?}");
    }
}

//! `Handle::config().warnings` (and `/config`) show the build's warnings and the last reload's,
//! not every reload's ever: a service that re-reads its environment on a timer, with one bad
//! variable, used to add the same warning on every reload, without bound.
mod support;

#[test]
fn repeated_reloads_do_not_pile_up_warnings() {
    let build_env = |var: &str| (var == "OFFLOAD_CAPACITY").then(|| "lots".to_owned());
    let (_layer, guard) = tracing_offload::Builder::from_env_with(&build_env)
        .build()
        .unwrap();
    let handle = guard.handle();
    assert_eq!(handle.config().warnings.len(), 1, "the build's own warning");
    let bad = |var: &str| (var == "OFFLOAD_SAMPLE_RATE").then(|| "1,0".to_owned());
    for _ in 0..1_000 {
        let warnings = handle.reload_from_env_with(&bad);
        assert_eq!(warnings.len(), 1, "each reload reports its warning");
    }
    let kept = handle.config().warnings;
    assert!(
        kept.len() <= 2,
        "{} warnings kept after 1,000 reloads",
        kept.len()
    );
    let vars: Vec<&str> = kept.iter().map(|w| w.var.as_str()).collect();
    assert_eq!(vars, ["OFFLOAD_CAPACITY", "OFFLOAD_SAMPLE_RATE"]);
    // A clean reload leaves the build's warnings only.
    assert!(handle.reload_from_env_with(&|_| None).is_empty());
    assert_eq!(handle.config().warnings.len(), 1);
}

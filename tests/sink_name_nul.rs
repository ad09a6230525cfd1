//! A sink name is a thread name too (`offload-sink-<name>`), and a thread name cannot hold a
//! NUL character: such a name is a clear `BuildError`, not a panic inside `build()` (which
//! used to leave the sinks started before it running).
mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use support::*;
use tracing_offload::{BuildError, OffloadLayer};

#[test]
fn a_sink_name_with_a_nul_character_is_a_build_error() {
    let built = catch_unwind(AssertUnwindSafe(|| {
        OffloadLayer::builder()
            .sink(Collect::new("fine"))
            .sink(Collect::new("bad\0name"))
            .build()
    }))
    .expect("build() returns instead of panicking");
    let Err(err) = built else {
        panic!("the name is refused")
    };
    assert!(
        matches!(&err, BuildError::Sink { sink, .. } if sink == "bad\0name"),
        "{err:?}"
    );
    let text = error_chain(&err);
    assert!(text.contains("NUL"), "{text}");
}

//! A JSON sink whose path is a chain of symbolic links to nothing creates the file at the end
//! of the chain; a build that then fails must remove that file again (README: "a build that
//! then fails ... removes what it created (the file only while it is empty)"), and nothing else.
#![cfg(unix)]

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;

use tracing_offload::sink::{JsonFile, Sink, SinkError};
use tracing_offload::{BuildError, OffloadLayer, Record};

/// A sink whose start fails: the build fails after the JSON sink started.
struct Fails;

impl Sink for Fails {
    fn name(&self) -> &str {
        "fails"
    }
    fn start(&mut self) -> Result<(), SinkError> {
        Err(SinkError::Fatal("no such device".to_owned()))
    }
    fn export(&mut self, _: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
}

fn failed_build(path: &Path) {
    let r = OffloadLayer::builder()
        .sink(JsonFile::new(path))
        .sink(Fails)
        .build();
    match r {
        Err(BuildError::Sink { sink, .. }) if sink == "fails" => {}
        Err(e) => panic!("unexpected build error: {e:?}"),
        Ok(_) => panic!("the build succeeded"),
    }
}

/// `links` links in `dir`, `app.jsonl` -> `l1` -> ... -> `target.jsonl` (missing).
fn chain(dir: &Path, links: usize) {
    for i in 0..links {
        let name = if i == 0 {
            "app.jsonl".to_owned()
        } else {
            format!("l{i}")
        };
        let to = if i + 1 == links {
            "target.jsonl".to_owned()
        } else {
            format!("l{}", i + 1)
        };
        symlink(&to, dir.join(name)).unwrap();
    }
}

fn check(links: usize) {
    let dir = tempfile::tempdir().unwrap();
    chain(dir.path(), links);
    let target = dir.path().join("target.jsonl");
    failed_build(&dir.path().join("app.jsonl"));
    // The links were there before: they stay.
    assert!(
        std::fs::symlink_metadata(dir.path().join("app.jsonl")).is_ok(),
        "{links} links: the path's link was removed"
    );
    assert!(
        !target.exists(),
        "{links} links: the failed build left behind the empty file it created at the end of the chain, {}",
        target.display()
    );
}

/// Chains of links up to the longest Linux follows (40): the sink creates the file at the end
/// and the failed build removes it. (Adversary pass 26: the sink followed 16 links at most,
/// then opened the path as not created, and the failed build left the file behind.)
#[test]
fn a_chain_of_links_to_nothing_is_cleaned_up_after_a_failed_build() {
    for links in [1, 3, 16, 40] {
        check(links);
    }
}

//! A failed build's JSON sink undoes what it made through symbolic links, and nothing else
//! (written by adversary pass 25).
//!
//! `build()` starts the sinks in order on the building thread; a sink after the JSON sink
//! that changes the file system in its `start` and then fails is a deterministic stand-in for
//! "another process, between the file sink's open and its abandon". The rule under test: a
//! failed build never removes a file or directory it did not create (README: "removes what it
//! created").
#![cfg(unix)]

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tracing_offload::sink::{JsonFile, Sink, SinkError};
use tracing_offload::{BuildError, OffloadLayer, Record};

/// A sink that, when started, does `before` and fails.
struct FailsAfter(Box<dyn FnMut() + Send>);

impl Sink for FailsAfter {
    fn name(&self) -> &str {
        "fails"
    }
    fn start(&mut self) -> Result<(), SinkError> {
        (self.0)();
        Err(SinkError::Fatal("no such device".to_owned()))
    }
    fn export(&mut self, _: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Builds a JSON sink at `path` then a sink that does `meanwhile` and fails; the build must
/// fail naming it.
#[track_caller]
fn failed_build(path: &Path, meanwhile: impl FnMut() + Send + 'static) {
    let r = OffloadLayer::builder()
        .sink(JsonFile::new(path))
        .sink(FailsAfter(Box::new(meanwhile)))
        .build();
    match r {
        Err(BuildError::Sink { sink, .. }) if sink == "fails" => {}
        Err(e) => panic!("unexpected build error: {e:?}"),
        Ok(_) => panic!("the build succeeded"),
    }
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

fn repoint(link: &Path, to: &Path) {
    std::fs::remove_file(link).unwrap();
    symlink(to, link).unwrap();
}

/// Held: a relative link chain through a symlinked directory; the file created at the end
/// goes, every link stays.
#[test]
fn relative_chain_through_a_linked_directory_removes_the_created_file_only() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("real");
    std::fs::create_dir(&real).unwrap();
    symlink("real", root.path().join("dirlink")).unwrap();
    let a = root.path().join("a.jsonl");
    symlink("b.jsonl", &a).unwrap();
    symlink("dirlink/c.jsonl", root.path().join("b.jsonl")).unwrap();
    failed_build(&a, || {});
    assert!(!real.join("c.jsonl").exists(), "the created file stayed");
    for l in ["a.jsonl", "b.jsonl", "dirlink"] {
        assert!(is_link(&root.path().join(l)), "{l} was there and stays");
    }
}

/// Held: the link is pointed at someone's empty file after the open: that file stays.
#[test]
fn link_repointed_to_an_important_empty_file_keeps_it() {
    let root = tempfile::tempdir().unwrap();
    let link = root.path().join("app.jsonl");
    let important = root.path().join("important");
    std::fs::write(&important, b"").unwrap();
    symlink("current.jsonl", &link).unwrap();
    let (l, i) = (link.clone(), important.clone());
    failed_build(&link, move || repoint(&l, &i));
    assert!(
        important.is_file(),
        "an empty file the sink did not create was removed"
    );
}

/// Held: the created target is replaced by another process's (empty) file at the same name
/// before the abandon: that file stays (device and inode differ).
#[test]
fn target_replaced_by_another_empty_file_keeps_it() {
    let root = tempfile::tempdir().unwrap();
    let link = root.path().join("app.jsonl");
    let target = root.path().join("current.jsonl");
    symlink("current.jsonl", &link).unwrap();
    let t = target.clone();
    failed_build(&link, move || {
        std::fs::remove_file(&t).unwrap();
        std::fs::write(&t, b"").unwrap();
    });
    assert!(
        target.is_file(),
        "another process's empty file at the target was removed"
    );
}

/// Held: a directory link in the path re-pointed to another directory holding an empty file
/// of the same name: that file stays.
#[test]
fn directory_link_repointed_keeps_the_other_directorys_file() {
    let root = tempfile::tempdir().unwrap();
    let (d, e) = (root.path().join("d"), root.path().join("e"));
    std::fs::create_dir(&d).unwrap();
    std::fs::create_dir(&e).unwrap();
    std::fs::write(e.join("app.jsonl"), b"").unwrap();
    let link = root.path().join("logs");
    symlink(&d, &link).unwrap();
    let (l, e2) = (link.clone(), e.clone());
    failed_build(&link.join("app.jsonl"), move || repoint(&l, &e2));
    assert!(
        e.join("app.jsonl").is_file(),
        "a file in the other directory was removed"
    );
}

/// The sink's path goes through a directory link `logs -> d`, and the file's directory
/// `logs/sub` is made by the build (so the sink will remove it on abandon, by that path). A
/// deployment re-points `logs -> e` (where `e/sub` is someone's empty directory) between the
/// open and the abandon. The abandon then removes `e/sub`, a directory it did not create
/// (followed through the link as it is now), and leaves the file and directory it did create,
/// `d/sub/app.jsonl` (not removed: the path no longer names it).
#[test]
fn directory_link_repointed_removes_no_foreign_directory() {
    let root = tempfile::tempdir().unwrap();
    let (d, e) = (root.path().join("d"), root.path().join("e"));
    std::fs::create_dir(&d).unwrap();
    std::fs::create_dir_all(e.join("sub")).unwrap();
    let link = root.path().join("logs");
    symlink(&d, &link).unwrap();
    let (l, e2) = (link.clone(), e.clone());
    failed_build(&link.join("sub/app.jsonl"), move || {
        assert!(d_has_file(&l), "the sink opened logs/sub/app.jsonl");
        repoint(&l, &e2)
    });
    let foreign = e.join("sub");
    let left: Vec<PathBuf> = [d.join("sub/app.jsonl"), d.join("sub")]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    assert!(
        foreign.is_dir(),
        "the failed build removed {} (an empty directory it did not create: it removes \
         `logs/sub` through the link as re-pointed); what it created and left: {left:?}",
        foreign.display()
    );
    assert!(
        left.is_empty(),
        "the failed build left what it created: {left:?}"
    );
}

fn d_has_file(link: &Path) -> bool {
    link.join("sub/app.jsonl").is_file()
}

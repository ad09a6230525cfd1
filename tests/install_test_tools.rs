//! The README's test-tools paragraph and `scripts/install-test-tools` on a machine without
//! libfaketime: one without `apt-get`, and a user who is not root and has no `sudo` (written by
//! adversary pass 25, which found that `scripts/test` in skip mode stopped there).
//!
//! README ("Set-up"): a plain `cargo test --all-features` "installs nothing and passes on any
//! machine: a test whose tool is missing prints `SKIPPED: …`; `scripts/test` with
//! `OFFLOAD_REQUIRE_COLLECTOR=0 OFFLOAD_REQUIRE_TOOLS=0` does the same and lists the skipped
//! tests at the end."
//!
//! The machine is simulated without touching it: `scripts/test` runs in a private mount
//! namespace (`unshare -m`, root only) where an empty directory is bound over Debian's
//! `/usr/lib/<arch>/faketime`, with `PATH` set to a directory of shims: the real `python3`,
//! `promtool`, `prometheus` and core utilities; `cargo` a stub that logs its arguments (and
//! answers `cargo metadata`), so no build runs; `id -u` says 1000; no `sudo`; `apt-get` only
//! where said, as a stub that fails the test if called. Skips (with `SKIPPED:`) when not root
//! or when `unshare`/`mount` are refused.
#![cfg(target_os = "linux")]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn which(cmd: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && p.starts_with('/')).then(|| PathBuf::from(p))
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Machine {
    _dir: tempfile::TempDir,
    shims: PathBuf,
    empty: PathBuf,
    cargo_log: PathBuf,
    faketime_dirs: Vec<PathBuf>,
}

/// The shims; `apt_get`: whether an `apt-get` is on PATH (a stub that must not be called).
fn machine(apt_get: bool) -> Option<Machine> {
    if uid() != 0 {
        eprintln!("SKIPPED: install_test_tools: needs root for a private mount namespace");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let shims = dir.path().join("bin");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&shims).unwrap();
    std::fs::create_dir(&empty).unwrap();
    let cargo_log = dir.path().join("cargo.log");
    // The real interpreter (pyenv's `python3` is a shim that needs pyenv on PATH).
    let py = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))?;
    symlink(&py, shims.join("python3")).unwrap();
    for tool in [
        "bash",
        "sh",
        "env",
        "dirname",
        "grep",
        "sort",
        "wc",
        "tee",
        "mkdir",
        "printf",
        "cat",
        "promtool",
        "prometheus",
        "rm",
        "ls",
    ] {
        match which(tool) {
            Some(p) => symlink(p, shims.join(tool)).unwrap(),
            None if tool == "promtool" || tool == "prometheus" => {
                eprintln!("SKIPPED: install_test_tools: {tool} is not installed here");
                return None;
            }
            None => {}
        }
    }
    script(
        &shims.join("id"),
        "[ \"$1\" = -u ] && { echo 1000; exit 0; }; exec /usr/bin/id \"$@\"",
    );
    let target = dir.path().join("target");
    script(
        &shims.join("cargo"),
        &format!(
            "echo \"cargo $*\" >> '{log}'\n\
             case \"$1\" in metadata) echo '{{\"target_directory\":\"{target}\"}}';; esac\n\
             exit 0",
            log = cargo_log.display(),
            target = target.display()
        ),
    );
    if apt_get {
        script(
            &shims.join("apt-get"),
            &format!("echo \"apt-get $*\" >> '{}'; exit 97", cargo_log.display()),
        );
    }
    let faketime_dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime"))
        .chain([PathBuf::from("/usr/lib/faketime")])
        .filter(|p| p.is_dir())
        .collect();
    Some(Machine {
        _dir: dir,
        shims,
        empty,
        cargo_log,
        faketime_dirs,
    })
}

fn uid() -> u32 {
    // `id -u` rather than libc, to keep the test's dependencies as they are.
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u32::MAX)
}

/// Runs `scripts/test` (skip mode) in the simulated machine; `hide_faketime`: bind an empty
/// directory over libfaketime's. Returns (exit code, stderr, the cargo/apt-get log), or `None`
/// when the namespace cannot be made.
fn run_scripts_test(m: &Machine, hide_faketime: bool) -> Option<(i32, String, String)> {
    run_scripts_test_with(m, hide_faketime, "")
}

fn run_scripts_test_with(
    m: &Machine,
    hide_faketime: bool,
    extra_mounts: &str,
) -> Option<(i32, String, String)> {
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut mounts = extra_mounts.to_owned();
    if hide_faketime {
        for d in &m.faketime_dirs {
            mounts.push_str(&format!(
                "mount --bind '{}' '{}' || exit 98; ",
                m.empty.display(),
                d.display()
            ));
        }
    }
    let inner = format!(
        "{mounts}cd '{repo}' && exec env -i HOME=\"$HOME\" PATH='{}' \
         OFFLOAD_REQUIRE_COLLECTOR=0 OFFLOAD_REQUIRE_TOOLS=0 bash scripts/test",
        m.shims.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &inner])
        .output()
        .ok()?;
    if out.status.code() == Some(98) {
        eprintln!("SKIPPED: install_test_tools: mount refused in the namespace");
        return None;
    }
    let log = std::fs::read_to_string(&m.cargo_log).unwrap_or_default();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        log,
    ))
}

/// Control: with libfaketime where Debian puts it, the same shims (not root, no sudo, no
/// apt-get) run `cargo test --all-features` in skip mode: the harness works.
#[test]
fn control_scripts_test_runs_the_tests_when_every_tool_is_there() {
    let Some(m) = machine(false) else { return };
    let Some((code, stderr, log)) = run_scripts_test(&m, false) else {
        return;
    };
    assert!(
        code == 0 && log.contains("cargo test --all-features"),
        "exit {code}\nstderr:\n{stderr}\nlog:\n{log}"
    );
}

/// No `apt-get` (Fedora, Arch, macOS…) and no libfaketime: `scripts/test` in skip mode stops
/// at `install-test-tools` ("libfaketime is missing and this is not a Debian-like system",
/// exit 1) and never runs `cargo test`, where the README says it skips what is missing.
#[test]
fn scripts_test_in_skip_mode_runs_without_libfaketime_or_apt_get() {
    let Some(m) = machine(false) else { return };
    let Some((code, stderr, log)) = run_scripts_test(&m, true) else {
        return;
    };
    assert!(
        log.contains("cargo test --all-features"),
        "OFFLOAD_REQUIRE_TOOLS=0 scripts/test on a machine without apt-get nor libfaketime \
         ran no test (exit {code}):\n{stderr}\ncommands run: {log:?}"
    );
}

/// Not root, no `sudo`, libfaketime missing (a developer's Debian box): `scripts/test` in
/// skip mode stops with "need root (or sudo) to run: apt-get update -qq" and runs no test.
#[test]
fn scripts_test_in_skip_mode_runs_for_a_user_without_sudo() {
    let Some(m) = machine(true) else { return };
    let Some((code, stderr, log)) = run_scripts_test(&m, true) else {
        return;
    };
    assert!(
        log.contains("cargo test --all-features"),
        "OFFLOAD_REQUIRE_TOOLS=0 scripts/test as a user without sudo, libfaketime missing, ran \
         no test (exit {code}):\n{stderr}\ncommands run: {log:?}"
    );
}

/// libfaketime installed where its own `make install` puts it (`PREFIX=/usr/local`:
/// `/usr/local/lib/faketime/libfaketime.so.1`; Fedora's package: `/usr/lib64/faketime/`), not
/// where Debian does: `install-test-tools` looks only at `/usr/lib/*/faketime/` and
/// `/usr/lib/faketime/`, says it is missing and stops `scripts/test` (the clock tests would
/// not find it either). Simulated by binding, in the namespace only, a directory holding the
/// library over `/usr/local/lib`.
#[test]
fn scripts_test_finds_a_libfaketime_installed_under_usr_local() {
    let Some(m) = machine(false) else { return };
    let Some(lib) = m
        .faketime_dirs
        .iter()
        .map(|d| d.join("libfaketime.so.1"))
        .find(|p| p.is_file())
    else {
        eprintln!("SKIPPED: install_test_tools: no libfaketime here to copy");
        return;
    };
    let local = m.empty.parent().unwrap().join("usr-local-lib");
    std::fs::create_dir_all(local.join("faketime")).unwrap();
    std::fs::copy(&lib, local.join("faketime/libfaketime.so.1")).unwrap();
    let mount = format!(
        "mount --bind '{}' /usr/local/lib || exit 98; ",
        local.display()
    );
    let Some((code, stderr, log)) = run_scripts_test_with(&m, true, &mount) else {
        return;
    };
    assert!(
        log.contains("cargo test --all-features"),
        "scripts/test with libfaketime at /usr/local/lib/faketime/libfaketime.so.1 ran no test \
         (exit {code}):\n{stderr}\ncommands run: {log:?}"
    );
}

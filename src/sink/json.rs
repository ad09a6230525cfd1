//! `sink::JsonFile`: one JSON object per line, written in batches.
//!
//! A line is whole or absent: a write that fails part way (a full disk) is cut back to the last
//! whole line, and the records before it are reported written. The file followed is the one
//! the path names: one deleted or moved away (by logrotate or an operator) is noticed before
//! the next batch and a new one is opened, its directory created again if needed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::clock::{duration_nanos as nanos, WallTime};
use crate::ids::ThreadInfo;
use crate::record::fields::{append_bytes, append_quoted};
use crate::record::{
    rfc3339_bytes, rfc3339_wall, DropNotice, EventRecord, FieldValue, Fields, Record, SpanRecord,
};
use crate::sink::{Sink, SinkError};

/// When a [`JsonFile`] starts a new file.
///
/// Serialised (in [`Config::sink_settings`](crate::Config::sink_settings) and `/config`) in
/// snake case: `"never"`, `{"size":{"max_bytes":…,"keep":…}}`, `"minutely"`, `"hourly"`,
/// `"daily"`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// One file that grows forever (the default).
    Never,
    /// Before a batch would take the file past `max_bytes`, rename it to `<path>.1` (shifting
    /// older ones to `.2`, … up to `keep`, deleting the oldest) and start a new one. If the
    /// renames fail, the batch goes in the current file past `max_bytes` (counted exported),
    /// the sink reports the error (failing, in health) and the next batch tries again.
    ///
    /// A path that is a symbolic link is rotated where it leads: the file at the end of its
    /// links is renamed (to `<target>.1`, next to it) and created again there, and the link
    /// stays, pointing at the live file.
    Size {
        /// The largest a file grows (a single batch larger than this still goes in one file).
        max_bytes: u64,
        /// Old files kept besides the current one.
        keep: usize,
    },
    /// A new file each minute (UTC), named `<path>.YYYY-MM-DD-HH-mm` (the names
    /// `tracing-appender` gives). The dated files of time rotation are made next to `<path>`,
    /// as `tracing-appender` makes them: a symbolic link at `<path>` is not followed (nothing
    /// is written to its target); to keep the log on another volume, link its directory.
    Minutely,
    /// A new file each hour (UTC), named `<path>.YYYY-MM-DD-HH`.
    Hourly,
    /// A new file each day (UTC), named `<path>.YYYY-MM-DD`.
    Daily,
}

/// Writes each record as one JSON line to a file. One `write` per batch; fields are serialised
/// straight into a reused buffer.
///
/// Each line has `ts` (RFC 3339, UTC, microseconds), `kind` (`event`, `span` or `dropped`),
/// `level`, `severity_number`, `target`, `name`, `message` (events and drop markers),
/// `fields` (an object with typed values), `trace_id`, `span_id`, `parent_span_id` (spans),
/// `start`, `end`, `duration_ns` (spans), `thread`. Text cut at the length cap ends with
/// `…[truncated from N bytes]`. A `dropped` line reports `dropped` (an object of counts by
/// reason) and `since`.
///
/// **Whole lines.** A batch is written whole (one batch is never split between two files). When
/// a write fails part way — the disk is full — the file is cut back to the last whole line and
/// the records before it are reported written ([`SinkError::Partial`]), so they are counted
/// exported and the rest failed. The file is this sink's alone: another writer appending to it
/// at the same moment could lose its tail to that cut.
///
/// **Settings.** In [`Config::sink_settings`](crate::Config::sink_settings) and `/config`,
/// under the sink's name: `path`, the absolute path it writes (a relative one made absolute
/// when the sink was made; a name that is not UTF-8 is shown with `�` for its invalid bytes),
/// and `rotation`.
///
/// **Deleted or moved files.** Before each batch the sink checks (one `stat`) that the path
/// still names the file it has open (device and inode, as log shippers' file tails do). A file
/// deleted or moved away, by logrotate's default `create` mode or by hand, is followed by a new
/// one at the path, its directory created again if needed; what was written before stays in
/// the moved file. When the new file cannot be opened, the batch fails (counted `failed`,
/// shown in health) and the next batch tries again.
///
/// ```
/// use tracing_offload::sink::{JsonFile, Rotation};
/// let sink = JsonFile::new("logs/app.jsonl")
///     .rotation(Rotation::Size { max_bytes: 64 << 20, keep: 4 });
/// # drop(sink);
/// ```
#[derive(Debug)]
pub struct JsonFile {
    name: String,
    path: PathBuf,
    rotation: Rotation,
    out: Option<OpenFile>,
    /// What [`start`](Sink::start) created (for [`abandon`](Sink::abandon)): the file, and the
    /// directories made for it, outermost first.
    created: Created,
    buf: Vec<u8>,
    /// Where each record's line ends in `buf`.
    line_ends: Vec<usize>,
    /// Which of those lines are drop markers.
    marker_lines: Vec<usize>,
    /// Text escaped once and copied after: each callsite's target, name and field names, and
    /// the last thread's name.
    escaped: Escaped,
    /// The error of syncing a file this sink closed (rotated, moved away), for the next flush
    /// to report.
    sync_error: Option<SinkError>,
    /// Records written to the files this sink closed before a sync of theirs failed.
    lost_in_closed: u64,
}

/// Text a sink escapes once and copies after.
#[derive(Debug, Default)]
struct Escaped {
    callsites: CallsiteText,
    thread: ThreadText,
}

/// `,"thread":…` for the thread named last (names are interned: one name, one address), so
/// that the records of a thread copy it rather than escape the name again.
#[derive(Debug, Default)]
struct ThreadText {
    /// The [address](address_of) of the name `text` was made for.
    name: (usize, usize),
    text: Vec<u8>,
}

impl ThreadText {
    /// Appends `,"thread":"<name>"`, or `,"thread":"thread-<id>"` for a thread without a name.
    #[inline]
    fn write(&mut self, out: &mut Vec<u8>, t: ThreadInfo) {
        match t.name {
            Some(name) if address_of(name) == self.name && !self.text.is_empty() => {
                append_bytes(out, &self.text);
            }
            Some(name) => {
                self.text.clear();
                thread(&mut self.text, &t);
                self.name = address_of(name);
                append_bytes(out, &self.text);
            }
            None => thread(out, &t),
        }
    }
}

/// The escaped text of each callsite seen, keyed by its metadata's address (callsites are
/// `'static`), so that a record copies it instead of escaping it again.
#[derive(Debug, Default)]
struct CallsiteText {
    /// Each callsite's index in `texts`.
    index: std::collections::HashMap<usize, usize, std::hash::BuildHasherDefault<AddressHasher>>,
    texts: Vec<Callsite>,
    /// The callsite looked up last (its metadata's address and its index): a batch's records
    /// come from a few callsites, often one after another, and a hit costs a comparison
    /// instead of a hash look-up.
    last: Option<(usize, usize)>,
}

/// One callsite's text.
#[derive(Debug)]
struct Callsite {
    /// `,"target":…,"name":…`
    head: Box<[u8]>,
    /// Each of its fields' `"name":`, in the callsite's order, with the name's address and
    /// length: a record's field names are the callsite's own `&'static str`s, in that order.
    keys: Box<[FieldKey]>,
    /// What follows a line's time, by kind (event, span) and level, made when first needed:
    /// `","kind":…,"level":…,"severity_number":N` and then `head`, in one copy.
    after_time: [Option<Box<[u8]>>; 12],
}

/// One field's `"name":`, with its name's [address](address_of).
#[derive(Debug)]
struct FieldKey {
    name: (usize, usize),
    text: Box<[u8]>,
}

impl Callsite {
    fn new(meta: &'static tracing_core::Metadata<'static>) -> Callsite {
        let mut head = Vec::new();
        target_and_name(&mut head, meta.target(), meta.name());
        let keys = meta
            .fields()
            .iter()
            .map(|f| {
                let mut text = Vec::new();
                string(&mut text, f.name());
                text.push(b':');
                FieldKey {
                    name: address_of(f.name()),
                    text: text.into_boxed_slice(),
                }
            })
            .collect();
        Callsite {
            head: head.into_boxed_slice(),
            keys,
            after_time: Default::default(),
        }
    }

    /// `","kind":…,"level":…,"severity_number":N,"target":…,"name":…` for a record of this
    /// callsite (an event or a span) at `level`.
    #[inline]
    fn after_time(&mut self, kind: Kind, level: crate::LogLevel) -> &[u8] {
        let i = kind as usize * 6 + level as usize;
        let head = &self.head;
        self.after_time[i].get_or_insert_with(|| [head_tail(kind, level), head].concat().into())
    }
}

/// A string's address and length: the same for two `&'static str` only if they hold the same
/// text.
#[inline]
fn address_of(s: &str) -> (usize, usize) {
    (s.as_ptr() as usize, s.len())
}

/// Hashes an address (already well spread) with one multiplication.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Bounds [`CallsiteText`]; only a program with this many callsites reaches it.
const CALLSITE_TEXT_LIMIT: usize = 16_384;

impl CallsiteText {
    #[inline]
    fn get(&mut self, meta: &'static tracing_core::Metadata<'static>) -> &mut Callsite {
        let address = std::ptr::from_ref(meta).addr();
        match self.last {
            Some((last, i)) if last == address => &mut self.texts[i],
            _ => self.look_up(meta, address),
        }
    }

    /// [`get`](Self::get) for a callsite other than the last one.
    #[inline(never)]
    fn look_up(
        &mut self,
        meta: &'static tracing_core::Metadata<'static>,
        address: usize,
    ) -> &mut Callsite {
        if self.texts.len() >= CALLSITE_TEXT_LIMIT {
            self.index.clear();
            self.texts.clear();
        }
        let texts = &mut self.texts;
        let i = *self.index.entry(address).or_insert_with(|| {
            texts.push(Callsite::new(meta));
            texts.len() - 1
        });
        self.last = Some((address, i));
        &mut self.texts[i]
    }
}

/// The file being written.
#[derive(Debug)]
struct OpenFile {
    file: File,
    /// The path it was opened at: the sink's path, or the dated name under time rotation.
    path: PathBuf,
    /// Its device and inode when opened (`None` where the platform does not say).
    id: Option<FileId>,
    /// Its length, as far as this sink knows.
    size: u64,
    /// Under time rotation, the period (in periods since the Unix epoch) it belongs to.
    period: Option<i64>,
    /// A failed write left part of a line that could not be cut off: the next write starts
    /// with a newline so that the next record begins a line of its own.
    broken_tail: bool,
    /// A regular file (not a FIFO or a device), which [`sync`](Self::sync) syncs.
    regular: bool,
    /// Records written since the file was last synced.
    unsynced: u64,
    /// Records written before a sync that failed.
    lost: u64,
    /// When the file was last synced (or opened).
    synced_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

#[cfg(unix)]
fn file_id(meta: &fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

#[cfg(not(unix))]
fn file_id(_meta: &fs::Metadata) -> Option<FileId> {
    None
}

// === impl Rotation ===

impl Rotation {
    /// The length of a time-rotation period in seconds; `None` for the others.
    fn period_secs(&self) -> Option<u64> {
        match self {
            Rotation::Minutely => Some(60),
            Rotation::Hourly => Some(3_600),
            Rotation::Daily => Some(86_400),
            Rotation::Never | Rotation::Size { .. } => None,
        }
    }

    /// The period `now` falls in, under time rotation.
    fn period_of(&self, now: SystemTime) -> Option<i64> {
        // Before 1970 too: a period is the day (hour, minute) the time is in.
        let secs = WallTime::from_system(now).secs();
        self.period_secs().map(|len| secs.div_euclid(len as i64))
    }

    /// `YYYY-MM-DD`, `YYYY-MM-DD-HH` or `YYYY-MM-DD-HH-mm` (UTC) for the start of `period`.
    fn date_suffix(&self, period: i64) -> String {
        let len = self.period_secs().unwrap_or(86_400) as i64;
        let start = WallTime::from_secs(period.saturating_mul(len));
        // `YYYY-MM-DDTHH:MM:SS.ffffffZ`
        let t = rfc3339_wall(start);
        let text = |range: std::ops::Range<usize>| String::from_utf8_lossy(&t[range]).into_owned();
        match self {
            Rotation::Minutely => format!("{}-{}-{}", text(0..10), text(11..13), text(14..16)),
            Rotation::Hourly => format!("{}-{}", text(0..10), text(11..13)),
            _ => text(0..10),
        }
    }
}

/// What opening a file created: the file itself, and the directories made for it. Each is
/// known made by this sink from the call that made it (a file opened with `O_EXCL`, a directory
/// made one level at a time), not from a look before: what another process makes in between is
/// not taken for this sink's.
#[derive(Debug, Default)]
struct Created {
    /// Whether the open created the file (or a symbolic link's missing target).
    file: bool,
    /// Where the file created is, once opened: the path, or the end of its links.
    at: Option<PathBuf>,
    /// The directories made, outermost first; once opened, at the end of their links.
    dirs: Vec<PathBuf>,
}

impl Created {
    /// Notes where what opening `path` created is: the file (when it created it) and the
    /// directories, each at the end of its links as they are now, so that `abandon` removes
    /// what was made even if a link on the way is re-pointed meanwhile, and nothing else.
    fn opened(&mut self, path: &std::path::Path) {
        let real = |p: &std::path::Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        if self.file {
            self.at = Some(real(path));
        }
        for dir in &mut self.dirs {
            *dir = real(dir);
        }
    }
}

// === impl OpenFile ===

impl OpenFile {
    /// Opens (creating it, and its directory) `path` for appending.
    fn open(path: PathBuf, period: Option<i64>) -> Result<OpenFile, SinkError> {
        Self::open_noting(path, period, &mut Created::default())
    }

    /// [`open`](Self::open), noting in `created` what it made (as it makes it: a failure
    /// part-way leaves what was made noted).
    fn open_noting(
        path: PathBuf,
        period: Option<i64>,
        created: &mut Created,
    ) -> Result<OpenFile, SinkError> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            super::make_dirs(dir, &mut created.dirs)
                .map_err(|e| SinkError::io(ctx("creating the directory of"), e))?;
        }
        let (file, made) = open_for_append(&path).map_err(|e| SinkError::io(ctx("opening"), e))?;
        created.file = made;
        let meta = file
            .metadata()
            .map_err(|e| SinkError::io(ctx("reading the metadata of"), e))?;
        Ok(OpenFile {
            id: file_id(&meta),
            size: meta.len(),
            regular: meta.is_file(),
            file,
            path,
            period,
            broken_tail: false,
            unsynced: 0,
            lost: 0,
            synced_at: Instant::now(),
        })
    }

    /// Asks the system to write the file's data to its device, and reports the error of a
    /// write it took and could not write back (a failing disk, a thin volume or a network file
    /// system out of space): `write` reported success for those records, which were counted
    /// exported, and the error is the only sign that they may be lost.
    fn sync(&mut self) -> Result<(), SinkError> {
        if !self.regular || self.unsynced == 0 {
            return Ok(());
        }
        let unsynced = std::mem::take(&mut self.unsynced);
        self.synced_at = Instant::now();
        let result = self.file.sync_data();
        if result.as_ref().is_err_and(cannot_sync) {
            // A file system that cannot sync (some network and virtual ones): nothing to learn
            // from it, and nothing lost; not asked again.
            self.regular = false;
            return Ok(());
        }
        result.map_err(|e| {
            self.lost += unsynced;
            SinkError::io(
                format!(
                    "syncing {} (the system could not write back what it took: {unsynced} \
                     records written since the last sync, counted exported, may be lost)",
                    self.path.display()
                ),
                e,
            )
        })
    }

    /// Whether the path still names this file. A path that names nothing (deleted, moved
    /// away, its directory gone) or another file does not; when the path cannot be checked
    /// (e.g. permissions), the open file is kept.
    /// Whether `path` (followed through links) is this file.
    fn is_at(&self, path: &std::path::Path) -> bool {
        fs::metadata(path).is_ok_and(|meta| self.id.is_none() || file_id(&meta) == self.id)
    }

    fn still_at_its_path(&self) -> bool {
        match fs::metadata(&self.path) {
            Ok(meta) => self.id.is_none() || file_id(&meta) == self.id,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ),
        }
    }

    /// Writes `buf` (whole lines ending at `line_ends`) so that every line is whole or absent.
    /// On failure, says how many lines were written whole.
    fn write_lines(&mut self, buf: &[u8], line_ends: &[usize]) -> Result<(), (usize, io::Error)> {
        let prefix: &[u8] = if self.broken_tail { b"\n" } else { b"" };
        let (written, result) = write_all_counted(&mut self.file, prefix, buf);
        self.size += written as u64;
        if written >= prefix.len() {
            self.broken_tail = false;
        }
        let Err(e) = result else {
            return Ok(());
        };
        let in_buf = written.saturating_sub(prefix.len());
        let whole = line_ends.partition_point(|end| *end <= in_buf);
        let kept = if whole == 0 { 0 } else { line_ends[whole - 1] };
        let torn = (in_buf - kept) as u64;
        if torn > 0 {
            self.cut_back(torn);
        }
        Err((whole, e))
    }

    /// Removes the last `torn` bytes (a torn line) from the end of the file; if that fails, the
    /// next write starts on a new line.
    fn cut_back(&mut self, torn: u64) {
        let cut = self
            .file
            .metadata()
            .and_then(|m| self.file.set_len(m.len().saturating_sub(torn)));
        match cut {
            Ok(()) => self.size = self.size.saturating_sub(torn),
            Err(_) => self.broken_tail = true,
        }
    }
}

/// Opens `path` for appending, creating it. A FIFO (a named pipe) is opened without waiting for
/// a reader ([`open_without_waiting`](super::open_without_waiting)), which fails at once when
/// nothing reads it, also when it was put there after a look at the path; its writes then wait
/// for a slow reader, as a file's wait for a slow disk. It is the descriptor kept: closing a
/// probe and opening again would be the last writer leaving, which a reader takes for the end
/// of the stream.
///
/// Also says whether the open created the file.
fn open_for_append(path: &std::path::Path) -> io::Result<(File, bool)> {
    create_or_append(path).map_err(|e| {
        // `ENXIO` says the same of a socket and of a device without a driver: only a FIFO is
        // named one.
        if super::is_fifo_without_reader(&e) && is_fifo(path) {
            io::Error::other(
                "it is a FIFO that no process is reading (opening it would wait for one)",
            )
        } else {
            e
        }
    })
}

/// Whether a sync's error says the file cannot be synced at all, rather than that data was not
/// written back (`EINVAL`, `ENOTSUP`).
fn cannot_sync(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.kind() == io::ErrorKind::InvalidInput
}

/// Whether `path` (followed through links) is a FIFO.
#[cfg(unix)]
fn is_fifo(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(not(unix))]
fn is_fifo(_: &std::path::Path) -> bool {
    false
}

/// Opens `path` for appending, creating it (or a symbolic link's missing target); says whether
/// this call created it. Created only with `O_EXCL` (which fails on anything there, a link
/// too), so a file another process makes at the same moment is never taken for this one's.
fn create_or_append(path: &std::path::Path) -> io::Result<(File, bool)> {
    let append = || OpenOptions::new().append(true).clone();
    let mut at = path.to_owned();
    // Each pass follows one link to nothing (at most `MAX_LINKS_FOLLOWED`). A path that keeps
    // changing under it ends in an ordinary open, taken as not created.
    for _ in 0..MAX_LINKS_FOLLOWED {
        #[cfg(test)]
        tests::before_create(&at);
        match super::open_without_waiting(append().create_new(true), &at) {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
        match super::open_without_waiting(&mut append(), &at) {
            Ok(file) => return Ok((file, false)),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            // A link to nothing: its target is what to create. Otherwise the file went
            // between the two opens: try again.
            Err(_) => {
                if let Some(target) = link_target(&at) {
                    at = target;
                }
            }
        }
    }
    super::open_without_waiting(append().create(true), path).map(|f| (f, false))
}

/// The `N` of every `<path>.N` (N ≥ 1, written as `format!("{N}")` writes it) in the
/// path's directory. Names are compared as bytes: a file name need not be UTF-8.
fn rotated_indices(path: &std::path::Path) -> io::Result<Vec<usize>> {
    let Some(name) = path.file_name() else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut prefix = name.as_encoded_bytes().to_vec();
    prefix.push(b'.');
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let file = entry?.file_name();
        let index = file
            .as_encoded_bytes()
            .strip_prefix(prefix.as_slice())
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| {
                n.parse::<usize>()
                    .ok()
                    .filter(|i| *i >= 1 && *n == i.to_string())
            });
        found.extend(index);
    }
    Ok(found)
}

/// Where `path` leads through symbolic links: the path itself when it is not a link, else the
/// end of its chain of links (each relative target taken from its link's directory, as the
/// system does), whether or not a file is there. Only the last component is followed: a link
/// among the directories on the way leaves the file where it is, which a rename in that
/// directory reaches through it. A chain longer than the system follows (or a loop) ends
/// where this stops following; opening the path fails then anyway.
fn end_of_links(path: &std::path::Path) -> PathBuf {
    let mut at = path.to_owned();
    for _ in 0..MAX_LINKS_FOLLOWED {
        match link_target(&at) {
            Some(target) => at = target,
            None => break,
        }
    }
    at
}

/// Where the symbolic link `at` points (a relative target taken from the link's directory, as
/// the system does); `None` when `at` is not a link.
fn link_target(at: &std::path::Path) -> Option<PathBuf> {
    let target = fs::read_link(at).ok()?;
    Some(match at.parent() {
        Some(dir) => dir.join(target),
        None => target,
    })
}

/// More links than the longest chain Linux follows (40; a longer one fails to open).
const MAX_LINKS_FOLLOWED: usize = 64;

/// Writes `prefix` then `buf` with as many `write` calls as needed; returns the bytes written
/// and the first error.
fn write_all_counted(file: &mut File, prefix: &[u8], buf: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    let total = prefix.len() + buf.len();
    while written < total {
        let rest = if written < prefix.len() {
            &prefix[written..]
        } else {
            &buf[written - prefix.len()..]
        };
        match file.write(rest) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

// === impl JsonFile ===

impl JsonFile {
    /// A sink named `json` appending to `path` (parent directories are created at build time,
    /// and again if they disappear). A relative `path` is taken from the current directory now,
    /// once: a later change of directory does not move the log.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonFile {
            name: "json".to_owned(),
            path: crate::sink::absolute(path.into()),
            rotation: Rotation::Never,
            out: None,
            created: Created::default(),
            buf: Vec::with_capacity(64 * 1024),
            line_ends: Vec::new(),
            marker_lines: Vec::new(),
            escaped: Escaped::default(),
            sync_error: None,
            lost_in_closed: 0,
        }
    }

    /// Renames the sink (default `json`); needed when a pipeline has two file sinks.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the rotation (default [`Rotation::Never`]).
    pub fn rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// The file a record written in `period` goes to.
    fn path_for(&self, period: Option<i64>) -> PathBuf {
        let Some(period) = period else {
            return self.path.clone();
        };
        let mut name = self
            .path
            .file_name()
            .map(|f| f.to_os_string())
            .unwrap_or_else(|| "log".into());
        name.push(".");
        name.push(self.rotation.date_suffix(period));
        self.path.with_file_name(name)
    }

    /// The file for this batch, taken out of `self.out`: the open one, unless its period is
    /// over, or its path no longer names it (deleted or moved away), or it is full (size
    /// rotation). A size rotation that fails (the directory is not writable, something is in
    /// the way of a rename) leaves the full file in use: the batch goes in it, past
    /// `max_bytes`, rather than nowhere, and the rotation error comes back with it to be
    /// reported once the batch is written (the next batch tries again).
    fn take_file_for_batch(
        &mut self,
        incoming: u64,
    ) -> Result<(OpenFile, Option<SinkError>), SinkError> {
        let period = self.rotation.period_of(SystemTime::now());
        let current = match self.out.take() {
            Some(o) if o.period == period && o.still_at_its_path() => Some(o),
            Some(o) => {
                self.retire(o);
                None
            }
            None => None,
        };
        let mut out = match current {
            Some(out) => out,
            None => OpenFile::open(self.path_for(period), period)?,
        };
        if let Rotation::Size { max_bytes, keep } = self.rotation {
            let over =
                |out: &OpenFile| out.size > 0 && out.size.saturating_add(incoming) > max_bytes;
            if over(&out) {
                // What the file holds, not only what this sink wrote: another writer, or a
                // `copytruncate` that emptied it (which made an empty file rotate).
                if let Ok(meta) = out.file.metadata() {
                    out.size = meta.len();
                }
            }
            if over(&out) {
                // Closed first: some systems do not rename open files. When the rotation
                // fails, the path names the full file again (moved aside first, put back).
                self.retire(out);
                let rotated = self.shift_rotated_files(keep);
                return Ok((OpenFile::open(self.path.clone(), None)?, rotated.err()));
            }
        }
        Ok((out, None))
    }

    /// Closes a file the sink is done with, synced first: an error is kept for the next
    /// flush to report.
    fn retire(&mut self, mut out: OpenFile) {
        if let Err(e) = out.sync() {
            self.sync_error.get_or_insert(e);
        }
        self.lost_in_closed += out.lost;
    }

    /// Size rotation: `<path>.{keep-1}` → `.{keep}`, …, `<path>` → `.1` (or `<path>` deleted
    /// when `keep` is 0). A path already gone is not an error. Only the old files that exist
    /// are renamed (found by listing the directory), so the work is bounded by them, not by
    /// `keep`, which may be as large as `usize::MAX`.
    ///
    /// A path that is a symbolic link is rotated where it leads ([`end_of_links`]): the file
    /// at the end of its links is the one renamed, its old files numbered next to it, and the
    /// link stays, so that the file opened next at the path is that link's new target.
    /// (Renaming the link itself left a regular file at the path, written next to the link
    /// from then on, and the target's lines outside the rotation for good: adversary pass 65.)
    fn shift_rotated_files(&self, keep: usize) -> Result<(), SinkError> {
        self.rotate_with(keep, &|from, to| fs::rename(from, to))
    }

    /// [`shift_rotated_files`](Self::shift_rotated_files) with the rename to use (one that
    /// fails, in tests).
    ///
    /// The current file is moved aside (to `<path>.rotating`) before anything else: when it
    /// cannot be renamed (an append-only file, a bind mount), nothing has moved, and the next
    /// batch tries again from the same state. (Shifting the old files first, then failing on
    /// the current one, pushed the oldest kept file out at every batch that tried.) Any later
    /// step that fails puts the current file back. A `<path>.rotating` left by a crash during a
    /// rotation is not overwritten: the rotation fails, saying so, until it is moved away.
    fn rotate_with(
        &self,
        keep: usize,
        rename: &dyn Fn(&std::path::Path, &std::path::Path) -> io::Result<()>,
    ) -> Result<(), SinkError> {
        let live = end_of_links(&self.path);
        let suffixed = |suffix: &str| {
            let mut p = live.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        let numbered = |i: usize| suffixed(&format!(".{i}"));
        let ctx = if live == self.path {
            format!("rotating {}", self.path.display())
        } else {
            format!(
                "rotating {} (where the link {} leads)",
                live.display(),
                self.path.display()
            )
        };
        let gone_is_fine = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SinkError::io(&ctx, e)),
            _ => Ok(()),
        };
        if keep == 0 {
            return gone_is_fine(fs::remove_file(&live));
        }
        let aside = suffixed(".rotating");
        if fs::symlink_metadata(&aside).is_ok() {
            let e = io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is in the way (left by an interrupted rotation?): move it away",
                    aside.display()
                ),
            );
            return Err(SinkError::io(&ctx, e));
        }
        match rename(&live, &aside) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SinkError::io(&ctx, e)),
            Ok(()) => {}
        }
        let put_back = |e: SinkError| {
            let _ = rename(&aside, &live);
            e
        };
        let mut old = rotated_indices(&live).map_err(|e| put_back(SinkError::io(&ctx, e)))?;
        old.retain(|&i| i < keep);
        old.sort_unstable_by(|a, b| b.cmp(a));
        for i in old {
            gone_is_fine(rename(&numbered(i), &numbered(i + 1))).map_err(put_back)?;
        }
        gone_is_fine(rename(&aside, &numbered(1))).map_err(put_back)
    }

    /// Serialises `batch` into `buf`, one line per record.
    fn serialise(&mut self, batch: &[Record]) {
        self.buf.clear();
        self.line_ends.clear();
        self.marker_lines.clear();
        for (i, record) in batch.iter().enumerate() {
            crate::record::prefetch_ahead(batch, i);
            write_json_line(&mut self.buf, record, &mut self.escaped);
            self.line_ends.push(self.buf.len());
            if matches!(record, Record::Dropped(_)) {
                self.marker_lines.push(i);
            }
        }
    }
}

impl Sink for JsonFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<(), SinkError> {
        let period = self.rotation.period_of(SystemTime::now());
        let path = self.path_for(period);
        self.created = Created::default();
        let out = OpenFile::open_noting(path, period, &mut self.created)?;
        self.created.opened(&out.path);
        self.out = Some(out);
        Ok(())
    }

    fn abandon(&mut self) {
        let created = std::mem::take(&mut self.created);
        if let Some(out) = self.out.take() {
            // Empty as the file is now, not only as this sink left it: another process may
            // have written to it since it was opened, and its lines stay.
            let empty = out.file.metadata().is_ok_and(|m| m.len() == 0);
            // The file itself goes, where it was created (a link that was there stays), and
            // only if it is still the one opened there.
            if let Some(at) = created.at.filter(|at| empty && out.is_at(at)) {
                drop(out);
                let _ = fs::remove_file(&at);
            }
        }
        // Innermost first; a directory that is not empty (something else was put in it) stays.
        for dir in created.dirs.iter().rev() {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.serialise(batch);
        let incoming = self.buf.len() as u64;
        let (mut out, rotation_failed) = self.take_file_for_batch(incoming)?;
        let result = out.write_lines(&self.buf, &self.line_ends);
        // The records written, for the next sync to vouch for: drop markers are not records.
        let whole = result
            .as_ref()
            .map_or_else(|(w, _)| *w, |()| self.line_ends.len());
        let markers = self.marker_lines.iter().filter(|&&m| m < whole).count();
        out.unsynced += (whole - markers) as u64;
        let result = result.map_err(|(written, e)| {
            let ctx = format!("writing {}", out.path.display());
            SinkError::partial(written, SinkError::io(ctx, e))
        });
        self.out = Some(out);
        // Every record was written, but the file could not be rotated: said as an error that
        // counts the whole batch written, so that health shows it until a rotation succeeds.
        let result = match (result, rotation_failed) {
            (Ok(()), Some(e)) => {
                let whole = SinkError::Retryable(format!(
                    "the batch went whole into {}, past max_bytes: {}",
                    self.path.display(),
                    e.with_sources()
                ));
                Err(SinkError::partial(self.line_ends.len(), whole))
            }
            (result, _) => result,
        };
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::with_capacity(64 * 1024);
        }
        result
    }

    /// Syncs the file when it last did more than a second ago (so a write-back error
    /// shows within about that long, at the cost of one sync per interval at most), and
    /// reports the error of syncing a file closed since.
    fn flush(&mut self) -> Result<(), SinkError> {
        if let Some(e) = self.sync_error.take() {
            return Err(e);
        }
        match self.out.as_mut() {
            Some(out) if out.synced_at.elapsed() >= SYNC_EVERY => out.sync(),
            _ => Ok(()),
        }
    }

    /// Records written and not synced yet: the sink thread then calls `flush` on each idle
    /// tick, which syncs once a second has passed (a burst followed by quiet was synced only
    /// at the next batch or at shutdown, and a write-back error stayed unseen meanwhile:
    /// adversary pass 54).
    fn lost_after_export(&self) -> u64 {
        self.lost_in_closed + self.out.as_ref().map_or(0, |o| o.lost)
    }

    /// The absolute path and the rotation (see [`JsonFile`]).
    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.to_string_lossy(),
            "rotation": self.rotation,
        })
    }

    fn holds_records(&self) -> bool {
        self.sync_error.is_some()
            || self
                .out
                .as_ref()
                .is_some_and(|o| o.regular && o.unsynced > 0)
    }

    /// Syncs the file, whenever it was last synced.
    fn shutdown(&mut self, _deadline: Instant) -> Result<(), SinkError> {
        if let Some(e) = self.sync_error.take() {
            return Err(e);
        }
        self.out.as_mut().map_or(Ok(()), OpenFile::sync)
    }
}

/// How often, at most, the sink syncs its file (when its buffer runs empty; and always at
/// shutdown and when it closes a file).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Appends one record as a JSON line (with the newline) to `out`.
///
/// Written by hand: the keys and the crate's own values (times, hex ids, levels) are known to
/// need no escaping and are copied as they are; only user text (targets, names, messages,
/// field names and values) goes through [`string`], which copies runs that need no escaping in
/// one go. Floats and 128-bit integers are written by `serde_json`/`itoa`-style formatting.
fn write_json_line(out: &mut Vec<u8>, record: &Record, escaped: &mut Escaped) {
    match record {
        Record::Event(e) => event(out, e, escaped),
        Record::Span(s) => span(out, s, escaped),
        Record::Dropped(d) => dropped(out, d),
    }
    out.extend_from_slice(b"}\n");
}

/// What a JSON line holds: its `kind`.
#[derive(Clone, Copy)]
enum Kind {
    Event,
    Span,
    Dropped,
}

/// `","kind":"…","level":"…","severity_number":N` for every kind and level, built once: the
/// part of a line's head after its time is then one copy instead of six appends.
static HEAD_TAILS: std::sync::LazyLock<[Box<[u8]>; 18]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|i| {
        let kind = ["event", "span", "dropped"][i / 6];
        let level = crate::LogLevel::ALL[i % 6];
        format!(
            "\",\"kind\":\"{kind}\",\"level\":\"{}\",\"severity_number\":{}",
            level.as_str(),
            level.severity_number()
        )
        .into_bytes()
        .into_boxed_slice()
    })
});

/// `","kind":"…","level":"…","severity_number":N`
fn head_tail(kind: Kind, level: crate::LogLevel) -> &'static [u8] {
    &HEAD_TAILS[kind as usize * 6 + level as usize]
}

/// `{"ts":"…","kind":"…","level":"…","severity_number":N` (the target and name follow).
fn head(out: &mut Vec<u8>, t: WallTime, kind: Kind, level: crate::LogLevel) {
    let tail = head_tail(kind, level);
    out.reserve(34 + tail.len());
    time(out, t);
    out.extend_from_slice(tail);
}

/// `{"ts":"…` (the time without its closing quote).
#[inline]
fn time(out: &mut Vec<u8>, t: WallTime) {
    let mut start = [0u8; 34];
    start[..7].copy_from_slice(b"{\"ts\":\"");
    start[7..].copy_from_slice(&rfc3339_wall(t));
    out.extend_from_slice(&start);
}

/// `,"target":…,"name":…`
fn target_and_name(out: &mut Vec<u8>, target: &str, name: &str) {
    out.extend_from_slice(b",\"target\":");
    string(out, target);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
}

fn event(out: &mut Vec<u8>, e: &EventRecord, escaped: &mut Escaped) {
    time(out, e.wall_time());
    let callsite = escaped.callsites.get(e.metadata());
    if e.is_from_log() {
        // A `log` record's target is its own, not its (shared) callsite's.
        out.extend_from_slice(head_tail(Kind::Event, e.level()));
        target_and_name(out, e.target(), e.name());
    } else {
        out.extend_from_slice(callsite.after_time(Kind::Event, e.level()));
    }
    if let Some(msg) = e.message() {
        out.extend_from_slice(b",\"message\":");
        text(out, msg);
    }
    fields(out, e.fields(), &callsite.keys);
    if let Some(c) = e.span_context() {
        raw_entry(out, "trace_id", &c.trace_id.to_hex());
        raw_entry(out, "span_id", &c.span_id.to_hex());
        if !c.sampled {
            out.extend_from_slice(b",\"sampled\":false");
        }
    }
    escaped.thread.write(out, e.thread());
}

fn span(out: &mut Vec<u8>, sp: &SpanRecord, escaped: &mut Escaped) {
    time(out, sp.end_wall_time());
    let callsite = escaped.callsites.get(sp.metadata());
    out.extend_from_slice(callsite.after_time(Kind::Span, sp.level()));
    fields(out, sp.fields(), &callsite.keys);
    raw_entry(out, "trace_id", &sp.trace_id().to_hex());
    raw_entry(out, "span_id", &sp.span_id().to_hex());
    if let Some(p) = sp.parent_span_id() {
        raw_entry(out, "parent_span_id", &p.to_hex());
    }
    raw_entry(out, "start", &rfc3339_wall(sp.start_wall_time()));
    raw_entry(out, "end", &rfc3339_wall(sp.end_wall_time()));
    out.extend_from_slice(b",\"duration_ns\":");
    number(out, nanos(sp.duration()));
    if let Some((busy, idle)) = sp.busy_idle() {
        out.extend_from_slice(b",\"busy_ns\":");
        number(out, nanos(busy));
        out.extend_from_slice(b",\"idle_ns\":");
        number(out, nanos(idle));
    }
    if !sp.links().is_empty() {
        out.extend_from_slice(b",\"links\":[");
        for (i, l) in sp.links().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"trace_id\":\"");
            out.extend_from_slice(&l.trace_id.to_hex());
            out.extend_from_slice(b"\",\"span_id\":\"");
            out.extend_from_slice(&l.span_id.to_hex());
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
    }
    if sp.dropped_links() > 0 {
        out.extend_from_slice(b",\"dropped_links\":");
        number(out, sp.dropped_links());
    }
    if sp.dropped_events() > 0 {
        out.extend_from_slice(b",\"dropped_events\":");
        number(out, sp.dropped_events());
    }
    escaped.thread.write(out, sp.thread());
}

fn dropped(out: &mut Vec<u8>, d: &DropNotice) {
    head(
        out,
        WallTime::from_system(d.at),
        Kind::Dropped,
        crate::LogLevel::Warning,
    );
    target_and_name(out, "tracing_offload", "records_dropped");
    out.extend_from_slice(b",\"message\":");
    string(out, &d.to_string());
    raw_entry(out, "since", &rfc3339_bytes(d.since));
    out.extend_from_slice(b",\"dropped\":{");
    for (i, (reason, n)) in d.counts().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, reason);
        out.push(b':');
        number(out, n);
    }
    out.push(b'}');
}

/// `,"key":"value"` for values known to need no escaping (times, hex ids).
fn raw_entry(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(value);
    out.push(b'"');
}

/// The callsite's `"name":` for a field named `name`, looked for at `next` first (fields come
/// in the callsite's order), then among all; `None` for a name that is not the callsite's own
/// `&'static str` (then it is escaped as any string is).
#[inline]
fn key_of<'k>(keys: &'k [FieldKey], next: &mut usize, name: &str) -> Option<&'k [u8]> {
    let at = address_of(name);
    let j = match keys.get(*next) {
        Some(k) if k.name == at => *next,
        _ => keys.iter().position(|k| k.name == at)?,
    };
    *next = j + 1;
    Some(&keys[j].text)
}

/// `,"fields":{…}`. A field's `"name":` is its callsite's, escaped once (`keys`), when its name
/// is one of the callsite's: the next one in order, as a rule.
fn fields(out: &mut Vec<u8>, fields: &Fields, keys: &[FieldKey]) {
    out.extend_from_slice(b",\"fields\":{");
    let mut next = 0;
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match key_of(keys, &mut next, name) {
            Some(key) => append_bytes(out, key),
            None => {
                string(out, name);
                out.push(b':');
            }
        }
        match value {
            FieldValue::I64(v) => number(out, v),
            FieldValue::U64(v) => number(out, v),
            FieldValue::I128(v) => number(out, v),
            FieldValue::U128(v) => number(out, v),
            FieldValue::F64(v) if v.is_finite() => float(out, v),
            FieldValue::F64(v) => string(out, &v.to_string()),
            FieldValue::Bool(true) => out.extend_from_slice(b"true"),
            FieldValue::Bool(false) => out.extend_from_slice(b"false"),
            FieldValue::Str(t) => text(out, t),
            // The message, then each source after ": ", as error reporters print a chain.
            FieldValue::Error(e) => string(out, &e.to_string()),
        }
    }
    out.push(b'}');
}

/// A finite float as `serde_json` prints it: the shortest decimal that reads back as the same
/// float, in plain notation from 1e-5 to below 1e16 (`3.5`, `100.0`, `0.001`), in exponent
/// notation outside. A float that is a short decimal ([`short_decimal`]) is written here, the
/// others by `serde_json`.
#[inline]
fn float(out: &mut Vec<u8>, v: f64) {
    if !short_decimal(out, v) {
        // serde_json prints the shortest representation that round-trips.
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}

/// The powers of ten [`short_decimal`] tries, each exact as an `f64`.
const POWERS_OF_TEN: [f64; SHORT_DECIMALS + 1] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];

/// The most digits after the point [`short_decimal`] writes.
const SHORT_DECIMALS: usize = 6;

/// Writes `v` and returns `true` when it is a decimal with at most [`SHORT_DECIMALS`] digits
/// after the point (`3.5`, `42.0`, `0.125`, `-12.75`) between 1e-4 and 1e15 in magnitude, as
/// `serde_json` (shortest round trip, plain notation) would write it; otherwise writes nothing
/// and returns `false`. Most floats a program logs are such decimals (a latency in
/// milliseconds, a ratio), and this costs a fraction of the general algorithm.
///
/// Why it is exact: for the first `k` (0, 1, …) at which `m = round(|v| × 10^k)` divided by
/// `10^k` (both exact, the division correctly rounded) is `|v|` again, `m × 10^-k` is a decimal
/// that reads back as `v`. With `|v| × 10^k < 2^50`, `v`'s rounding interval scaled by `10^k`
/// is narrower than 1/4: no other integer is in it, the product's rounding cannot make the
/// search miss one, and no decimal that reads back as `v` has fewer digits after the point (it
/// would have been found at a smaller `k`). So `m` (without trailing zeros, `k` being the
/// first) holds the shortest digits, which the general algorithm also finds, and from 1e-4 to
/// below 1e15 `serde_json` writes them in plain notation (it does from 1e-5 to below 1e16):
/// `m` with a point `k` digits from its end, `.0` when `k` is 0. A midpoint
/// between two floats is never such a decimal (it has 54 significant bits), so no rounding tie
/// is involved. The unit tests compare it with `serde_json` on many values.
#[inline]
fn short_decimal(out: &mut Vec<u8>, v: f64) -> bool {
    const LIMIT: f64 = (1u64 << 50) as f64;
    let a = v.abs();
    if !(1e-4..1e15).contains(&a) {
        return false;
    }
    for (k, &p) in POWERS_OF_TEN.iter().enumerate() {
        let scaled = a * p;
        if scaled >= LIMIT {
            return false;
        }
        // Exact: below 2^50 a float is a multiple of 1/8, so adding 1/2 does not round, and
        // the conversion truncates the sum (positive) to round half up. (To `i64`: fewer
        // instructions than to `u64` on x86_64.)
        let m = (scaled + 0.5) as i64 as u64;
        #[allow(clippy::float_cmp)]
        if m as f64 / p == a {
            write_decimal(out, v.is_sign_negative(), m, k);
            return true;
        }
    }
    false
}

/// Writes `m × 10^-k` as `serde_json` writes a float: `[-]digits.digits`, at least one digit
/// on each side of the point. Built right to left in a buffer and appended in one copy
/// (without a call to `memcpy` when it is 16 bytes or shorter, as most are).
#[inline]
fn write_decimal(out: &mut Vec<u8>, negative: bool, mut m: u64, k: usize) {
    // A sign, up to 16 digits (m < 2^50), a point and up to six zeros before the digits.
    let mut buf = [0u8; 32];
    let mut at = buf.len();
    if k == 0 {
        at -= 2;
        buf[at..].copy_from_slice(b".0");
    }
    // The `k` digits after the point (zeros where `m` has fewer), the point, then at least
    // one digit before it.
    let mut i = 0;
    loop {
        if i == k && k > 0 {
            at -= 1;
            buf[at] = b'.';
        }
        at -= 1;
        buf[at] = b'0' + (m % 10) as u8;
        m /= 10;
        i += 1;
        if m == 0 && i > k {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    append_bytes(out, &buf[at..]);
}

fn thread(out: &mut Vec<u8>, t: &ThreadInfo) {
    out.extend_from_slice(b",\"thread\":");
    match &t.name {
        Some(name) => string(out, name),
        None => {
            out.extend_from_slice(b"\"thread-");
            number(out, t.id);
            out.push(b'"');
        }
    }
}

/// Captured text, with its truncation marker when it was cut.
#[inline(always)]
fn text(out: &mut Vec<u8>, t: crate::record::Text<'_>) {
    if t.is_truncated() {
        string(out, &t.to_string());
    } else {
        string(out, t.text);
    }
}

/// An integer, copied without a call to `memcpy` when it has 16 characters or fewer.
fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    append_bytes(out, itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string: runs of bytes that need no escaping are copied at once; `"`, `\` and
/// control characters are escaped as JSON requires. The scan looks at eight bytes at a time,
/// so that a short string (a field name, a thread name) is checked in one step.
#[inline]
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len();
    // Most strings of a record are short (field names, short values, thread names) and need
    // no escaping: one or two words checked, and a copy without a call (a profile of the
    // lossless workload put a third of the sink thread's instructions in this function, most
    // of them the loop's and `memcpy`'s own, for strings of 4 to 14 bytes).
    if n <= 16 {
        let clean = if n <= 8 {
            !needs_escape(short_word(bytes))
        } else {
            !needs_escape(word_of(&bytes[..8])) && !needs_escape(word_of(&bytes[n - 8..]))
        };
        if clean {
            append_quoted(out, bytes);
            return;
        }
    }
    escaped(out, bytes);
}

/// [`string`] for a string that is long or needs escaping. Out of line: [`string`]'s short path
/// then saves no registers.
#[inline(never)]
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (word, end) = match bytes.get(i..i + 8) {
            Some(word) => (word_of(word), i + 8),
            // The last eight bytes, overlapping some already checked: a clean one stays clean.
            None if bytes.len() >= 8 => (word_of(&bytes[bytes.len() - 8..]), bytes.len()),
            None => (short_word(bytes), bytes.len()),
        };
        if needs_escape(word) {
            for (j, &b) in bytes.iter().enumerate().take(end).skip(i) {
                let Some(escape) = escape_of(b) else { continue };
                out.extend_from_slice(&bytes[start..j]);
                match escape {
                    Escape::Short(e) => out.extend_from_slice(e),
                    Escape::Unicode => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        out.extend_from_slice(b"\\u00");
                        out.push(HEX[usize::from(b >> 4)]);
                        out.push(HEX[usize::from(b & 0xf)]);
                    }
                }
                start = j + 1;
            }
        }
        i = end;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[inline]
fn word_of(eight: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(eight);
    u64::from_le_bytes(word)
}

/// The bytes of a string shorter than eight, as one word to check: two overlapping halves, or
/// for three bytes or fewer the first, middle and last padded with spaces (which need no
/// escaping). Built in registers, not through memory, so the check does not wait on a store.
#[inline]
fn short_word(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let low = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let high = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        u64::from(low) | u64::from(high) << 32
    } else if n > 0 {
        u64::from(b[0])
            | u64::from(b[n / 2]) << 8
            | u64::from(b[n - 1]) << 16
            | 0x2020_2020_2000_0000
    } else {
        0x2020_2020_2020_2020
    }
}

enum Escape {
    Short(&'static [u8]),
    Unicode,
}

fn escape_of(b: u8) -> Option<Escape> {
    Some(match b {
        b'"' => Escape::Short(b"\\\""),
        b'\\' => Escape::Short(b"\\\\"),
        b'\n' => Escape::Short(b"\\n"),
        b'\r' => Escape::Short(b"\\r"),
        b'\t' => Escape::Short(b"\\t"),
        0x08 => Escape::Short(b"\\b"),
        0x0c => Escape::Short(b"\\f"),
        0..=0x1f => Escape::Unicode,
        _ => return None,
    })
}

/// Whether any of the eight bytes of `word` is a control character, `"` or `\` (the usual
/// zero-byte tricks: a byte below 0x20, or one equal to 0x22 or 0x5c, sets its high bit in the
/// result; bytes of 0x80 and above never do).
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | is_quote | is_backslash) & HIGH != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What another process does at a path.
    type Move = Box<dyn FnMut(&std::path::Path)>;

    thread_local! {
        /// Runs just before the sink tries to create its file (another process's move).
        static BEFORE_CREATE: std::cell::RefCell<Option<Move>> = std::cell::RefCell::new(None);
    }

    pub(super) fn before_create(path: &std::path::Path) {
        BEFORE_CREATE.with(|hook| {
            if let Some(hook) = hook.borrow_mut().as_mut() {
                hook(path)
            }
        });
    }

    /// A FIFO made at the sink's path after the sink looked at it and before it opened it:
    /// the open waited for a reader, and `build()` for ever. It fails at once, named, as a
    /// FIFO found there at the look does.
    #[cfg(unix)]
    #[test]
    fn a_fifo_made_as_the_sink_opens_its_path_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            BEFORE_CREATE.with(|h| {
                *h.borrow_mut() = Some(Box::new(|at: &std::path::Path| {
                    let made = std::process::Command::new("mkfifo").arg(at).status();
                    assert!(made.unwrap().success());
                }))
            });
            let mut sink = JsonFile::new(&path);
            let _ = tx.send(sink.start().map_err(|e| format!("{e:?}")));
        });
        let started = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the sink's open waited for a reader of the FIFO");
        let err = started.expect_err("nothing reads the FIFO");
        assert!(err.contains("FIFO that no process is reading"), "{err}");
    }

    /// A file another process makes at the moment the sink opens its path is that process's:
    /// a failed build does not remove it, even empty. The sink used to decide that it created
    /// the file from a look before the open, and removed it.
    #[test]
    fn a_file_made_by_another_process_as_the_sink_opens_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        BEFORE_CREATE.with(|h| {
            *h.borrow_mut() = Some(Box::new(|at: &std::path::Path| {
                let _ = fs::OpenOptions::new().create(true).append(true).open(at);
            }))
        });
        let mut sink = JsonFile::new(&path);
        let started = sink.start();
        BEFORE_CREATE.with(|h| *h.borrow_mut() = None);
        started.unwrap();
        sink.abandon();
        assert!(path.exists(), "the other process's file was removed");
    }

    /// The file the sink did create goes when the build fails, and so do the directories it
    /// made for it; the directories that were there stay.
    #[test]
    fn a_failed_build_removes_the_file_and_directories_it_made() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("there")).unwrap();
        let path = dir.path().join("there/made/too/app.jsonl");
        let mut sink = JsonFile::new(&path);
        sink.start().unwrap();
        assert!(path.exists());
        sink.abandon();
        assert!(!dir.path().join("there/made").exists());
        assert!(dir.path().join("there").is_dir());
    }

    /// A directory another process makes as the sink makes its own is found there and kept.
    #[test]
    fn directories_found_made_are_not_noted() {
        let dir = tempfile::tempdir().unwrap();
        let mut made = Vec::new();
        let target = dir.path().join("a/../b/c");
        crate::sink::make_dirs(&target, &mut made).unwrap();
        assert!(target.is_dir());
        assert_eq!(
            made,
            vec![
                dir.path().join("a"),
                dir.path().join("a/../b"),
                dir.path().join("a/../b/c")
            ]
        );
        let mut again = Vec::new();
        crate::sink::make_dirs(&target, &mut again).unwrap();
        assert!(again.is_empty(), "{again:?}");
        // A file where a directory should be: an error, what was made before it noted.
        fs::write(dir.path().join("f"), b"").unwrap();
        let mut partial = Vec::new();
        let err = crate::sink::make_dirs(&dir.path().join("d/e/../../f/x"), &mut partial);
        assert!(err.is_err());
        assert_eq!(partial, vec![dir.path().join("d"), dir.path().join("d/e")]);
    }
    use std::path::Path;

    #[test]
    fn a_rotation_that_cannot_move_the_current_file_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        let sink = JsonFile::new(&path);
        let files = |names: &[&str]| {
            names
                .iter()
                .map(|n| fs::read_to_string(dir.path().join(n)).ok())
                .collect::<Vec<_>>()
        };
        let all = ["app.jsonl", "app.jsonl.1", "app.jsonl.2", "app.jsonl.3"];
        for (name, text) in all.iter().zip(["live", "one", "two"]) {
            fs::write(dir.path().join(name), text).unwrap();
        }
        // The current file cannot be renamed (append-only, a bind mount); the others can.
        let live_stuck = |from: &Path, to: &Path| match from == path.as_path() {
            true => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            false => fs::rename(from, to),
        };
        for _ in 0..3 {
            assert!(sink.rotate_with(3, &live_stuck).is_err());
            assert_eq!(
                files(&all),
                [
                    Some("live".into()),
                    Some("one".into()),
                    Some("two".into()),
                    None
                ]
            );
        }
        // The last step fails: the current file is put back.
        let last_stuck = |from: &Path, to: &Path| match to.ends_with("app.jsonl.1") {
            true => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            false => fs::rename(from, to),
        };
        assert!(sink.rotate_with(3, &last_stuck).is_err());
        assert_eq!(files(&all[..1]), [Some("live".into())]);
        assert!(!dir.path().join("app.jsonl.rotating").exists());
        // And a rotation that works moves each file one along.
        sink.shift_rotated_files(3).unwrap();
        assert_eq!(files(&all[1..2]), [Some("live".into())]);
        assert!(!path.exists());
        // A file left by an interrupted rotation is never overwritten.
        fs::write(&path, "next").unwrap();
        fs::write(dir.path().join("app.jsonl.rotating"), "interrupted").unwrap();
        let err = sink.shift_rotated_files(3).unwrap_err();
        assert!(err.to_string().contains("rotating"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join("app.jsonl.rotating")).unwrap(),
            "interrupted"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "next");
    }

    #[test]
    fn time_rotation_names_files_by_their_period_in_utc() {
        // 2023-11-14T22:13:20Z
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let named = |rotation: Rotation, at: SystemTime| {
            let sink = JsonFile::new("/logs/app.jsonl").rotation(rotation.clone());
            sink.path_for(rotation.period_of(at))
        };
        let name = |rotation: Rotation| named(rotation, at);
        assert_eq!(
            name(Rotation::Minutely),
            Path::new("/logs/app.jsonl.2023-11-14-22-13")
        );
        assert_eq!(
            name(Rotation::Hourly),
            Path::new("/logs/app.jsonl.2023-11-14-22")
        );
        assert_eq!(
            name(Rotation::Daily),
            Path::new("/logs/app.jsonl.2023-11-14")
        );
        assert_eq!(name(Rotation::Never), Path::new("/logs/app.jsonl"));
        let next_minute = at + std::time::Duration::from_secs(40);
        assert_ne!(
            Rotation::Minutely.period_of(at),
            Rotation::Minutely.period_of(next_minute)
        );
        assert_eq!(
            Rotation::Hourly.period_of(at),
            Rotation::Hourly.period_of(next_minute)
        );
        // Before 1970, the day it is (adversary pass 25: every time before the epoch was in
        // period 0, 1970-01-01, and the file never rotated). 1969-06-01T12:30:00Z:
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(18_444_600);
        let name = |rotation: Rotation| named(rotation, before);
        assert_eq!(
            name(Rotation::Daily),
            Path::new("/logs/app.jsonl.1969-06-01")
        );
        assert_eq!(
            name(Rotation::Minutely),
            Path::new("/logs/app.jsonl.1969-06-01-12-30")
        );
        let next_day = before + std::time::Duration::from_secs(86_400);
        assert_ne!(
            Rotation::Daily.period_of(before),
            Rotation::Daily.period_of(next_day)
        );
    }

    #[test]
    fn every_head_names_its_kind_and_level() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 42_000);
        for (kind, name) in [
            (Kind::Event, "event"),
            (Kind::Span, "span"),
            (Kind::Dropped, "dropped"),
        ] {
            for level in crate::LogLevel::ALL {
                let mut out = Vec::new();
                head(&mut out, WallTime::from_system(t), kind, level);
                out.push(b'}');
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(
                    v,
                    serde_json::json!({
                        "ts": "2023-11-14T22:13:20.000042Z",
                        "kind": name,
                        "level": level.as_str(),
                        "severity_number": level.severity_number(),
                    })
                );
            }
        }
    }

    #[test]
    fn every_ascii_byte_at_every_word_position_is_escaped_like_serde_json() {
        // Short strings (checked in one word) and long ones (checked word by word, the last
        // word overlapping), with the byte at every position.
        for b in 0u8..128 {
            for before in 0..18 {
                for after in ["", "y", "yz", "yzw", "é", &"é".repeat(5)] {
                    let s = format!("{}{}{after}", "x".repeat(before), b as char);
                    let mut ours = Vec::new();
                    string(&mut ours, &s);
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        serde_json::to_string(&s).unwrap(),
                        "byte {b:#x} after {before}, then {after:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_exactly_like_serde_json() {
        let long = "a long plain run of text, then a quote \" and a \\ and \u{1} in the middle \
                    of words, and é€😀 past them, ending in a tab\t";
        for s in [
            long,
            &long[..17],
            "12345678\"",
            "\"2345678",
            "1234567\u{1f}",
            "plain",
            "",
            "quote\" back\\slash",
            "tab\tnl\ncr\r",
            "\u{0}\u{8}\u{c}\u{1f}\u{7f}",
            "é€😀",
        ] {
            let mut ours = Vec::new();
            string(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    /// `float` as `serde_json::to_writer` writes it.
    #[track_caller]
    fn assert_float_like_serde_json(v: f64) {
        let mut ours = Vec::new();
        float(&mut ours, v);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&v).unwrap(),
            "{v:e} ({:#x})",
            v.to_bits()
        );
    }

    /// A small deterministic generator (xorshift), for values to compare.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn short_decimals_are_written_like_serde_json() {
        let edges = [
            3.5,
            42.0,
            0.1,
            0.2,
            0.3,
            0.1 + 0.2,
            1.0,
            10.0,
            100.0,
            1e-4,
            1e-5,
            9.9999e-5,
            1.5e-4,
            0.000_123,
            0.001,
            0.5,
            0.25,
            0.125,
            123.456,
            999_999.999_999,
            123_456_789.123_456,
            1e14,
            1e15,
            1e16,
            999_999_999_999_999.0,
            1e15 - 0.5,
            1_125_899_906_842_623.0,
            1_125_899_906_842_624.0,
            2.0f64.powi(50) / 1e6,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            0.0,
            1.0 / 3.0,
            2.0 / 3.0,
            1e-7,
            1e21,
            4_503_599_627_370_496.5,
            9_007_199_254_740_993.0,
            0.3e-3,
            12.345_678_9,
            1e-6,
            7e-6,
            1.234_567e-5,
            9.999_999_999_999_999e14,
            0.999_999_9,
            1e-4 * 3.0,
        ];
        for v in edges {
            assert_float_like_serde_json(v);
            assert_float_like_serde_json(-v);
        }
        // Every short decimal of up to 7 digits after the point around every magnitude, and
        // the floats next to them.
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            let r = xorshift(&mut state);
            let k = (r % 8) as i32;
            let m = (xorshift(&mut state) >> (r >> 3 & 63)) as f64;
            let v = m / 10f64.powi(k);
            for v in [
                v,
                f64::from_bits(v.to_bits() + 1),
                f64::from_bits(v.to_bits().saturating_sub(1)),
            ] {
                if v.is_finite() {
                    assert_float_like_serde_json(v);
                    assert_float_like_serde_json(-v);
                }
            }
        }
        // And any float.
        for _ in 0..200_000 {
            let v = f64::from_bits(xorshift(&mut state));
            if v.is_finite() {
                assert_float_like_serde_json(v);
            }
        }
    }

    /// The short path does take the common floats (else it is only a cost).
    #[test]
    fn common_floats_take_the_short_path() {
        for (v, text) in [
            (3.5, "3.5"),
            (-3.5, "-3.5"),
            (42.0, "42.0"),
            (0.001, "0.001"),
            (0.000_123, "0.000123"),
            (123.456, "123.456"),
            (0.1, "0.1"),
            (99.999_9, "99.9999"),
        ] {
            let mut out = Vec::new();
            assert!(short_decimal(&mut out, v), "{v}");
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
        for v in [0.0, -0.0, 1.0 / 3.0, 1e-5, 1e15, 0.1 + 0.2] {
            let mut out = Vec::new();
            assert!(!short_decimal(&mut out, v), "{v}");
            assert!(out.is_empty());
        }
    }

    /// Integers of every length, the extremes included, as `Display` writes them.
    #[test]
    fn integers_are_written_whole() {
        let mut cases: Vec<(Vec<u8>, String)> = Vec::new();
        let mut case = |write: &dyn Fn(&mut Vec<u8>), text: String| {
            let mut out = b"x".to_vec();
            write(&mut out);
            cases.push((out, format!("x{text}")));
        };
        for v in [0, 1, -1, 9, 10, i64::MIN, i64::MAX, -1_234_567_890_123_456] {
            case(&|out| number(out, v), v.to_string());
        }
        let mut power = 1u64;
        while let Some(next) = power.checked_mul(10) {
            for v in [power - 1, power, next - 1] {
                case(&|out| number(out, v), v.to_string());
            }
            power = next;
        }
        for v in [u64::MAX, u64::MAX - 1] {
            case(&|out| number(out, v), v.to_string());
        }
        for v in [i128::MIN, i128::MAX, 0] {
            case(&|out| number(out, v), v.to_string());
        }
        case(&|out| number(out, u128::MAX), u128::MAX.to_string());
        for (out, text) in cases {
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    /// A line's fields as written, through a fresh sink's text memo.
    fn line(record: &Record, escaped: &mut Escaped) -> serde_json::Value {
        let mut out = Vec::new();
        write_json_line(&mut out, record, escaped);
        serde_json::from_slice(&out).unwrap()
    }

    /// Records of threads named, unnamed, and named with text to escape, one after another:
    /// each line names its own thread (the name of the one before is remembered, not reused).
    #[test]
    fn each_line_names_its_own_thread() {
        let names = [
            Some("main"),
            Some("a worker with a long name"),
            None,
            Some("tab\there \"quoted\""),
            Some("main"),
            Some("ünïcödé"),
            Some(""),
            None,
        ];
        let mut escaped = Escaped::default();
        for _ in 0..2 {
            for (i, name) in names.iter().enumerate() {
                let e = EventRecord {
                    thread: ThreadInfo {
                        id: i as u64 + 7,
                        name: *name,
                    },
                    ..EventRecord::default()
                };
                let v = line(&Record::Event(crate::record::Shared::new(e)), &mut escaped);
                let expected = match name {
                    Some(n) => n.to_string(),
                    None => format!("thread-{}", i + 7),
                };
                assert_eq!(v["thread"], serde_json::json!(expected));
            }
        }
    }

    /// Records of one callsite at every level, one after another and again: each line has
    /// its own kind, level and severity before the callsite's target and name.
    #[test]
    fn each_line_has_its_own_level_after_its_time() {
        let mut escaped = Escaped::default();
        for _ in 0..2 {
            for level in crate::LogLevel::ALL
                .into_iter()
                .chain(crate::LogLevel::ALL.into_iter().rev())
            {
                let e = EventRecord {
                    level,
                    ..EventRecord::default()
                };
                let s = SpanRecord {
                    level,
                    ..SpanRecord::default()
                };
                let targets = (e.metadata().target(), s.metadata().target());
                for (record, kind, target) in [
                    (
                        Record::Event(crate::record::Shared::new(e)),
                        "event",
                        targets.0,
                    ),
                    (
                        Record::Span(crate::record::Shared::new(s)),
                        "span",
                        targets.1,
                    ),
                ] {
                    let v = line(&record, &mut escaped);
                    assert_eq!(v["kind"], kind);
                    assert_eq!(v["level"], level.as_str());
                    assert_eq!(v["severity_number"], level.severity_number());
                    assert_eq!(v["target"], target);
                }
            }
        }
    }

    /// Records of two callsites, one after the other: each line has its own callsite's target,
    /// name and field names.
    #[test]
    fn each_line_has_its_own_callsites_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callsites.jsonl");
        let (layer, guard) = crate::OffloadLayer::builder()
            .backpressure(crate::Backpressure::Block {
                timeout: Duration::from_secs(60),
            })
            .sink(JsonFile::new(&path))
            .build()
            .unwrap();
        use tracing_subscriber::prelude::*;
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for i in 0..3u64 {
                tracing::info!(target: "first", alpha = i, "one");
                tracing::warn!(target: "second\"quoted", beta = i, gamma = "g", "two");
                tracing::warn!(target: "second\"quoted", beta = i, gamma = "g", "two");
            }
        });
        guard.handle().flush(Duration::from_secs(60)).unwrap();
        drop(guard);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 9);
        for (i, l) in lines.iter().enumerate() {
            let n = (i / 3) as u64;
            if i % 3 == 0 {
                assert_eq!(l["target"], "first");
                assert_eq!(l["fields"], serde_json::json!({ "alpha": n }));
            } else {
                assert_eq!(l["target"], "second\"quoted");
                assert_eq!(l["fields"], serde_json::json!({ "beta": n, "gamma": "g" }));
            }
        }
    }
}

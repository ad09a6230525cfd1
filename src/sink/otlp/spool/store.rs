//! The spool on disk: append-only segment files of checksummed frames, one encoded OTLP request
//! per frame; written at the tail, replayed and deleted from the head.
//!
//! ```text
//! <dir>/lock                          locked by the process that owns the spool
//! <dir>/00000000000000000007.seg      segments, oldest (lowest number) first
//!
//! segment:  "OFLSPL" 0x00 0x01 (8 bytes: magic and format version), then frames
//! frame:    header (32 bytes, little-endian), then the payload
//!   0..4    b"OFR1"
//!   4       flags: bit 0 = done (replayed, rejected or found corrupt): skipped from then on
//!   5       kind: 1 = traces (ExportTraceServiceRequest), 2 = logs (ExportLogsServiceRequest)
//!   6..8    0
//!   8..12   records: the data records in the request (drop markers not counted)
//!   12..16  payload length
//!   16..24  when it was written, in milliseconds since the Unix epoch
//!   24..28  CRC-32 of the payload
//!   28..32  CRC-32 of bytes 0..28, with the flags byte taken as 0
//! ```
//!
//! Crash safety without fsync ordering tricks: a frame is written with one `write` at the end
//! of the newest segment, and a process killed in the middle of it (`kill -9`) leaves a frame
//! that is too short or fails its checksum: found when the spool is opened (the header) or
//! replayed (the payload), counted, and skipped. Frames before it are untouched; a new process
//! never appends to an old segment. A damaged header is skipped by looking for the next valid
//! one. The only write to an existing frame is its one-byte `done` flag (single-byte writes are
//! atomic), so that a restart does not replay it again; a crash between a replay's success and
//! that write replays the batch once more (delivery is at least once).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first bytes of every segment: magic and format version.
const SEGMENT_MAGIC: [u8; 8] = *b"OFLSPL\x00\x01";
/// The first bytes of every frame.
const FRAME_MAGIC: [u8; 4] = *b"OFR1";
/// A frame header's length.
const HEADER_LEN: u64 = 32;
/// The `done` bit of a frame's flags byte.
const DONE: u8 = 1;
/// The offset of the flags byte in a frame header.
const FLAGS_AT: u64 = 4;
/// Segment files are named by their sequence number and this extension.
const SEGMENT_EXTENSION: &str = "seg";
/// Segments hold about this fraction of the budget, so that evicting the oldest frees a
/// sixteenth of it.
const SEGMENTS_PER_BUDGET: u64 = 16;
const MIN_SEGMENT_BYTES: u64 = 4 * 1024;
const MAX_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// What a spooled request holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An `ExportTraceServiceRequest`.
    Traces,
    /// An `ExportLogsServiceRequest`.
    Logs,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Traces => 1,
            Kind::Logs => 2,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Traces),
            2 => Some(Kind::Logs),
            _ => None,
        }
    }

    /// Its index in per-signal arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Kind::Traces => 0,
            Kind::Logs => 1,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Traces => "spans",
            Kind::Logs => "logs",
        }
    }
}

/// Where a frame is: its segment and its offset there. Orders as the frames were written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EntryId {
    seq: u64,
    offset: u64,
}

/// A frame not yet done: queued for replay, or in flight (being replayed, or held while a live
/// export of the same request finishes).
#[derive(Debug)]
struct Entry {
    kind: Kind,
    records: u64,
    /// Events that travel on its spans and nowhere else, appended by this process (see
    /// [`Store::carries`]).
    riders: u64,
    written_ms: u64,
    in_flight: bool,
    /// Its segment was evicted while it was in flight: it is no longer on disk.
    orphaned: bool,
}

/// A batch taken for replay.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) id: EntryId,
    pub(crate) kind: Kind,
    pub(crate) payload: Vec<u8>,
}

/// How a batch taken for replay (or held for a live export) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// The collector took it.
    Delivered,
    /// The collector refused it for good.
    Rejected,
}

/// Why a batch could not be spooled.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// It alone is larger than the budget.
    TooLarge { frame: u64, max: u64 },
    /// Writing failed (the directory is gone, the disk is full, …).
    Io(io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::TooLarge { frame, max } => write!(
                f,
                "the request ({frame} bytes) is larger than the whole spool budget ({max} bytes)"
            ),
            AppendError::Io(e) => write!(f, "writing to the spool failed: {e}"),
        }
    }
}

/// The store's counts since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Records in the spool when it was opened (left by an earlier process).
    pub(crate) restored: u64,
    /// Records written.
    pub(crate) spooled: u64,
    /// Records delivered from the spool.
    pub(crate) delivered: u64,
    /// Records evicted to stay within the budget.
    pub(crate) evicted: u64,
    /// Records in frames found corrupt (whose header could be read).
    pub(crate) corrupt_records: u64,
    /// Frames or damaged regions found corrupt.
    pub(crate) corrupt_batches: u64,
    /// Records the collector refused for good on replay.
    pub(crate) rejected: u64,
}

/// What the store holds now, and its counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoreStats {
    pub(crate) bytes: u64,
    pub(crate) max_bytes: u64,
    pub(crate) records: u64,
    pub(crate) batches: u64,
    /// When the oldest batch still in the spool was written.
    pub(crate) oldest_written: Option<SystemTime>,
    pub(crate) counts: Counts,
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    bytes: u64,
    /// Entries of this segment not yet done.
    pending: usize,
}

/// The segment being written.
#[derive(Debug)]
struct Tail {
    seq: u64,
    file: File,
    len: u64,
}

/// The spool directory, opened and locked.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    /// Held for the store's life: the lock on `<dir>/lock`.
    _lock: DirLock,
    max_bytes: u64,
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<EntryId, Entry>,
    /// How many of `entries` hold each signal (by [`Kind::index`]).
    batches_of: [u64; 2],
    tail: Option<Tail>,
    next_seq: u64,
    bytes: u64,
    records: u64,
    counts: Counts,
    /// Written since the last sync.
    dirty: bool,
    /// The last problem met on disk (a corrupt frame, a failed delete), and when, for the
    /// stats ([`Store::problem`]).
    pub(crate) last_problem: Option<(String, SystemTime)>,
    /// Where the riders of the batches it loses are counted lost after export (the OTLP
    /// sink's [`AwaitingDelivery`](crate::sink::AwaitingDelivery)).
    pub(crate) riders_lost_to: Option<std::sync::Arc<crate::sink::AwaitingDelivery>>,
}

// === impl Store ===

/// Which file a directory entry is, whatever its name (device and inode), for a file the
/// platform says has more than one name: only such a file is taken for another name of a
/// segment (a file system whose inode numbers are not unique never has a segment removed).
fn file_identity(entry: &fs::DirEntry) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        entry
            .metadata()
            .ok()
            .filter(|m| m.nlink() > 1)
            .map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = entry;
        None
    }
}

impl Store {
    /// The batch `id`, just appended, carries `riders`: events that travel on its spans and
    /// nowhere else. They were counted exported, and delivered once spooled; if the spool loses
    /// the batch, they are counted lost after export.
    pub(crate) fn carries(&mut self, id: EntryId, riders: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.riders = riders;
        }
    }

    /// A batch carrying `riders` is lost (evicted, corrupt, rejected): so are they.
    fn riders_lost(&self, riders: u64) {
        if let (Some(awaiting), true) = (&self.riders_lost_to, riders > 0) {
            // Delivered when spooled: awaiting again, and lost.
            awaiting.add(riders);
            awaiting.lost(riders);
        }
    }

    /// Notes a problem met on disk, now.
    fn problem(&mut self, problem: String) {
        self.last_problem = Some((problem, SystemTime::now()));
    }

    /// Opens (creating it if needed) and locks the spool directory, and reads what earlier
    /// processes left there. Fails when the directory cannot be made or read, or another
    /// process holds it.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let mut store = Store {
            dir: dir.to_owned(),
            _lock: lock,
            max_bytes,
            segment_bytes: (max_bytes / SEGMENTS_PER_BUDGET)
                .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            segments: BTreeMap::new(),
            entries: BTreeMap::new(),
            batches_of: [0; 2],
            tail: None,
            next_seq: 1,
            bytes: 0,
            records: 0,
            counts: Counts::default(),
            dirty: false,
            last_problem: None,
            riders_lost_to: None,
        };
        store.recover()?;
        // A smaller budget than the last process had: the oldest go now.
        while store.bytes > store.max_bytes {
            if !store.evict_oldest() {
                break;
            }
        }
        Ok(store)
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{SEGMENT_EXTENSION}"))
    }

    /// The segments in the directory, oldest first: files (not links) named as
    /// [`segment_path`](Self::segment_path) names them, each file once (a second name of one,
    /// a hard link, is removed). Anything else named `*.seg` (another spelling of a number, a
    /// directory, a link, the one number a segment never has) is left alone and noted as a
    /// problem: taken by the number its name parses to, it named another file, or the same
    /// segment twice. New segments are numbered past every name taken.
    fn list_segments(&mut self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        let mut files = Vec::new();
        let mut strays = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXTENSION) {
                continue;
            }
            let seq = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|seq| *seq < u64::MAX);
            if let Some(seq) = seq {
                // Whatever holds a segment's name, the next segment goes past it.
                self.next_seq = self.next_seq.max(seq + 1);
            }
            // The entry itself, not what a link points at: a link to a segment would read
            // that segment twice.
            match seq {
                Some(seq) if entry.file_type().is_ok_and(|t| t.is_file()) => {
                    files.push((seq, file_identity(&entry), path));
                }
                _ => strays.push(path),
            }
        }
        // A file under two names (a hard link: `cp -al`, `rsync -H`) is one segment, under its
        // lowest number (its requests were sent twice: pass 43). Its other names are removed
        // (the file stays under the first): left alone, one of them was a segment of its own
        // once the first was deleted, its requests sent again at the next start (pass 45).
        files.sort_unstable_by_key(|(seq, ..)| *seq);
        let mut seen = std::collections::HashSet::new();
        for (seq, identity, path) in files {
            if identity.is_some_and(|id| !seen.insert(id)) {
                if fs::remove_file(&path).is_err() {
                    strays.push(path);
                }
            } else {
                seqs.push(seq); // in order: `files` is sorted
            }
        }
        if let Some(first) = strays.first() {
            self.problem(format!(
                "{} not a segment, left alone{}",
                first.display(),
                match strays.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                }
            ));
        }
        Ok(seqs)
    }

    fn recover(&mut self) -> io::Result<()> {
        for seq in self.list_segments()? {
            let path = self.segment_path(seq);
            let scan = match scan_segment(&path) {
                Ok(scan) => scan,
                // One segment that cannot be read (gone since the listing, say) does not keep
                // the others from being replayed.
                Err(e) => {
                    self.problem(format!(
                        "{}: cannot be read ({e}); left alone",
                        path.display()
                    ));
                    continue;
                }
            };
            let pending = scan.frames.len();
            for (offset, header) in scan.frames {
                self.records += header.records;
                self.counts.restored += header.records;
                self.insert_entry(
                    EntryId { seq, offset },
                    Entry {
                        kind: header.kind,
                        records: header.records,
                        // Its riders were counted by the process that spooled it.
                        riders: 0,
                        written_ms: header.written_ms,
                        in_flight: false,
                        orphaned: false,
                    },
                );
            }
            // Torn frames (a crash mid-write) count as restored and corrupt: they were spooled.
            self.counts.restored += scan.corrupt_records;
            self.counts.corrupt_records += scan.corrupt_records;
            self.counts.corrupt_batches += scan.corrupt_batches;
            if let Some(problem) = scan.problem {
                self.problem(format!("{}: {problem}", path.display()));
            }
            if pending == 0 {
                self.remove_file(seq);
                continue;
            }
            self.bytes += scan.len;
            self.segments.insert(
                seq,
                Segment {
                    bytes: scan.len,
                    pending,
                },
            );
        }
        Ok(())
    }

    /// Writes one request at the end of the spool, evicting the oldest batches as far as
    /// needed to stay within the budget. `in_flight`: the batch is held (a live export of it
    /// is still running) and is not replayed until [`release`](Self::release)d.
    pub(crate) fn append(
        &mut self,
        kind: Kind,
        records: u64,
        payload: &[u8],
        in_flight: bool,
    ) -> Result<EntryId, AppendError> {
        let frame_len = HEADER_LEN + payload.len() as u64;
        let header_room = SEGMENT_MAGIC.len() as u64;
        if frame_len + header_room > self.max_bytes || payload.len() > u32::MAX as usize {
            return Err(AppendError::TooLarge {
                frame: frame_len,
                max: self.max_bytes,
            });
        }
        self.follow_a_deleted_directory().map_err(AppendError::Io)?;
        let needs_new_segment = loop {
            let needs_new_segment = match &self.tail {
                None => true,
                Some(t) => t.len > header_room && t.len + frame_len > self.segment_bytes,
            };
            let new_bytes = frame_len + if needs_new_segment { header_room } else { 0 };
            // Evicting may close the tail: then it needs a new segment after all.
            if self.bytes + new_bytes <= self.max_bytes || !self.evict_oldest() {
                break needs_new_segment;
            }
        };
        if needs_new_segment {
            self.roll().map_err(AppendError::Io)?;
        }
        let written_ms = unix_millis(SystemTime::now());
        let frame = encode_frame(kind, records, payload, written_ms);
        let tail = self.tail.as_mut().expect("a tail segment after roll");
        let offset = tail.len;
        if let Err(e) = tail.file.write_all(&frame) {
            // Leave no partial frame behind, so that the next append starts clean; if even that
            // fails, start a new segment (the torn frame is found as corrupt on the next open).
            if tail.file.set_len(offset).is_err() {
                self.tail = None;
            }
            return Err(AppendError::Io(e));
        }
        tail.len += frame_len;
        let seq = tail.seq;
        self.dirty = true;
        self.bytes += frame_len;
        let segment = self.segments.get_mut(&seq).expect("the tail is a segment");
        segment.bytes += frame_len;
        segment.pending += 1;
        let id = EntryId { seq, offset };
        self.insert_entry(
            id,
            Entry {
                kind,
                records,
                riders: 0,
                written_ms,
                in_flight,
                orphaned: false,
            },
        );
        self.records += records;
        self.counts.spooled += records;
        Ok(id)
    }

    /// When the spool directory was deleted under the store (by an operator or a
    /// temporary-file reaper), makes it again and locks it again; when the tail segment's file
    /// is gone, lets the next append start a new segment: appending on to the deleted file,
    /// still open, would lose every later request too. What the deleted files held is gone:
    /// counted corrupt when its turn to be replayed comes. The directory is known by its lock
    /// file, checked even without a tail (the replay, finding the loss first, lets it go).
    /// Two `stat`s per request spooled.
    fn follow_a_deleted_directory(&mut self) -> io::Result<()> {
        // When a path cannot be checked (permissions), it is taken as there.
        let gone = |path: PathBuf| !path.try_exists().unwrap_or(true);
        if self
            .tail
            .as_ref()
            .is_some_and(|t| gone(self.segment_path(t.seq)))
        {
            self.tail = None;
        }
        if gone(self.dir.join(LOCK_FILE)) {
            self.tail = None;
            fs::create_dir_all(&self.dir)?;
            self._lock = lock(&self.dir)?;
            self.problem(format!(
                "the spool's files were deleted under it: {} made again; what they held is \
                 lost (counted corrupt)",
                self.dir.display()
            ));
        }
        Ok(())
    }

    /// Starts a new segment at the tail.
    fn roll(&mut self) -> io::Result<()> {
        if let Some(old) = self.tail.take() {
            // Best effort: the frames are written; this only hurries them to the disk.
            let _ = old.file.sync_data();
            if self.segments.get(&old.seq).is_some_and(|s| s.pending == 0) {
                self.drop_segment(old.seq);
            }
        }
        let seq = self.next_seq;
        if seq == u64::MAX {
            return Err(io::Error::other(
                "the spool's segment numbers are used up (a segment of the largest number but \
                 one was found): move its files away",
            ));
        }
        self.next_seq = seq + 1;
        let path = self.segment_path(seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.write_all(&SEGMENT_MAGIC)?;
        let len = SEGMENT_MAGIC.len() as u64;
        self.bytes += len;
        self.segments.insert(
            seq,
            Segment {
                bytes: len,
                pending: 0,
            },
        );
        self.tail = Some(Tail { seq, file, len });
        Ok(())
    }

    /// Evicts the oldest segment: its batches not in flight are counted evicted now, those in
    /// flight when their flight ends (unless delivered). Returns whether there was one.
    fn evict_oldest(&mut self) -> bool {
        let Some((&seq, _)) = self.segments.iter().next() else {
            return false;
        };
        let ids: Vec<EntryId> = self
            .entries
            .range(
                EntryId { seq, offset: 0 }..EntryId {
                    seq: seq + 1,
                    offset: 0,
                },
            )
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let entry = self.entries.get_mut(&id).expect("listed above");
            if entry.in_flight {
                entry.orphaned = true;
            } else {
                let (records, riders) = (entry.records, entry.riders);
                self.remove_entry(id);
                self.records -= records;
                self.counts.evicted += records;
                self.riders_lost(riders);
            }
        }
        if self.tail.as_ref().is_some_and(|t| t.seq == seq) {
            self.tail = None;
        }
        self.drop_segment(seq);
        true
    }

    fn drop_segment(&mut self, seq: u64) {
        if let Some(segment) = self.segments.remove(&seq) {
            self.bytes -= segment.bytes;
        }
        self.remove_file(seq);
    }

    fn remove_file(&mut self, seq: u64) {
        let path = self.segment_path(seq);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                self.problem(format!("cannot delete {}: {e}", path.display()));
            }
        }
    }

    fn insert_entry(&mut self, id: EntryId, entry: Entry) {
        self.batches_of[entry.kind.index()] += 1;
        if let Some(old) = self.entries.insert(id, entry) {
            self.batches_of[old.kind.index()] -= 1;
        }
    }

    fn remove_entry(&mut self, id: EntryId) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.batches_of[entry.kind.index()] -= 1;
        Some(entry)
    }

    /// Takes the oldest batch of `kind` that is not in flight, read and checked, and marks it
    /// in flight. Batches found corrupt on the way are counted and skipped.
    ///
    /// Each signal is replayed in its own order: one whose endpoint is down does not hold the
    /// other's batches back.
    pub(crate) fn take_oldest(&mut self, kind: Kind) -> Option<Batch> {
        if self.batches_of[kind.index()] == 0 {
            return None;
        }
        loop {
            let (id, entry) = self
                .entries
                .iter()
                .find(|(_, e)| e.kind == kind && !e.in_flight)?;
            let (id, kind, records, riders) = (*id, entry.kind, entry.records, entry.riders);
            match self.read_payload(id) {
                Ok(payload) => {
                    self.entries.get_mut(&id).expect("found above").in_flight = true;
                    return Some(Batch { id, kind, payload });
                }
                Err(problem) => {
                    self.problem(problem);
                    self.counts.corrupt_records += records;
                    self.counts.corrupt_batches += 1;
                    self.riders_lost(riders);
                    self.finish(id);
                }
            }
        }
    }

    /// Reads a frame's payload and checks it against its header.
    fn read_payload(&self, id: EntryId) -> Result<Vec<u8>, String> {
        let path = self.segment_path(id.seq);
        let what = |e: &dyn std::fmt::Display| {
            format!(
                "{} at offset {}: corrupt batch skipped: {e}",
                path.display(),
                id.offset
            )
        };
        let mut file = open_regular(OpenOptions::new().read(true), &path).map_err(|e| what(&e))?;
        file.seek(SeekFrom::Start(id.offset))
            .map_err(|e| what(&e))?;
        let mut header = [0; HEADER_LEN as usize];
        file.read_exact(&mut header).map_err(|e| what(&e))?;
        let header = parse_header(&header).ok_or_else(|| what(&"its header changed"))?;
        let mut payload = vec![0; header.payload_len as usize];
        file.read_exact(&mut payload)
            .map_err(|e| what(&format!("truncated ({e})")))?;
        if crc32fast::hash(&payload) != header.payload_crc {
            return Err(what(&"checksum mismatch"));
        }
        Ok(payload)
    }

    /// A batch in flight is done: delivered or refused for good.
    pub(crate) fn done(&mut self, id: EntryId, how: Done) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        let (records, riders) = (entry.records, entry.riders);
        match how {
            Done::Delivered => self.counts.delivered += records,
            Done::Rejected => {
                self.counts.rejected += records;
                self.riders_lost(riders);
            }
        }
        self.finish(id);
    }

    /// A batch in flight goes back to the queue (its replay failed and may succeed later);
    /// one whose segment was evicted meanwhile is counted evicted.
    pub(crate) fn release(&mut self, id: EntryId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.orphaned {
            let (records, riders) = (entry.records, entry.riders);
            self.remove_entry(id);
            self.records -= records;
            self.counts.evicted += records;
            self.riders_lost(riders);
        } else {
            entry.in_flight = false;
        }
    }

    /// Removes a batch for good: marks its frame done on disk, and deletes its segment once
    /// nothing in it is left (unless it is the one being written).
    fn finish(&mut self, id: EntryId) {
        let Some(entry) = self.remove_entry(id) else {
            return;
        };
        self.records -= entry.records;
        if entry.orphaned {
            return;
        }
        let Some(segment) = self.segments.get_mut(&id.seq) else {
            return;
        };
        segment.pending -= 1;
        if segment.pending == 0 {
            // The tail too: the next append starts a new segment.
            if self.tail.as_ref().is_some_and(|t| t.seq == id.seq) {
                self.tail = None;
            }
            self.drop_segment(id.seq);
            return;
        }
        if let Err(e) = self.mark_done(id) {
            // Harmless but for a restart, which would replay this batch again.
            let path = self.segment_path(id.seq);
            self.problem(format!(
                "cannot mark a replayed batch in {}: {e}",
                path.display()
            ));
        }
    }

    fn mark_done(&self, id: EntryId) -> io::Result<()> {
        let mut file = open_regular(OpenOptions::new().write(true), &self.segment_path(id.seq))?;
        file.seek(SeekFrom::Start(id.offset + FLAGS_AT))?;
        file.write_all(&[DONE])
    }

    /// Hurries what was written to the disk (a crash of the process loses nothing written;
    /// this is for the machine's).
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.dirty) {
            return Ok(());
        }
        match &self.tail {
            Some(t) => t.file.sync_data(),
            None => Ok(()),
        }
    }

    /// How many batches of `kind` the spool holds.
    pub(crate) fn batches_of(&self, kind: Kind) -> u64 {
        self.batches_of[kind.index()]
    }

    /// Whether the spool holds no batch of `kind`.
    pub(crate) fn is_empty_of(&self, kind: Kind) -> bool {
        self.batches_of[kind.index()] == 0
    }

    /// What the spool holds now, and its counts.
    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            bytes: self.bytes,
            max_bytes: self.max_bytes,
            records: self.records,
            batches: self.entries.len() as u64,
            oldest_written: self
                .entries
                .values()
                .next()
                .map(|e| UNIX_EPOCH + Duration::from_millis(e.written_ms)),
            counts: self.counts,
        }
    }
}

/// The file in the spool directory that is locked while a store has it open.
const LOCK_FILE: &str = "lock";

/// The lock on a spool directory, released when dropped (and when the process ends, however it
/// ends).
#[derive(Debug)]
struct DirLock(File);

impl Drop for DirLock {
    /// Unlocks before the file is closed. Closing alone leaves the directory locked while any
    /// other descriptor for the same open file lives on: a process another thread is spawning
    /// holds a copy of every descriptor until it runs its program, and a spool opened again in
    /// that moment found its directory "in use".
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.0);
    }
}

/// Locks `<dir>/lock` for this store.
fn lock(dir: &Path) -> io::Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = open_regular(
        OpenOptions::new().create(true).truncate(false).write(true),
        &path,
    )?;
    // The trait's method, not `File::try_lock` (Rust 1.89, past this crate's minimum).
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(DirLock(file)),
        Err(fs4::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another sink or process is using this spool directory (give each its own)",
        )),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

/// A frame header, read and checked.
#[derive(Debug, Clone, Copy)]
struct Header {
    done: bool,
    kind: Kind,
    records: u64,
    payload_len: u32,
    written_ms: u64,
    payload_crc: u32,
}

fn header_crc(header: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..FLAGS_AT as usize]);
    h.update(&[0]);
    h.update(&header[FLAGS_AT as usize + 1..28]);
    h.finalize()
}

fn encode_frame(kind: Kind, records: u64, payload: &[u8], written_ms: u64) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN as usize + payload.len());
    frame.extend_from_slice(&FRAME_MAGIC);
    frame.push(0);
    frame.push(kind.code());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&(records.min(u32::MAX as u64) as u32).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&written_ms.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let crc = header_crc(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn parse_header(b: &[u8; HEADER_LEN as usize]) -> Option<Header> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    if b[..4] != FRAME_MAGIC || u32_at(28) != header_crc(b) {
        return None;
    }
    Some(Header {
        done: b[FLAGS_AT as usize] & DONE != 0,
        kind: Kind::from_code(b[5])?,
        records: u64::from(u32_at(8)),
        payload_len: u32_at(12),
        written_ms: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
        payload_crc: u32_at(24),
    })
}

/// What one segment file holds.
#[derive(Debug, Default)]
struct Scan {
    /// Frames not yet done, with a valid header and whole: their offsets.
    frames: Vec<(u64, Header)>,
    len: u64,
    corrupt_records: u64,
    corrupt_batches: u64,
    problem: Option<String>,
}

/// Opens a file of the spool's own (a segment, the lock) with `options`: a FIFO put at its
/// name (by a local user, or between the listing and the open) is refused rather than waited
/// on for ever, and so is anything else that is not a regular file.
fn open_regular(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let not_regular = || {
        io::Error::other(format!(
            "{} is not a regular file (moved there by hand?)",
            path.display()
        ))
    };
    let file = crate::sink::open_without_waiting(options, path).map_err(|e| {
        if crate::sink::is_fifo_without_reader(&e) {
            not_regular()
        } else {
            e
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Walks a segment's frame headers (payloads are checked when replayed): a frame cut short is
/// corrupt, and a damaged header is skipped up to the next valid one.
fn scan_segment(path: &Path) -> io::Result<Scan> {
    let mut file = open_regular(OpenOptions::new().read(true), path)?;
    let len = file.metadata()?.len();
    let mut scan = Scan {
        len,
        ..Scan::default()
    };
    if len < SEGMENT_MAGIC.len() as u64 {
        // Cut short before its first frame: nothing was lost.
        return Ok(scan);
    }
    let mut magic = [0; SEGMENT_MAGIC.len()];
    file.read_exact(&mut magic)?;
    if magic != SEGMENT_MAGIC {
        scan.corrupt_batches += 1;
        scan.problem = Some("not a spool segment (bad magic); skipped".to_owned());
        return Ok(scan);
    }
    let mut offset = SEGMENT_MAGIC.len() as u64;
    while offset < len {
        let mut raw = [0; HEADER_LEN as usize];
        let header = if offset + HEADER_LEN <= len {
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut raw)?;
            parse_header(&raw)
        } else {
            None
        };
        match header {
            Some(h) if offset + HEADER_LEN + u64::from(h.payload_len) <= len => {
                if !h.done {
                    scan.frames.push((offset, h));
                }
                offset += HEADER_LEN + u64::from(h.payload_len);
            }
            Some(h) => {
                // Cut short: the process died writing it.
                if !h.done {
                    scan.corrupt_records += h.records;
                }
                scan.corrupt_batches += 1;
                scan.problem = Some(format!("a batch at offset {offset} is cut short"));
                break;
            }
            None => {
                scan.corrupt_batches += 1;
                scan.problem = Some(format!("damaged data at offset {offset} skipped"));
                match next_header(&mut file, offset + 1, len)? {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
    }
    Ok(scan)
}

/// The offset of the next valid frame header at or after `from`.
fn next_header(file: &mut File, from: u64, len: u64) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)?;
    let found = rest.windows(HEADER_LEN as usize).position(|w| {
        w[..4] == FRAME_MAGIC && parse_header(w.try_into().expect("a header's length")).is_some()
    });
    Ok(found
        .map(|i| from + i as u64)
        .filter(|at| *at + HEADER_LEN <= len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max: u64) -> Store {
        Store::open(dir, max).unwrap()
    }

    /// A store closed while another descriptor of its lock file lives on (a process being
    /// spawned holds copies of every descriptor until it runs its program) leaves its directory
    /// unlocked: it used to be "in use" until that copy closed (a CI run's spool test failed
    /// so, while another test spawned a process).
    #[test]
    fn a_closed_store_unlocks_its_directory_while_a_copy_of_its_lock_lives() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        let copy = store._lock.0.try_clone().unwrap();
        drop(store);
        let again = Store::open(dir.path(), 1 << 20);
        assert!(again.is_ok(), "{:?}", again.err());
        drop(copy);
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == SEGMENT_EXTENSION))
            .collect();
        v.sort();
        v
    }

    /// Every record is restored or spooled, and then delivered, evicted, corrupt, rejected,
    /// or still in the spool.
    fn assert_ledger(s: &Store) {
        let st = s.stats();
        let c = st.counts;
        assert_eq!(
            c.restored + c.spooled,
            c.delivered + c.evicted + c.corrupt_records + c.rejected + st.records,
            "{st:?}"
        );
        for kind in [Kind::Traces, Kind::Logs] {
            let held = s.entries.values().filter(|e| e.kind == kind).count() as u64;
            assert_eq!(s.batches_of[kind.index()], held, "{kind:?}");
            assert_eq!(s.is_empty_of(kind), held == 0);
        }
    }

    /// The spool directory deleted under the store: what it held is counted corrupt when
    /// taken, and appends go on in the directory made (and locked) again, whether the replay
    /// found the loss first (which lets the tail go) or an append does.
    #[test]
    fn a_deleted_directory_is_made_again_for_the_next_appends() {
        for replay_first in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("spool");
            let mut s = open(&dir, 1 << 20);
            s.append(Kind::Traces, 10, &[1; 100], false).unwrap();
            fs::remove_dir_all(&dir).unwrap();
            if replay_first {
                assert!(
                    s.take_oldest(Kind::Traces).is_none(),
                    "the deleted batch is corrupt"
                );
            }
            s.append(Kind::Traces, 7, &[2; 100], false).unwrap();
            assert!(dir.join("lock").is_file());
            let b = s.take_oldest(Kind::Traces).unwrap();
            assert_eq!(b.payload, vec![2; 100]);
            s.done(b.id, Done::Delivered);
            assert_eq!(s.stats().counts.corrupt_records, 10);
            assert_ledger(&s);
            // Locked again: a second owner is refused.
            assert!(Store::open(&dir, 1 << 20).is_err());
        }
    }

    #[test]
    fn batches_replay_oldest_first_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..5u8 {
            s.append(Kind::Traces, 10, &[i; 100], false).unwrap();
        }
        let first = s.take_oldest(Kind::Traces).unwrap();
        assert_eq!(first.payload, vec![0; 100]);
        s.done(first.id, Done::Delivered);
        let second = s.take_oldest(Kind::Traces).unwrap();
        assert_eq!(second.payload, vec![1; 100]);
        // Not done: back in the queue, and on disk for the next process.
        s.release(second.id);
        assert_ledger(&s);
        drop(s);

        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().counts.restored, 40);
        assert_eq!(s.stats().records, 40);
        let payloads: Vec<u8> = std::iter::from_fn(|| {
            let b = s.take_oldest(Kind::Traces)?;
            s.done(b.id, Done::Delivered);
            Some(b.payload[0])
        })
        .collect();
        assert_eq!(payloads, vec![1, 2, 3, 4]);
        assert_ledger(&s);
        assert_eq!(s.stats().bytes, 0, "every segment deleted once replayed");
        assert!(segments(dir.path()).is_empty());
    }

    #[test]
    fn each_signal_replays_in_its_own_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..6u8 {
            let kind = if i % 3 == 0 { Kind::Logs } else { Kind::Traces };
            s.append(kind, 1, &[i; 100], false).unwrap();
        }
        assert_ledger(&s);
        // The oldest log batch in flight (its endpoint down, say) holds no span back.
        let log = s.take_oldest(Kind::Logs).unwrap();
        assert_eq!((log.kind, log.payload[0]), (Kind::Logs, 0));
        let mut spans = Vec::new();
        while let Some(b) = s.take_oldest(Kind::Traces) {
            assert_eq!(b.kind, Kind::Traces);
            spans.push(b.payload[0]);
            s.done(b.id, Done::Delivered);
        }
        assert_eq!(spans, vec![1, 2, 4, 5]);
        assert!(s.is_empty_of(Kind::Traces) && !s.is_empty_of(Kind::Logs));
        assert_ledger(&s);
        // Released, it comes first again, before the younger log batch.
        s.release(log.id);
        drop(s);
        let mut s = open(dir.path(), 1 << 20);
        assert_ledger(&s);
        assert!(s.is_empty_of(Kind::Traces));
        let logs: Vec<u8> = std::iter::from_fn(|| {
            let b = s.take_oldest(Kind::Logs)?;
            s.done(b.id, Done::Delivered);
            Some(b.payload[0])
        })
        .collect();
        assert_eq!(logs, vec![0, 3]);
        assert!(s.is_empty_of(Kind::Logs));
        assert_ledger(&s);
    }

    #[test]
    fn a_second_owner_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path(), 1 << 20);
        let err = Store::open(dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("another sink or process"), "{err}");
    }

    #[test]
    fn the_budget_evicts_the_oldest_segments_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB: segments of 4 KiB, about 3 frames of 1 KiB each.
        let max = 64 * 1024;
        let mut s = open(dir.path(), max);
        for i in 0..200u32 {
            s.append(Kind::Logs, 3, &i.to_le_bytes().repeat(256), false)
                .unwrap();
            assert!(s.stats().bytes <= max, "{:?}", s.stats());
        }
        let st = s.stats();
        assert!(st.counts.evicted > 0, "{st:?}");
        assert_ledger(&s);
        let on_disk: u64 = segments(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, st.bytes);
        // What is left is the newest.
        let oldest_left = s.take_oldest(Kind::Logs).unwrap();
        let i = u32::from_le_bytes(oldest_left.payload[..4].try_into().unwrap());
        assert_eq!(u64::from(200 - i) * 3, st.records);
    }

    #[test]
    fn a_batch_larger_than_the_budget_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 64 * 1024);
        let err = s
            .append(Kind::Traces, 1, &vec![0; 64 * 1024], false)
            .unwrap_err();
        assert!(matches!(err, AppendError::TooLarge { .. }), "{err}");
        assert_eq!(s.stats().counts.spooled, 0);
    }

    #[test]
    fn an_evicted_batch_in_flight_counts_when_its_flight_ends() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let mut s = open(dir.path(), max);
        let held = s.append(Kind::Traces, 7, &[1; 1000], true).unwrap();
        let replaying = s.append(Kind::Traces, 5, &[2; 1000], false).unwrap();
        assert_eq!(
            s.take_oldest(Kind::Traces).unwrap().id,
            replaying,
            "held batches wait"
        );
        for _ in 0..100 {
            s.append(Kind::Traces, 1, &[3; 1000], false).unwrap();
        }
        assert_ledger(&s);
        // Delivered after all: counted once, as delivered.
        s.done(held, Done::Delivered);
        // Failed: its copy is gone, so it is evicted now.
        s.release(replaying);
        let c = s.stats().counts;
        assert_eq!(c.delivered, 7);
        assert!(c.evicted >= 5, "{c:?}");
        assert_ledger(&s);
    }

    /// The events riding on a batch's spans are lost with it: refused for good, or evicted
    /// (in flight, when its flight ends), and not when it is delivered.
    #[test]
    fn the_riders_of_a_lost_batch_are_counted_lost_and_a_delivered_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 64 * 1024);
        let awaiting = std::sync::Arc::new(crate::sink::AwaitingDelivery::default());
        s.riders_lost_to = Some(std::sync::Arc::clone(&awaiting));
        let delivered = s.append(Kind::Traces, 2, &[1; 1000], false).unwrap();
        s.carries(delivered, 4);
        let refused = s.append(Kind::Traces, 3, &[2; 1000], false).unwrap();
        s.carries(refused, 5);
        let evicted = s.append(Kind::Traces, 1, &[3; 1000], false).unwrap();
        s.carries(evicted, 6);
        assert_eq!(s.take_oldest(Kind::Traces).unwrap().id, delivered);
        s.done(delivered, Done::Delivered);
        assert_eq!(awaiting.take_lost(), 0);
        assert_eq!(s.take_oldest(Kind::Traces).unwrap().id, refused);
        s.done(refused, Done::Rejected);
        assert_eq!(awaiting.take_lost(), 5);
        assert_eq!(s.take_oldest(Kind::Traces).unwrap().id, evicted);
        for _ in 0..100 {
            s.append(Kind::Traces, 1, &[4; 1000], false).unwrap();
        }
        assert_eq!(
            awaiting.take_lost(),
            0,
            "in flight: counted when its flight ends"
        );
        s.release(evicted);
        assert_eq!(awaiting.take_lost(), 6);
        assert_eq!(awaiting.awaiting(), 0);
    }

    /// Entries in the directory named like segments but not written as this crate writes them
    /// (adversary pass 35): each was taken by the number its name parses to, then opened under
    /// that number's own spelling. `7.seg` named a file that does not exist, a directory could
    /// not be read, and both failed the whole spool (its records stuck until someone found the
    /// entry); `+<n>.seg` beside segment `n` read the segment twice (its records restored twice:
    /// the spool never drained); `u64::MAX` overflowed the next number. Each is now left alone,
    /// noted as a problem, and the spool opens with its records once.
    /// A spool of three requests of 10 records each (payloads of bytes 0, 1, 2), closed: its
    /// first segment and that segment's number.
    fn three_requests(dir: &Path) -> (PathBuf, u64) {
        let mut s = open(dir, 1 << 20);
        for i in 0..3u8 {
            s.append(Kind::Traces, 10, &[i; 100], false).unwrap();
        }
        drop(s);
        let seg = segments(dir)[0].clone();
        let n = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        (seg, n)
    }

    /// Replays every request of `s` (traces), delivered: their payloads' first bytes.
    fn replay_all(s: &mut Store) -> Vec<u8> {
        replay_all_of(s, Kind::Traces)
    }

    /// Replays every request of `kind`, delivered: their payloads' first bytes.
    fn replay_all_of(s: &mut Store, kind: Kind) -> Vec<u8> {
        let mut replayed = Vec::new();
        while let Some(b) = s.take_oldest(kind) {
            replayed.push(b.payload[0]);
            s.done(b.id, Done::Delivered);
        }
        replayed
    }

    /// Runs `f` on a thread of its own; `None` when it has not finished after 10 s (an open
    /// waiting for the other end of a FIFO never does).
    #[cfg(unix)]
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(10)).ok()
    }

    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A FIFO named as the spool's lock file: opening it to write waited for a reader, and
    /// `build()` with it, for ever. It is refused, named.
    #[cfg(unix)]
    #[test]
    fn a_fifo_as_the_lock_file_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        mkfifo(&dir.path().join(LOCK_FILE));
        let path = dir.path().to_owned();
        let opened = within_10s(move || Store::open(&path, 1 << 20).map(|_| ()))
            .expect("opening the spool waited for a reader of its lock FIFO");
        let err = opened.expect_err("a FIFO is no lock file").to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    /// A segment swapped for a FIFO after the spool listed it (a race only a local user can
    /// run): reading it waited for a writer, and writing its done flag for a reader, for ever.
    /// Its batches are counted corrupt instead, and the rest goes on.
    #[cfg(unix)]
    #[test]
    fn a_segment_swapped_for_a_fifo_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, _) = three_requests(dir.path());
        // Between listing and reading: the scan.
        fs::rename(&seg, dir.path().join("moved")).unwrap();
        mkfifo(&seg);
        let scanned = within_10s({
            let seg = seg.clone();
            move || scan_segment(&seg).map(|_| ())
        })
        .expect("scanning a segment waited for a writer of a FIFO");
        let err = scanned.expect_err("a FIFO is no segment").to_string();
        assert!(err.contains("not a regular file"), "{err}");
        // Between the scan and the replay: the reads and the done flags.
        fs::remove_file(&seg).unwrap();
        fs::rename(dir.path().join("moved"), &seg).unwrap();
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().counts.restored, 30);
        fs::remove_file(&seg).unwrap();
        mkfifo(&seg);
        let s = within_10s(move || {
            let replayed = replay_all(&mut s);
            (s, replayed)
        });
        let (s, replayed) = s.expect("replaying a segment waited on a FIFO");
        assert!(replayed.is_empty(), "{replayed:?}");
        assert_eq!(s.stats().counts.corrupt_records, 30);
        assert_ledger(&s);
    }

    #[test]
    fn entries_named_like_segments_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (_, n) = three_requests(dir.path());
        let strays = [
            format!("+{n}.seg"),
            format!("0{n}.seg"),
            "7.seg".to_owned(),
            format!("{}.seg", u64::MAX),
        ];
        for stray in &strays {
            fs::write(dir.path().join(stray), b"junk").unwrap();
        }
        fs::create_dir(dir.path().join("00000000000000000500.seg")).unwrap();

        let reopened = Store::open(dir.path(), 1 << 20);
        let mut s = reopened.expect("the spool opens with strays beside its segments");
        assert_eq!(s.stats().counts.restored, 30);
        assert!(
            s.last_problem
                .as_ref()
                .is_some_and(|(p, _)| p.contains("not a segment")),
            "{:?}",
            s.last_problem
        );
        assert_eq!(replay_all(&mut s), vec![0, 1, 2]);
        assert_ledger(&s);
        // New segments go after the real ones, and the strays are still there, untouched.
        s.append(Kind::Traces, 1, &[9; 100], false).unwrap();
        for stray in &strays {
            assert_eq!(fs::read(dir.path().join(stray)).unwrap(), b"junk");
        }
    }

    /// A link named as a segment is not one: it read the segment it points at twice (its
    /// records delivered twice, or counted corrupt once the segment was gone); and an entry
    /// left alone that holds the next segment's name made the next segment fail to be made,
    /// and the batch with it (adversary pass 40).
    #[cfg(unix)]
    #[test]
    fn links_are_not_segments_and_strays_do_not_take_the_next_name() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, n) = three_requests(dir.path());
        let name = |seq: u64| dir.path().join(format!("{seq:020}.seg"));
        std::os::unix::fs::symlink(&seg, name(0)).unwrap();
        std::os::unix::fs::symlink(&seg, name(n + 1)).unwrap();
        fs::create_dir(name(n + 2)).unwrap();
        // A hard link too (`cp -al`, `rsync -H`): the same file under a second name (pass 43),
        // which is removed (pass 45: its requests were sent again at the next start).
        fs::hard_link(&seg, name(n + 3)).unwrap();

        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().counts.restored, 30);
        assert_eq!(replay_all(&mut s), vec![0, 1, 2]);
        // The next segment goes past the names taken.
        s.append(Kind::Traces, 1, &[9; 100], false)
            .expect("a batch spooled past the strays");
        assert_eq!(s.stats().counts.corrupt_records, 0);
        assert_ledger(&s);
        // The next start finds the batch spooled since, and nothing of what was delivered.
        drop(s);
        let s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().counts.restored, 1);
    }

    #[test]
    fn a_frame_cut_short_by_a_crash_is_counted_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..4u8 {
            s.append(Kind::Traces, 10, &[i; 500], false).unwrap();
        }
        drop(s);
        let seg = &segments(dir.path())[0];
        let len = fs::metadata(seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(len - 100)
            .unwrap();

        let mut s = open(dir.path(), 1 << 20);
        let c = s.stats().counts;
        assert_eq!(
            (c.restored, c.corrupt_records, c.corrupt_batches),
            (40, 10, 1)
        );
        assert_eq!(replay_all(&mut s), vec![0, 1, 2]);
        assert_ledger(&s);
    }

    #[test]
    fn a_damaged_payload_or_header_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..5u8 {
            s.append(Kind::Logs, 2, &[i; 200], false).unwrap();
        }
        drop(s);
        let seg = &segments(dir.path())[0];
        let mut bytes = fs::read(seg).unwrap();
        let frame = |i: usize| SEGMENT_MAGIC.len() + i * (HEADER_LEN as usize + 200);
        // The payload of the second frame, and the header of the fourth.
        bytes[frame(1) + HEADER_LEN as usize + 50] ^= 0xff;
        bytes[frame(3) + 9] ^= 0xff;
        fs::write(seg, &bytes).unwrap();

        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(replay_all_of(&mut s, Kind::Logs), vec![0, 2, 4]);
        let c = s.stats().counts;
        // The damaged header's records are unknown: its batch is counted, not its records.
        assert_eq!(
            (c.restored, c.corrupt_records, c.corrupt_batches),
            (8, 2, 2)
        );
        assert_ledger(&s);
        assert!(s.last_problem.is_some());
    }

    #[test]
    fn done_batches_are_not_replayed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..3u8 {
            s.append(Kind::Traces, 1, &[i; 10], false).unwrap();
        }
        let b = s.take_oldest(Kind::Traces).unwrap();
        s.done(b.id, Done::Rejected);
        assert_eq!(s.stats().counts.rejected, 1);
        drop(s);
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().counts.restored, 2);
        assert_eq!(s.take_oldest(Kind::Traces).unwrap().payload, vec![1; 10]);
    }

    #[test]
    fn a_smaller_budget_on_reopen_evicts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for _ in 0..300 {
            s.append(Kind::Traces, 1, &[0; 1000], false).unwrap();
        }
        drop(s);
        let s = open(dir.path(), 64 * 1024);
        let st = s.stats();
        assert!(st.bytes <= 64 * 1024 && st.counts.evicted > 0, "{st:?}");
        assert_ledger(&s);
    }
}

//! `sink::Console`: human-readable lines on stdout or stderr.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use crate::level::LogLevel;
use crate::record::{write_rfc3339, FieldValue, Fields, Record};
use crate::sink::{Sink, SinkError};

/// The capacity of the buffer a batch's lines are written into.
const LINE_CAPACITY: usize = 64 * 1024;
/// Past this, the buffer a big batch grew is freed after the batch, not kept.
const MAX_KEPT_LINE_CAPACITY: usize = 4 << 20;

/// Serialised (in `/config`) as `stdout` or `stderr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Stream {
    Stdout,
    Stderr,
}

/// Writes one human-readable line per record, coloured by level when the stream is a terminal
/// and `NO_COLOR` is not set to a non-empty value ([no-color.org](https://no-color.org), as
/// `tracing_subscriber::fmt` does); [`ansi`](Self::ansi) decides instead when it is called.
/// Control characters in what records carry (messages, errors, targets, names, values), line
/// separators and bidirectional overrides are written escaped (`\u{1b}`, `\n`, `\u{202e}`),
/// so that logged input cannot drive the terminal, forge a line or disguise one.
///
/// Its [settings](Sink::settings), in [`Config::sink_settings`](crate::Config::sink_settings)
/// and `/config`: `stream` (`stdout` or `stderr`), `terminal` (whether the stream is one) and
/// `ansi`, whether lines are coloured as decided when the sink started, with what decided it
/// (`{"value":false,"source":{"kind":"env","name":"NO_COLOR"}}`: `code` for
/// [`ansi`](Self::ansi), `default` for the terminal check); both `null` for a sink that never
/// started (a disabled pipeline).
///
/// ```text
/// 2026-11-22T11:24:22.123456Z  INFO app::db: connected pool_size=8 trace_id=… span_id=…
/// 2026-11-22T11:24:22.125001Z  INFO app::db: span `query` closed in 1.204ms rows=3 trace_id=… span_id=…
/// ```
#[derive(Debug)]
pub struct Console {
    stream: Stream,
    ansi: Option<bool>,
    colour: bool,
    /// What [`start`](Sink::start) found and decided (`None` before), for
    /// [`settings`](Sink::settings).
    colours: Option<Colours>,
    line: String,
}

/// How a started console decided on colours.
#[derive(Debug, Clone)]
struct Colours {
    /// Whether its stream is a terminal.
    terminal: bool,
    /// Whether it colours lines, and what decided, shown as the configuration shows a
    /// setting's source (`crate::config::Source`, a module above the sinks):
    /// [`Console::ansi`] (code), a non-empty `NO_COLOR` (the environment), or the terminal
    /// check (the default).
    ansi: bool,
    ansi_source: serde_json::Value,
}

// === impl Console ===

impl Console {
    /// A sink named `console` writing to standard output.
    pub fn stdout() -> Self {
        Self::on(Stream::Stdout)
    }

    /// A sink named `console` writing to standard error.
    pub fn stderr() -> Self {
        Self::on(Stream::Stderr)
    }

    fn on(stream: Stream) -> Self {
        Console {
            stream,
            ansi: None,
            colour: false,
            colours: None,
            line: String::with_capacity(LINE_CAPACITY),
        }
    }

    /// Forces colours on or off, whatever the stream and `NO_COLOR` (default: on only when the
    /// stream is a terminal and `NO_COLOR` is unset or empty).
    pub fn ansi(mut self, ansi: bool) -> Self {
        self.ansi = Some(ansi);
        self
    }

    fn format(&mut self, record: &Record) {
        let out = &mut self.line;
        let (ts, level) = match record {
            Record::Event(e) => (e.timestamp(), e.level()),
            Record::Span(s) => (s.end(), s.level()),
            Record::Dropped(d) => (d.at, LogLevel::Warning),
        };
        write_rfc3339(out, ts);
        out.push(' ');
        let text = level.severity_text();
        if self.colour {
            let _ = write!(out, "\x1b[{}m{text:>5}\x1b[0m ", colour(level));
        } else {
            let _ = write!(out, "{text:>5} ");
        }
        match record {
            Record::Event(e) => {
                let _ = write!(Escaped(out), "{}", e.target());
                out.push_str(": ");
                if let Some(m) = e.message() {
                    let _ = write!(Escaped(out), "{m}");
                }
                write_fields(out, e.fields());
                if let Some(c) = e.span_context() {
                    let _ = write!(out, " trace_id={} span_id={}", c.trace_id, c.span_id);
                    if !c.sampled {
                        out.push_str(" sampled=false");
                    }
                }
            }
            Record::Span(s) => {
                let _ = write!(
                    Escaped(out),
                    "{}: span `{}` closed in {:?}",
                    s.target(),
                    s.name(),
                    s.duration()
                );
                write_fields(out, s.fields());
                let _ = write!(out, " trace_id={} span_id={}", s.trace_id(), s.span_id());
                if let Some(p) = s.parent_span_id() {
                    let _ = write!(out, " parent_span_id={p}");
                }
            }
            Record::Dropped(d) => {
                let _ = write!(out, "tracing_offload: {d}");
            }
        }
        out.push('\n');
    }
}

/// Whether `NO_COLOR` asks for no colours: set, and not empty (no-color.org).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn colour(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "35",
        LogLevel::Debug => "34",
        LogLevel::Info => "32",
        LogLevel::Warning => "33",
        LogLevel::Error => "31",
        LogLevel::Critical => "1;41",
    }
}

fn write_fields(out: &mut String, fields: &Fields) {
    for (name, value) in fields.iter() {
        let _ = match value {
            // `Debug` quotes and escapes the value.
            FieldValue::Str(t) => {
                write!(Escaped(out), " {name}=").and_then(|()| write!(out, "{:?}", t.to_string()))
            }
            other => write!(Escaped(out), " {name}={other}"),
        };
    }
}

/// Whether `c` is written escaped: control characters, the Unicode line and paragraph
/// separators, and the marks and overrides that change the direction of text (which can make
/// a line read otherwise than it is, as in "Trojan Source"): Unicode's bidirectional
/// formatting characters, every one (UAX #9, table 4, the Arabic letter mark included).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Writes text with its control characters (see [`needs_escape`]) escaped as Rust's `Debug`
/// escapes them (`\n`, `\u{1b}`, …), so that what a record carries (a message, an error, a
/// target) can neither send escape sequences to the terminal (RUSTSEC-2025-0055 is that fault
/// in `fmt`) nor start a line that looks like a record of its own.
struct Escaped<'a>(&'a mut String);

impl std::fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(needs_escape) {
            self.0.push_str(&rest[..at]);
            let c = rest[at..].chars().next().unwrap_or_default();
            self.0.extend(c.escape_debug());
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.push_str(rest);
        Ok(())
    }
}

impl Sink for Console {
    fn name(&self) -> &str {
        "console"
    }

    fn start(&mut self) -> Result<(), SinkError> {
        let terminal = match self.stream {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        };
        let (ansi, ansi_source) = match self.ansi {
            Some(ansi) => (ansi, serde_json::json!({ "kind": "code" })),
            None if no_color() => (
                false,
                serde_json::json!({ "kind": "env", "name": "NO_COLOR" }),
            ),
            None => (terminal, serde_json::json!({ "kind": "default" })),
        };
        self.colour = ansi;
        self.colours = Some(Colours {
            terminal,
            ansi,
            ansi_source,
        });
        Ok(())
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.line.clear();
        for (i, record) in batch.iter().enumerate() {
            crate::record::prefetch_ahead(batch, i);
            self.format(record);
        }
        let result = match self.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(self.line.as_bytes()),
            Stream::Stderr => std::io::stderr().lock().write_all(self.line.as_bytes()),
        };
        // A big batch's buffer is not kept for the pipeline's whole life (adversary pass 57).
        if self.line.capacity() > MAX_KEPT_LINE_CAPACITY {
            self.line = String::with_capacity(LINE_CAPACITY);
        }
        result.map_err(|e| SinkError::io("writing to the console", e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let result = match self.stream {
            Stream::Stdout => std::io::stdout().flush(),
            Stream::Stderr => std::io::stderr().flush(),
        };
        result.map_err(|e| SinkError::io("flushing the console", e))
    }

    /// The stream, whether it is a terminal, and whether lines are coloured, with what decided
    /// it (see [`Console`]).
    fn settings(&self) -> serde_json::Value {
        let colours = self.colours.as_ref();
        serde_json::json!({
            "stream": self.stream,
            "terminal": colours.map(|c| c.terminal),
            "ansi": colours.map(|c| serde_json::json!({ "value": c.ansi, "source": c.ansi_source })),
        })
    }
}

//! Every line the JSON sink writes, for every kind and level, parsed back and compared field by
//! field with what the public API reports for the same record, received by another sink
//! (`timestamp()` vs `ts`; a span's `start()`, `end()`, `duration()` vs `start`, `end`, `ts`,
//! `duration_ns`), with strings of every length 0–20 with and without characters needing
//! escapes, multi-byte UTF-8 across the 8/16-byte boundaries of the short-string path, and field
//! names needing escapes (each callsite's field names are escaped once and reused). Written by
//! adversary pass 24 against the sink's hand-written formatting.
mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::*;
use tracing_offload::{sink, Backpressure, FieldValue, OffloadLayer, Record};

/// Strings of 0..=20 bytes: plain, with a character needing an escape at every position, and
/// multi-byte characters straddling bytes 7/8, 8/9, 15/16 and 16/17.
fn strings() -> Vec<String> {
    let mut out = Vec::new();
    for len in 0..=20usize {
        out.push("abcdefghijklmnopqrstuvwxyz"[..len].to_owned());
        for sp in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{7f}"] {
            for pos in 0..len {
                let mut s = "x".repeat(pos);
                s.push_str(sp);
                s.push_str(&"y".repeat(len - pos - 1));
                out.push(s);
            }
        }
        for mb in ["é", "€", "😀"] {
            if mb.len() > len {
                continue;
            }
            for pos in 0..=len - mb.len() {
                let mut s = "m".repeat(pos);
                s.push_str(mb);
                s.push_str(&"n".repeat(len - pos - mb.len()));
                out.push(s);
            }
        }
    }
    out
}

fn expected_value(v: FieldValue<'_>) -> Value {
    match v {
        FieldValue::I64(v) => json!(v),
        FieldValue::U64(v) => json!(v),
        FieldValue::I128(v) => serde_json::from_str(&v.to_string()).unwrap(),
        FieldValue::U128(v) => serde_json::from_str(&v.to_string()).unwrap(),
        FieldValue::F64(v) if v.is_finite() => json!(v),
        FieldValue::F64(v) => json!(v.to_string()),
        FieldValue::Bool(v) => json!(v),
        FieldValue::Str(t) => json!(t.to_string()),
        FieldValue::Error(e) => json!(e.to_string()),
        other => panic!("{other:?}"),
    }
}

fn expected_fields(f: &tracing_offload::Fields) -> Value {
    let mut m = serde_json::Map::new();
    for (name, v) in f.iter() {
        m.insert(name.to_owned(), expected_value(v));
    }
    Value::Object(m)
}

fn id_of(fields: &tracing_offload::Fields) -> u64 {
    match fields.get("id") {
        Some(FieldValue::U64(v)) => v,
        Some(FieldValue::I64(v)) => v as u64,
        other => panic!("no id: {other:?}"),
    }
}

macro_rules! at_every_level {
    ($id:expr, $s:expr) => {{
        let s: &str = $s;
        tracing::trace!(id = $id, s = s, "{}", s);
        tracing::debug!(id = $id + 1, s = s, "{}", s);
        tracing::info!(id = $id + 2, s = s, "{}", s);
        tracing::warn!(id = $id + 3, s = s, "{}", s);
        tracing::error!(id = $id + 4, s = s, "{}", s);
        tracing::error!(critical = true, id = $id + 5, s = s, "{}", s);
    }};
}

fn run(json_last: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let collect = Collect::new("collect");
    let mut b = OffloadLayer::builder()
        .capacity(1 << 16)
        .backpressure(Backpressure::Block {
            timeout: Duration::MAX,
        })
        .critical_target("p24crit");
    b = if json_last {
        b.sink(collect.clone()).sink(sink::JsonFile::new(&path))
    } else {
        b.sink(sink::JsonFile::new(&path)).sink(collect.clone())
    };
    let (layer, guard) = b.build().unwrap();
    let handle = guard.handle();
    let all = strings();
    with_layer(layer, || {
        let mut id = 0u64;
        for s in &all {
            at_every_level!(id, s);
            id += 6;
        }
        // Field names that need escapes, and around 8/16 bytes.
        tracing::info!(
            id = id,
            "a\"b" = 1,
            "tab\there" = 2,
            "é中😀" = 3,
            "0123456789abcde\"" = 4,
            "0123456789abcdefg" = 5,
            "01234567" = 6,
            "\\" = 7,
            "" = 8,
            x = 1.5f64,
            nan = f64::NAN,
            neg = -3i64,
            big = u128::MAX,
            t = true,
        );
        id += 1;
        // Spans at every level, nested, with events inside.
        for (k, s) in all.iter().enumerate().step_by(7) {
            let outer = match k % 5 {
                0 => tracing::trace_span!("outer-t", id = id, s = s.as_str()),
                1 => tracing::debug_span!("outer-d", id = id, s = s.as_str()),
                2 => tracing::info_span!("outer-i", id = id, s = s.as_str()),
                3 => tracing::warn_span!("outer-w", id = id, s = s.as_str()),
                _ => tracing::error_span!("outer-e", id = id, s = s.as_str()),
            };
            let _o = outer.enter();
            let inner =
                tracing::error_span!(target: "p24crit", "inner", id = id + 1, s = s.as_str());
            let _i = inner.enter();
            tracing::info!(id = id + 2, s = s.as_str(), "in span");
            id += 3;
        }
    });
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats();
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(stats.dropped, 0, "{stats:#?}");

    let text = std::fs::read_to_string(&path).unwrap();
    let mut by_id: HashMap<(String, u64), Value> = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let kind = v["kind"].as_str().unwrap().to_owned();
        if kind == "dropped" {
            panic!("unexpected marker: {line}");
        }
        let id = v["fields"]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id: {line}"));
        assert!(by_id.insert((kind, id), v).is_none(), "id {id} twice");
    }
    let records = collect.data();
    assert_eq!(
        records.len(),
        by_id.len(),
        "JSON lines vs records received by the other sink"
    );
    let mut checked = 0;
    for r in &records {
        match r {
            Record::Event(e) => {
                let id = id_of(e.fields());
                let v = &by_id[&("event".to_owned(), id)];
                let ctx = format!("event {id}: {v}");
                assert_eq!(v["ts"], json!(rfc3339_micros(e.timestamp())), "{ctx}");
                assert_eq!(v["level"], json!(e.level().as_str()), "{ctx}");
                assert_eq!(
                    v["severity_number"],
                    json!(e.level().severity_number()),
                    "{ctx}"
                );
                assert_eq!(v["target"], json!(e.target()), "{ctx}");
                assert_eq!(v["name"], json!(e.name()), "{ctx}");
                match e.message() {
                    Some(m) => assert_eq!(v["message"], json!(m.to_string()), "{ctx}"),
                    None => assert!(v.get("message").is_none(), "{ctx}"),
                }
                assert_eq!(v["fields"], expected_fields(e.fields()), "{ctx}");
                match e.span_context() {
                    Some(c) => {
                        assert_eq!(v["trace_id"], json!(c.trace_id.to_string()), "{ctx}");
                        assert_eq!(v["span_id"], json!(c.span_id.to_string()), "{ctx}");
                    }
                    None => assert!(v.get("trace_id").is_none(), "{ctx}"),
                }
                let t = e.thread();
                let tn = t
                    .name
                    .map(str::to_owned)
                    .unwrap_or(format!("thread-{}", t.id));
                assert_eq!(v["thread"], json!(tn), "{ctx}");
                // The public time is after the epoch and near now.
                let age = SystemTime::now().duration_since(e.timestamp()).unwrap();
                assert!(age < Duration::from_secs(600), "{ctx}: {age:?}");
            }
            Record::Span(s) => {
                let id = id_of(s.fields());
                let v = &by_id[&("span".to_owned(), id)];
                let ctx = format!("span {id}: {v}");
                assert_eq!(v["ts"], json!(rfc3339_micros(s.end())), "{ctx}");
                assert_eq!(v["end"], json!(rfc3339_micros(s.end())), "{ctx}");
                assert_eq!(v["start"], json!(rfc3339_micros(s.start())), "{ctx}");
                assert_eq!(s.end(), s.start() + s.duration(), "{ctx}");
                assert_eq!(
                    v["duration_ns"],
                    json!(s.duration().as_nanos() as u64),
                    "{ctx}"
                );
                assert_eq!(v["level"], json!(s.level().as_str()), "{ctx}");
                assert_eq!(
                    v["severity_number"],
                    json!(s.level().severity_number()),
                    "{ctx}"
                );
                assert_eq!(v["target"], json!(s.target()), "{ctx}");
                assert_eq!(v["name"], json!(s.name()), "{ctx}");
                assert_eq!(v["fields"], expected_fields(s.fields()), "{ctx}");
                assert_eq!(v["trace_id"], json!(s.trace_id().to_string()), "{ctx}");
                assert_eq!(v["span_id"], json!(s.span_id().to_string()), "{ctx}");
                match s.parent_span_id() {
                    Some(p) => assert_eq!(v["parent_span_id"], json!(p.to_string()), "{ctx}"),
                    None => assert!(v.get("parent_span_id").is_none(), "{ctx}"),
                }
                if let Some((busy, idle)) = s.busy_idle() {
                    assert_eq!(v["busy_ns"], json!(busy.as_nanos() as u64), "{ctx}");
                    assert_eq!(v["idle_ns"], json!(idle.as_nanos() as u64), "{ctx}");
                }
            }
            Record::Dropped(_) => unreachable!(),
        }
        checked += 1;
    }
    // Every level appears, for events and spans, critical included.
    let levels = |kind: &str| {
        let mut l: Vec<String> = by_id
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v["level"].as_str().unwrap().to_owned())
            .collect();
        l.sort();
        l.dedup();
        l
    };
    assert_eq!(
        levels("event"),
        ["critical", "debug", "error", "info", "trace", "warning"]
    );
    assert_eq!(
        levels("span"),
        ["critical", "debug", "error", "info", "trace", "warning"]
    );
    assert!(checked > 1000, "{checked}");
}

#[test]
fn json_lines_match_the_public_api_json_sink_last() {
    run(true);
}

#[test]
fn json_lines_match_the_public_api_json_sink_first() {
    run(false);
}

/// Drop markers: every kind's head for `dropped` parses, says `warning`/13, and the counts in
/// the JSON sink's markers add up to what it did not get (queue drops under `DropNewest`).
#[test]
fn json_markers_parse_and_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let collect = Collect::new("collect");
    collect.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4)
        .sink_buffer_capacity(4)
        .sink(collect.clone())
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    let d = dispatch(layer);
    tracing::dispatcher::with_default(&d, || {
        for i in 0..200u64 {
            tracing::info!(id = i, "flood");
        }
    });
    collect.release();
    handle.flush(DEADLINE).unwrap();
    // One more after the loss: the marker is written before it.
    tracing::dispatcher::with_default(&d, || tracing::info!(id = 1000u64, "after"));
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats();
    guard.shutdown(DEADLINE).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut marked = 0u64;
    let mut lines = 0u64;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v["kind"] == "dropped" {
            assert_eq!(v["level"], "warning", "{line}");
            assert_eq!(v["severity_number"], 13, "{line}");
            let ts = v["ts"].as_str().unwrap();
            let since = v["since"].as_str().unwrap();
            assert_eq!(ts.len(), 27, "{line}");
            assert!(since <= ts, "{line}");
            for (_, n) in v["dropped"].as_object().unwrap() {
                marked += n.as_u64().unwrap();
            }
        } else {
            lines += 1;
        }
    }
    let json = stats.sink("json").or_else(|| stats.sinks.last()).unwrap();
    eprintln!(
        "stats: offered {} dropped {} json {json:?}",
        stats.offered, stats.dropped
    );
    assert_eq!(lines, json.exported, "{stats:#?}");
    assert_eq!(
        lines + marked,
        stats.offered,
        "markers + lines = offered: {text}\n{stats:#?}"
    );
}

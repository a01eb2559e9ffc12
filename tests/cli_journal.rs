//! `stream-sum journal ls | read`: the documented JSON shapes, checked against each other and
//! against SHA-1 recomputed here from the chunks `journal read` prints.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use sha1::{Digest, Sha1};

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(
        s.len().is_multiple_of(2) && is_lower_hex(s),
        "not lower-case hex: {s}"
    );
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `journal ls --json` is `{"journals":[{"name","begin","end","fragments":[...]}]}` listing the
/// chunk journals, shard logs and `runs`, each with contiguous fragments from begin to end whose
/// files exist.
#[test]
fn journal_ls_json_lists_journals_with_contiguous_fragments() {
    let t = temp_data();
    small_run(&t.data, "300ms");
    let ls = journal_ls(&t.data);
    let mut names: Vec<String> = journal_names(&ls, "");
    names.sort();
    assert_eq!(
        names,
        ["chunks-000", "chunks-001", "runs", "sums-000", "sums-001"],
        "{ls}"
    );
    for j in ls["journals"].as_array().unwrap() {
        let name = str_field(j, "name");
        let (begin, end) = (u64_field(j, "begin"), u64_field(j, "end"));
        assert!(begin < end, "{name}: empty after a run: {j}");
        let fragments = j["fragments"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no fragments: {j}"));
        assert!(!fragments.is_empty(), "{name}: {j}");
        let mut at = begin;
        for f in fragments {
            assert_eq!(u64_field(f, "begin"), at, "{name}: fragments not contiguous: {j}");
            at = u64_field(f, "end");
            let path = str_field(f, "path");
            assert!(
                std::path::Path::new(path).is_file(),
                "{name}: fragment file {path} missing"
            );
        }
        assert_eq!(at, end, "{name}: fragments end at {at}, journal at {end}");
    }
}

/// Every `journal read` line carries journal, offset and kind; chunks carry stream, seq, final
/// and data_hex, Sums stream, seq and sha1_hex. Each Sum's `stream` matches its stream's chunks
/// in the same-numbered chunk journal, and its sha1_hex equals SHA-1 over those chunks' data
/// (deduplicated by seq, seq 0 to the final chunk's seq, which is the Sum's seq).
#[test]
fn journal_read_sums_match_sha1_of_their_chunks() {
    let t = temp_data();
    let run = small_run(&t.data, "500ms");
    let ls = journal_ls(&t.data);

    // stream -> seq -> (data, final), over both chunk journals; stream -> partition.
    let mut streams: HashMap<String, BTreeMap<u64, (Vec<u8>, bool)>> = HashMap::new();
    let mut partition_of: HashMap<String, String> = HashMap::new();
    for name in journal_names(&ls, "chunks-") {
        let mut last_offset = 0;
        for line in journal_read(&t.data, &name, None) {
            assert_eq!(str_field(&line, "journal"), name, "{line}");
            assert_eq!(str_field(&line, "kind"), "chunk", "{line}");
            let offset = u64_field(&line, "offset");
            assert!(offset >= last_offset, "{name}: offsets go backwards at {line}");
            last_offset = offset;
            let stream = str_field(&line, "stream").to_string();
            assert!(stream.len() == 16 && is_lower_hex(&stream), "{line}");
            let is_final = line["final"]
                .as_bool()
                .unwrap_or_else(|| panic!("no final: {line}"));
            let data = unhex(str_field(&line, "data_hex"));
            let partition = name.trim_start_matches("chunks-").to_string();
            let p = partition_of
                .entry(stream.clone())
                .or_insert_with(|| partition.clone());
            assert_eq!(*p, partition, "stream {stream} in two chunk journals");
            streams
                .entry(stream)
                .or_default()
                .entry(u64_field(&line, "seq"))
                .or_insert((data, is_final));
        }
    }
    assert!(!streams.is_empty(), "no chunks read");

    let mut sums_checked = 0u64;
    for name in journal_names(&ls, "sums-") {
        let partition = name.trim_start_matches("sums-");
        for line in journal_read(&t.data, &name, None) {
            assert_eq!(str_field(&line, "journal"), name, "{line}");
            u64_field(&line, "offset");
            if str_field(&line, "kind") != "sum" {
                continue;
            }
            let stream = str_field(&line, "stream");
            let seq = u64_field(&line, "seq");
            let sha1_hex = str_field(&line, "sha1_hex");
            assert!(sha1_hex.len() == 40 && is_lower_hex(sha1_hex), "{line}");
            let chunks = streams
                .get(stream)
                .unwrap_or_else(|| panic!("Sum for a stream with no chunks: {line}"));
            assert_eq!(
                partition_of[stream], partition,
                "Sum in another partition than its chunks: {line}"
            );
            let seqs: Vec<u64> = chunks.keys().copied().collect();
            assert_eq!(
                seqs,
                (0..=seq).collect::<Vec<_>>(),
                "stream {stream}: chunk seqs vs Sum seq {seq}"
            );
            assert!(
                chunks[&seq].1,
                "stream {stream}: chunk {seq} (the Sum's seq) is not final"
            );
            let mut h = Sha1::new();
            for (data, _) in chunks.values() {
                h.update(data);
            }
            let computed: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                computed, sha1_hex,
                "stream {stream}: SHA-1 of its chunks vs its Sum"
            );
            sums_checked += 1;
        }
    }
    assert_eq!(sums_checked, u64_field(&run, "streams_finished"), "{run}");
}

/// A fragment removed by hand from between two others: `journal ls` text marks the fragment
/// before the hole with the offsets no file holds (the JSON shows it as `bytes` above
/// `file_bytes`), and the intact fragments carry no mark.
#[test]
fn journal_ls_text_marks_the_offsets_a_removed_middle_fragment_took() {
    let t = temp_data();
    let mut args = small_run_args(&t.data, "1s");
    // 1 MiB fragments, so a second of 1 KiB chunks fills several.
    args.extend(["--fragment-max-bytes", "1048576", "--max-mb-per-s", "8"].map(String::from));
    cli(&args).expect_code(0, "run");
    let ls = journal_ls(&t.data);
    let fragments = journal_fragments(&ls, "chunks-000");
    assert!(
        fragments.len() >= 3,
        "too few fragments to remove a middle one: {ls}"
    );
    let (before, removed) = (&fragments[0], &fragments[1]);
    std::fs::remove_file(str_field(removed, "path")).expect("remove the middle fragment");
    let out = cli(&["journal", "ls", "--data", t.data.to_str().unwrap()]);
    out.expect_code(0, "journal ls");
    let marked: Vec<&str> = out.stdout.lines().filter(|l| l.contains("MISSING")).collect();
    let expected = format!(
        "MISSING offsets {}..{}",
        u64_field(before, "end"),
        u64_field(removed, "end")
    );
    assert_eq!(marked.len(), 1, "{}", out.stdout);
    assert!(
        marked[0].contains(str_field(before, "path")) && marked[0].contains(&expected),
        "expected {expected:?} on the line of {}:\n{}",
        str_field(before, "path"),
        out.stdout
    );
}

/// A data directory whose path is not UTF-8 (Linux paths are bytes): `journal ls --json` still
/// prints one JSON object, the path written lossily, instead of panicking while serializing it.
#[test]
fn journal_ls_json_over_a_non_utf8_path_prints_json() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let t = temp_data();
    let data = t.dir.path().join(OsStr::from_bytes(b"bad\xffname"));
    let run = cli(&[
        OsStr::new("run"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--duration"),
        OsStr::new("300ms"),
        OsStr::new("--max-mb-per-s"),
        OsStr::new("5"),
        OsStr::new("--max-chunk-bytes"),
        OsStr::new("1024"),
        OsStr::new("--json"),
    ]);
    run.expect_code(0, "run over a non-UTF-8 path");
    let ls = cli(&[
        OsStr::new("journal"),
        OsStr::new("ls"),
        OsStr::new("--json"),
        OsStr::new("--data"),
        data.as_os_str(),
    ]);
    ls.expect_code(0, "journal ls --json over a non-UTF-8 path");
    let ls = ls.json();
    let fragments = journal_fragments(&ls, "chunks-000");
    assert!(
        str_field(&fragments[0], "path").contains("bad\u{fffd}name"),
        "{ls}"
    );
}

/// `journal read --from` an offset inside an intact frame, or past the end, is a bad command line
/// (exit 2), not damage: the error names the frame around it and where frames begin, and reading
/// from either of those works.
#[test]
fn journal_read_from_inside_an_intact_frame_is_a_usage_error_naming_the_frame() {
    let t = temp_data();
    small_run(&t.data, "500ms");
    let d = t.data.to_str().unwrap();
    let mut offsets: Vec<u64> = journal_read(&t.data, "sums-000", None)
        .iter()
        .map(|l| u64_field(l, "offset"))
        .collect();
    offsets.dedup();
    assert!(offsets.len() >= 2, "too few frames in sums-000: {offsets:?}");
    let (frame, next) = (offsets[0], offsets[1]);
    let inside = (frame + 8).to_string();
    let out = cli(&["journal", "read", "--data", d, "sums-000", "--from", &inside]);
    out.expect_code(2, "journal read --from inside a frame");
    let named = format!("inside the frame at offsets {frame}..{next}");
    assert!(
        out.stderr.contains(&named),
        "stderr lacks {named:?}:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("corrupt"), "called damage:\n{}", out.stderr);
    for from in [frame, next] {
        cli(&[
            "journal",
            "read",
            "--data",
            d,
            "sums-000",
            "--from",
            &from.to_string(),
        ])
        .expect_code(0, &format!("journal read --from {from}"));
    }
    // Past the end is a bad command line too (it exited 3, as damage).
    let end = journal_end(&journal_ls(&t.data), "sums-000");
    let past = (end + 8).to_string();
    let out = cli(&["journal", "read", "--data", d, "sums-000", "--from", &past]);
    out.expect_code(2, "journal read --from past the end");
    assert!(
        out.stderr.contains(&format!("past the journal's end ({end})")),
        "{}",
        out.stderr
    );
}

/// A journal directory with no fragment yet (a starting `run` made it, or a hand did) is listed
/// as an empty journal with no fragment: before, `journal ls` listed a `00000000000000000000.frag`
/// that does not exist. And a stdout that cannot take the output is named as such: "No space
/// left on device" alone read as the data directory's disk being full.
#[test]
fn journal_ls_lists_no_file_for_an_empty_journal_and_names_stdout_when_it_fails() {
    let t = temp_data();
    small_run(&t.data, "500ms");
    std::fs::create_dir(t.data.join("journals").join("extra")).unwrap();
    let ls = journal_ls(&t.data);
    let extra = ls["journals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "extra")
        .unwrap_or_else(|| panic!("no journal \"extra\" in {ls}"));
    assert_eq!(extra["fragments"], serde_json::json!([]), "{ls}");
    for fragment in ls["journals"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["fragments"].as_array().unwrap())
    {
        let path = fragment["path"].as_str().unwrap();
        assert!(
            std::path::Path::new(path).is_file(),
            "listed {path}, which is not a file"
        );
    }
    let d = t.data.to_str().unwrap();
    for args in [
        vec!["journal", "ls", "--data", d],
        vec!["journal", "read", "--data", d, "runs"],
    ] {
        let out = finish(spawn_with_stdout(&args, dev_full()), COMMAND_DEADLINE);
        out.expect_code(3, &format!("{} > /dev/full", args.join(" ")));
        assert!(
            out.stderr.contains("could not write the output to stdout"),
            "{}",
            out.stderr
        );
    }
}

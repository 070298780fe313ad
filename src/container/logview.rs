//! Reading a run's log the way [`super::logs`] keeps it: the head, a
//! marker line, the tail, in order, whether the run is over or not.
//!
//! A run that is over has everything in its log file, and its
//! `status.json` says where the tail begins ([`LogStats::tail_bytes`]).
//! While it runs (or when its shim died), the head is the first
//! `log_max_bytes` of the log file and the tail is in the segment files
//! beside it; their numbers place them in the stream, so the view is
//! exact without the shim's help.
//!
//! Positions are counted in bytes of the job's *stream*, so a reader can
//! follow a run across views ([`LogCursor`]): from the live head into the
//! live tail, and from there into the log file once the run ended.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::launch::read_status;
use super::logs::{segment_path, LogLimits};
use super::rundir::RunDir;
use super::status::LogStats;
use crate::vocab::Bytes;

/// One of a run's two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn log(self, run: &RunDir) -> PathBuf {
        match self {
            Stream::Stdout => run.stdout_log(),
            Stream::Stderr => run.stderr_log(),
        }
    }
}

/// A stretch of a file.
struct Piece {
    file: File,
    offset: u64,
    len: u64,
}

/// What a log holds right now.
pub struct LogView {
    /// The stream's first `head.len` bytes.
    head: Option<Piece>,
    /// Printed between head and tail when something was dropped.
    marker: Vec<u8>,
    /// The stream position of the tail's first byte.
    tail_start: u64,
    tail: Vec<Piece>,
}

/// The two numbers of `config.json` a reader needs; the rest is not read.
#[derive(Deserialize)]
struct Limits {
    log_max_bytes: u64,
    #[serde(default)]
    log_tail_bytes: u64,
}

fn limits(run: &RunDir) -> Option<LogLimits> {
    let text = std::fs::read(run.config()).ok()?;
    let limits: Limits = serde_json::from_slice(&text).ok()?;
    Some(LogLimits { head: limits.log_max_bytes, tail: limits.log_tail_bytes })
}

fn open(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The marker shown while a run goes on: the count so far, no lines (the
/// shim counts them, and says so at the end).
pub fn live_marker(dropped: u64, limits: LogLimits) -> String {
    format!(
        "--- corral: {dropped} bytes dropped here so far \
         (log_max_bytes {}, log_tail_bytes {}) ---\n",
        Bytes(limits.head),
        Bytes(limits.tail)
    )
}

/// The marker of a follower that fell behind the rolling tail.
pub fn skipped_marker(skipped: u64) -> String {
    format!("--- corral: {skipped} bytes went by here faster than they could be followed ---\n")
}

/// The longest marker read from a log file: far longer than any marker.
const MARKER_LIMIT: u64 = 4096;

impl LogView {
    /// Reads the view of `stream` of the run in `run`. A log that does not
    /// exist (yet) is empty.
    pub fn read(run: &RunDir, stream: Stream) -> io::Result<LogView> {
        let stats = |s: &super::RunStatus| match stream {
            Stream::Stdout => s.stdout,
            Stream::Stderr => s.stderr,
        };
        if let Some(status) = read_status(run.root()).ok().flatten() {
            return LogView::finished(&stream.log(run), stats(&status));
        }
        let view = LogView::live(run, stream)?;
        if view.tail.is_empty() {
            // The run may have ended, and its segments gone, since the
            // status was looked for.
            if let Some(status) = read_status(run.root()).ok().flatten() {
                return LogView::finished(&stream.log(run), stats(&status));
            }
        }
        Ok(view)
    }

    fn empty() -> LogView {
        LogView { head: None, marker: Vec::new(), tail_start: 0, tail: Vec::new() }
    }

    /// A run that is over: head, marker and tail are all in the file.
    fn finished(path: &Path, stats: LogStats) -> io::Result<LogView> {
        let Some(mut file) = open(path)? else { return Ok(LogView::empty()) };
        let len = file.metadata()?.len();
        let head = stats.kept_bytes.saturating_sub(stats.tail_bytes).min(len);
        let tail = stats.tail_bytes.min(len - head);
        let mut marker = Vec::new();
        file.seek(SeekFrom::Start(head))?;
        (&mut file).take((len - tail - head).min(MARKER_LIMIT)).read_to_end(&mut marker)?;
        let tail_file = file.try_clone()?;
        Ok(LogView {
            head: Some(Piece { file, offset: 0, len: head }),
            marker,
            tail_start: head + stats.dropped_bytes,
            tail: vec![Piece { file: tail_file, offset: len - tail, len: tail }],
        })
    }

    /// A run still going (or whose shim died): the head file up to
    /// `log_max_bytes`, and the last two tail segments.
    fn live(run: &RunDir, stream: Stream) -> io::Result<LogView> {
        let path = stream.log(run);
        let Some(file) = open(&path)? else { return Ok(LogView::empty()) };
        let limits = limits(run);
        let len = file.metadata()?.len();
        let head = limits.map_or(len, |l| len.min(l.head));
        let mut view = LogView {
            head: Some(Piece { file, offset: 0, len: head }),
            marker: Vec::new(),
            tail_start: head,
            tail: Vec::new(),
        };
        let Some(limits) = limits.filter(|l| l.tail > 0) else { return Ok(view) };
        // The shim may remove a segment between the listing and the open
        // (it moved on to the next one): list again.
        for _ in 0..10 {
            let Some((first, segments)) = open_segments(&path)? else { continue };
            if segments.is_empty() {
                break;
            }
            view.tail_start = limits.head + first * limits.tail;
            view.tail = segments
                .into_iter()
                .map(|file| {
                    let len = file.metadata().map_or(0, |m| m.len()).min(limits.tail);
                    Piece { file, offset: 0, len }
                })
                .collect();
            let dropped = view.tail_start.saturating_sub(limits.head);
            if dropped > 0 {
                view.marker = live_marker(dropped, limits).into_bytes();
            }
            break;
        }
        Ok(view)
    }
}

/// The numbers of the segments of the log at `path`, from its directory.
fn segment_numbers(path: &Path) -> io::Result<Vec<u64>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}.tail.", name.to_string_lossy());
    let mut numbers = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(numbers),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let n =
            name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok());
        numbers.extend(n);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The last two segments, opened, and the number of the first; `Ok(None)`
/// when one of them went away meanwhile, `Ok(Some((0, [])))` when there is
/// none.
fn open_segments(path: &Path) -> io::Result<Option<(u64, Vec<File>)>> {
    let numbers = segment_numbers(path)?;
    let Some(&last) = numbers.last() else { return Ok(Some((0, Vec::new()))) };
    // Only consecutive segments make a tail without a hole.
    let first = match numbers.len() {
        1 => last,
        n if numbers[n - 2] + 1 == last => last - 1,
        _ => last,
    };
    let mut files = Vec::new();
    for n in first..=last {
        match open(&segment_path(path, n))? {
            Some(file) => files.push(file),
            None => return Ok(None),
        }
    }
    Ok(Some((first, files)))
}

/// Where a reader is in a stream: how much of it was printed.
#[derive(Debug, Default)]
pub struct LogCursor {
    pos: u64,
    /// The last byte printed, to put markers on their own line.
    last: Option<u8>,
}

impl LogCursor {
    /// Prints what `view` holds past the cursor and moves it on.
    pub fn copy(&mut self, view: &LogView, out: &mut impl Write) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        if let Some(head) = &view.head {
            if self.pos < head.len {
                let n = self.copy_piece(head, self.pos, out, &mut buf)?;
                self.pos += n;
                if self.pos < head.len {
                    // The file ended early (a failed write): try later.
                    return out.flush();
                }
            }
        }
        if self.pos < view.tail_start {
            let head_len = view.head.as_ref().map_or(0, |h| h.len);
            let marker = if self.pos == head_len {
                view.marker.clone()
            } else {
                skipped_marker(view.tail_start - self.pos).into_bytes()
            };
            if !marker.starts_with(b"\n") && self.last.is_some_and(|b| b != b'\n') {
                out.write_all(b"\n")?;
            }
            out.write_all(&marker)?;
            if let Some(&b) = marker.last() {
                self.last = Some(b);
            }
            self.pos = view.tail_start;
        }
        let mut start = view.tail_start;
        for piece in &view.tail {
            let end = start + piece.len;
            if self.pos < end && self.pos >= start {
                let n = self.copy_piece(piece, self.pos - start, out, &mut buf)?;
                self.pos += n;
                if self.pos < end {
                    break;
                }
            }
            start = end;
        }
        out.flush()
    }

    /// Copies `piece` from `from` on; returns how many bytes it copied.
    fn copy_piece(
        &mut self,
        piece: &Piece,
        from: u64,
        out: &mut impl Write,
        buf: &mut [u8],
    ) -> io::Result<u64> {
        let mut file = &piece.file;
        file.seek(SeekFrom::Start(piece.offset + from))?;
        let mut rest = file.take(piece.len - from);
        let mut copied = 0;
        loop {
            let n = rest.read(buf)?;
            if n == 0 {
                return Ok(copied);
            }
            out.write_all(&buf[..n])?;
            self.last = Some(buf[n - 1]);
            copied += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use proptest::prelude::*;

    use super::*;
    use crate::container::logs::CappedLog;
    use crate::container::status::{ExitSource, JobExit, RunStatus};
    use crate::container::ProcessIdentity;

    /// A run directory with a config that has these limits, and a writer
    /// on its stdout log.
    fn run(head: u64, tail: u64) -> (tempfile::TempDir, RunDir, CappedLog<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let config =
            format!(r#"{{"job": "j", "log_max_bytes": {head}, "log_tail_bytes": {tail}}}"#);
        std::fs::write(run.config(), config).unwrap();
        let path = run.stdout_log();
        let log = CappedLog::new(
            path.clone(),
            File::create(&path).unwrap(),
            None,
            LogLimits { head, tail },
        );
        (dir, run, log)
    }

    /// What the shim does at the end, up to removing the segments.
    fn end(run: &RunDir, log: &mut CappedLog<Vec<u8>>) -> LogStats {
        let stats = log.finish(&mut [0u8; 64]);
        let status = RunStatus {
            job: "j".into(),
            run: "j-1".into(),
            exit: JobExit::Exited { code: 0 },
            exit_source: ExitSource::Init,
            started_at: SystemTime::UNIX_EPOCH,
            finished_at: SystemTime::UNIX_EPOCH,
            init: ProcessIdentity { pid: 1, start_time: 1 },
            stdout: stats,
            stderr: LogStats::default(),
        };
        std::fs::write(run.status(), serde_json::to_vec(&status).unwrap()).unwrap();
        stats
    }

    fn printed(run: &RunDir, cursor: &mut LogCursor) -> Vec<u8> {
        let mut out = Vec::new();
        cursor.copy(&LogView::read(run, Stream::Stdout).unwrap(), &mut out).unwrap();
        out
    }

    fn once(run: &RunDir) -> Vec<u8> {
        printed(run, &mut LogCursor::default())
    }

    #[test]
    fn a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(once(&RunDir::new(dir.path())), b"");
    }

    #[test]
    fn a_running_log_shows_the_head_the_count_so_far_and_the_segments() {
        let (_dir, run, mut log) = run(4, 3);
        log.write(b"head");
        assert_eq!(once(&run), b"head");
        // Segments 0 and 1: nothing dropped yet.
        log.write(b"abcde");
        assert_eq!(once(&run), b"headabcde");
        // Segment 0 is gone; 1 and 2 hold "def" and "gh".
        log.write(b"fgh");
        let limits = LogLimits { head: 4, tail: 3 };
        let marker = live_marker(3, limits);
        let expected = [b"head\n".as_slice(), marker.as_bytes(), b"defgh"];
        assert_eq!(once(&run), expected.concat());
        // At the end, the log file as the shim assembled it, which has the
        // exact count; also once the segments are gone.
        end(&run, &mut log);
        let file = std::fs::read(run.stdout_log()).unwrap();
        assert_eq!(once(&run), file);
        log.remove_segments();
        assert_eq!(once(&run), file);
        assert!(file.ends_with(b"---\nfgh"), "{}", String::from_utf8_lossy(&file));
    }

    #[test]
    fn a_follower_that_falls_behind_the_tail_says_what_it_missed() {
        let (_dir, run, mut log) = run(2, 2);
        let mut cursor = LogCursor::default();
        log.write(b"hh");
        log.write(b"ab");
        assert_eq!(printed(&run, &mut cursor), b"hhab");
        // 7 more bytes: the tail keeps "ghi" of them, in segments 3 and 4.
        log.write(b"cdefghi");
        let expected = [b"\n".as_slice(), skipped_marker(4).as_bytes(), b"ghi"].concat();
        assert_eq!(printed(&run, &mut cursor), expected);
        end(&run, &mut log);
        log.remove_segments();
        // Nothing new at the end: the follower had the tail already.
        assert_eq!(printed(&run, &mut cursor), b"");
    }

    #[test]
    fn a_log_written_before_tails_is_printed_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let old_marker = "\n[corral: log limit of 5 bytes reached; further output is dropped]\n";
        std::fs::write(run.stdout_log(), format!("abcde{old_marker}")).unwrap();
        // A status of that time: no tail_bytes or dropped_lines.
        let status = r#"{"job":"j","run":"j-1","exit":{"exited":{"code":0}},"exit_source":"init",
            "started_at":{"secs_since_epoch":0,"nanos_since_epoch":0},
            "finished_at":{"secs_since_epoch":0,"nanos_since_epoch":0},
            "init":{"pid":1,"start_time":1},
            "stdout":{"kept_bytes":5,"dropped_bytes":99},
            "stderr":{"kept_bytes":0,"dropped_bytes":0}}"#;
        std::fs::write(run.status(), status).unwrap();
        assert_eq!(String::from_utf8(once(&run)).unwrap(), format!("abcde{old_marker}"));
    }

    fn sizes() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..30, 0..30)
    }

    /// The stream the sizes make: numbered lines, so that a misplaced
    /// byte shows.
    fn stream(total: usize) -> Vec<u8> {
        (0..).flat_map(|i| format!("{i}\n").into_bytes()).take(total).collect()
    }

    fn chunked<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
        let mut rest = input;
        sizes
            .iter()
            .map(|&n| {
                let (chunk, after) = rest.split_at(n.min(rest.len()));
                rest = after;
                chunk
            })
            .collect()
    }

    proptest! {
        #[test]
        fn a_follower_that_keeps_up_sees_the_whole_stream(
            sizes in sizes(), head in 1u64..40, tail in 30u64..60,
        ) {
            // Chunks of at most the tail: a read after each one keeps up.
            let input = stream(sizes.iter().sum());
            let (_dir, run, mut log) = run(head, tail);
            let mut cursor = LogCursor::default();
            let mut seen = Vec::new();
            for chunk in chunked(&input, &sizes) {
                log.write(chunk);
                seen.extend(printed(&run, &mut cursor));
            }
            end(&run, &mut log);
            seen.extend(printed(&run, &mut cursor));
            log.remove_segments();
            seen.extend(printed(&run, &mut cursor));
            prop_assert_eq!(seen, input);
        }

        #[test]
        fn a_reader_sees_the_head_and_the_latest_tail_at_any_time(
            sizes in sizes(), head in 1u64..40, tail in 1u64..40,
        ) {
            let input = stream(sizes.iter().sum());
            let (_dir, run, mut log) = run(head, tail);
            let mut written = 0;
            for chunk in chunked(&input, &sizes) {
                log.write(chunk);
                written += chunk.len();
                let shown = once(&run);
                let so_far = &input[..written];
                let h = so_far.len().min(head as usize);
                prop_assert!(shown.starts_with(&so_far[..h]));
                let t = (so_far.len() - h).min(tail as usize);
                prop_assert!(shown.ends_with(&so_far[so_far.len() - t..]));
                prop_assert!(shown.len() <= so_far.len().max(h + 2 * tail as usize + 200));
            }
            end(&run, &mut log);
            let file = std::fs::read(run.stdout_log()).unwrap();
            prop_assert_eq!(once(&run), file.clone());
            log.remove_segments();
            prop_assert_eq!(once(&run), file);
        }
    }
}

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

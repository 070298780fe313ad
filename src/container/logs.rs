//! Size-capped job logs that keep the beginning and the end.
//!
//! The shim reads the job's stdout and stderr from pipes and writes each to
//! its log file. A log keeps the *head*, the first `log_max_bytes` bytes of
//! its stream, and a rolling *tail*, the last `log_tail_bytes`; what came
//! between them is read (so the job never blocks on a full pipe) but only
//! counted. When the run ends, the shim appends to the log one marker line
//! saying how much was dropped, then the tail:
//!
//! ```text
//! <the first log_max_bytes of the stream>
//! --- corral: 123456789 bytes (4567 lines) dropped here (log_max_bytes 16Mi, log_tail_bytes 1Mi) ---
//! <the last log_tail_bytes of the stream>
//! ```
//!
//! and records the counts in `status.json` ([`LogStats`]).
//!
//! # The tail on disk
//!
//! The shim stays resident for the whole run, so the tail is not buffered
//! in its memory: it goes to *segment files* beside the log,
//! `stdout.log.tail.0`, `stdout.log.tail.1`, ..., each `log_tail_bytes`
//! long. When one is full the next is started and the one before the
//! previous is removed, so at most two exist and together they hold at
//! least the last `log_tail_bytes` of the stream. Segment `k` always holds
//! the stream's bytes from `log_max_bytes + k * log_tail_bytes` on, which
//! lets a reader ([`super::logview`]) place what it finds without asking
//! the shim, also after the shim died: the head file is never written past
//! `log_max_bytes` while the run is going, and the segments are complete
//! up to the last write. Nothing is rewritten in place, so a reader never
//! sees bytes change under it.
//!
//! At the end the marker and the tail are appended to the log, the log is
//! fsynced, `status.json` is written and only then are the segments
//! removed ([`CappedLog::remove_segments`]): at every moment either the
//! segments or the status say how to read the log.
//!
//! The tail starts at a character boundary when the stream is UTF-8: at
//! most three leading continuation bytes are dropped with the rest.
//!
//! A failed write to the log file or a segment (disk full) also counts as
//! dropped: the job is never stalled or killed because of its logs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::status::LogStats;
use crate::vocab::Bytes;

/// How much of a stream a log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The head: the first this many bytes.
    pub head: u64,
    /// The tail: the last this many bytes; 0 keeps no tail.
    pub tail: u64,
}

/// How many of `len` new bytes fit when `kept` of `cap` are used.
pub fn admit(kept: u64, cap: u64, len: usize) -> usize {
    let room = cap.saturating_sub(kept);
    usize::try_from(room).map_or(len, |room| room.min(len))
}

/// The `n`th tail segment of the log at `log`: `stdout.log.tail.N`.
pub fn segment_path(log: &Path, n: u64) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".tail.{n}"));
    PathBuf::from(name)
}

/// The line written where the head ends and, if there is one, the tail
/// begins. `lines` counts the newlines among the dropped bytes.
pub fn marker(dropped: u64, lines: u64, limits: LogLimits) -> String {
    format!(
        "--- corral: {dropped} bytes ({lines} lines) dropped here \
         (log_max_bytes {}, log_tail_bytes {}) ---\n",
        Bytes(limits.head),
        Bytes(limits.tail)
    )
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The segment being written.
struct Segment {
    n: u64,
    /// `None` when it could not be created: its bytes are counted as lost.
    file: Option<File>,
    /// Bytes of the stream that belong to it, written or lost.
    len: u64,
}

/// One output stream: a log file with a head and a rolling tail, plus an
/// optional copy to a terminal or pipe, given up on for good at its first
/// failed write.
pub struct CappedLog<T: Write> {
    path: PathBuf,
    file: File,
    tee: Option<T>,
    limits: LogLimits,
    /// Bytes in the head.
    head: u64,
    /// Whether the head is empty or ends with a newline.
    head_ends_line: bool,
    /// Bytes of the stream after the head, and the newlines among them.
    after_head: u64,
    after_head_lines: u64,
    /// Bytes that a failed write lost.
    lost: u64,
    segment: Option<Segment>,
    stats: Option<LogStats>,
}

impl<T: Write> CappedLog<T> {
    /// `file` is the open log at `path`; segments are made beside it.
    pub fn new(path: PathBuf, file: File, tee: Option<T>, limits: LogLimits) -> Self {
        CappedLog {
            path,
            file,
            tee,
            limits,
            head: 0,
            head_ends_line: true,
            after_head: 0,
            after_head_lines: 0,
            lost: 0,
            segment: None,
            stats: None,
        }
    }

    pub fn write(&mut self, chunk: &[u8]) {
        let keep = admit(self.head, self.limits.head, chunk.len());
        if keep > 0 {
            match self.file.write_all(&chunk[..keep]) {
                Ok(()) => {
                    self.head += keep as u64;
                    self.head_ends_line = chunk[keep - 1] == b'\n';
                }
                Err(_) => self.lost += keep as u64,
            }
        }
        let rest = &chunk[keep..];
        if !rest.is_empty() {
            self.after_head += rest.len() as u64;
            self.after_head_lines += newlines(rest);
            if self.limits.tail > 0 {
                self.write_tail(rest);
            }
        }
        if let Some(tee) = &mut self.tee {
            // The copy is for a person watching; a closed terminal (EPIPE)
            // must not affect the job or its logs.
            if tee.write_all(chunk).and_then(|()| tee.flush()).is_err() {
                self.tee = None;
            }
        }
    }

    fn write_tail(&mut self, mut data: &[u8]) {
        let size = self.limits.tail;
        while !data.is_empty() {
            let segment = match self.segment.take() {
                Some(segment) if segment.len < size => segment,
                full => self.next_segment(full.map(|s| s.n + 1).unwrap_or(0)),
            };
            let segment = self.segment.insert(segment);
            let n = admit(segment.len, size, data.len());
            let written = segment.file.as_mut().is_some_and(|f| f.write_all(&data[..n]).is_ok());
            if !written {
                // The segment still stands for these bytes, so that the
                // ones after keep their place; a reader finds it short.
                segment.file = None;
                self.lost += n as u64;
            }
            segment.len += n as u64;
            data = &data[n..];
        }
    }

    /// Starts segment `n`, removing `n - 2`: the two left, `n - 1` full and
    /// `n`, hold the last `log_tail_bytes` whatever `n`'s length.
    fn next_segment(&mut self, n: u64) -> Segment {
        if let Some(old) = n.checked_sub(2) {
            let _ = std::fs::remove_file(segment_path(&self.path, old));
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(segment_path(&self.path, n))
            .ok();
        Segment { n, file, len: 0 }
    }

    /// Once the stream is over: appends the marker and the tail to the log
    /// and fsyncs it (when anything was dropped), and returns the final
    /// counts. `buf` is scratch space for the copy. The segments stay until
    /// [`remove_segments`](Self::remove_segments).
    pub fn finish(&mut self, buf: &mut [u8]) -> LogStats {
        if let Some(stats) = self.stats {
            return stats;
        }
        let stats = if self.after_head == 0 {
            LogStats { kept_bytes: self.head, dropped_bytes: self.lost, ..LogStats::default() }
        } else {
            match self.append_tail(buf) {
                Ok(stats) => stats,
                Err(_) => {
                    // Disk full, most likely: keep the head alone, which is
                    // valid, and count everything after it as dropped.
                    let _ = self.file.set_len(self.head);
                    LogStats {
                        kept_bytes: self.head,
                        dropped_bytes: self.lost + self.after_head,
                        ..LogStats::default()
                    }
                }
            }
        };
        self.stats = Some(stats);
        stats
    }

    fn append_tail(&mut self, buf: &mut [u8]) -> std::io::Result<LogStats> {
        let pieces = self.tail_pieces();
        // First pass: what the tail holds, so that the marker, which comes
        // before it, can say what was dropped; then the copy.
        // Only a tail cut out of the stream can begin inside a character;
        // one that follows the head directly is kept whole.
        let cut = self.after_head > self.limits.tail;
        // Continuation bytes that may still be skipped: a character has at
        // most three, and the first piece can be shorter than that.
        let mut skippable = if cut { 3 } else { 0 };
        let mut skip = 0u64;
        let mut tail = 0u64;
        let mut tail_lines = 0u64;
        for_each_chunk(&pieces, buf, |mut chunk| {
            while skippable > 0 {
                match chunk.first() {
                    Some(b) if b & 0xC0 == 0x80 => {
                        chunk = &chunk[1..];
                        skip += 1;
                        skippable -= 1;
                    }
                    Some(_) => skippable = 0,
                    None => break,
                }
            }
            tail += chunk.len() as u64;
            tail_lines += newlines(chunk);
            Ok(())
        })?;
        let dropped = self.after_head - tail;
        let dropped_lines = self.after_head_lines - tail_lines;
        if dropped > 0 {
            let mut text = String::new();
            if !self.head_ends_line {
                text.push('\n');
            }
            text.push_str(&marker(dropped, dropped_lines, self.limits));
            self.file.write_all(text.as_bytes())?;
        }
        let mut to_skip = skip;
        let file = &mut self.file;
        for_each_chunk(&pieces, buf, |chunk| {
            let s = usize::try_from(to_skip).unwrap_or(usize::MAX).min(chunk.len());
            to_skip -= s as u64;
            file.write_all(&chunk[s..])
        })?;
        // The segments go once the status is written; the tail must be on
        // disk before then.
        self.file.sync_data()?;
        Ok(LogStats {
            kept_bytes: self.head + tail,
            dropped_bytes: self.lost + dropped,
            tail_bytes: tail,
            dropped_lines,
        })
    }

    /// Where the last `log_tail_bytes` of the stream are: (segment, offset
    /// in it, length), oldest first. Segment k holds the stream's bytes
    /// after the head from `k * size` to `(k + 1) * size`.
    fn tail_pieces(&self) -> Vec<(PathBuf, u64, u64)> {
        let size = self.limits.tail;
        let start = self.after_head - size.min(self.after_head);
        let Some(last) = self.segment.as_ref().map(|s| s.n) else { return Vec::new() };
        [last.checked_sub(1), Some(last)]
            .into_iter()
            .flatten()
            .filter_map(|n| {
                let (from, to) = (n * size, ((n + 1) * size).min(self.after_head));
                let offset = start.saturating_sub(from);
                (to > start).then(|| (segment_path(&self.path, n), offset, to - from - offset))
            })
            .collect()
    }

    /// Removes the tail's segment files: call once the counts
    /// [`finish`](Self::finish) returned are recorded, since until then
    /// the segments are how a reader finds the tail.
    pub fn remove_segments(&mut self) {
        if let Some(last) = self.segment.take().map(|s| s.n) {
            for n in [last.checked_sub(1), Some(last)].into_iter().flatten() {
                let _ = std::fs::remove_file(segment_path(&self.path, n));
            }
        }
    }

    pub fn is_teeing(&self) -> bool {
        self.tee.is_some()
    }
}

/// Reads each piece (path, offset, length) through `buf`. A segment that
/// cannot be opened or is shorter than its length (a failed write) gives
/// what it has: the rest of the tail is still worth having.
fn for_each_chunk(
    pieces: &[(PathBuf, u64, u64)],
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for (path, offset, len) in pieces {
        let Ok(mut file) = File::open(path) else { continue };
        file.seek(SeekFrom::Start(*offset))?;
        let mut piece = file.take(*len);
        loop {
            let n = piece.read(buf)?;
            if n == 0 {
                break;
            }
            each(&buf[..n])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;

    use proptest::prelude::*;

    use super::*;

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::EPIPE))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// How many bytes at the start of `bytes` continue a UTF-8 character
    /// begun before it (at most three, the most a character has).
    fn continuation_prefix(bytes: &[u8]) -> usize {
        bytes.iter().take(3).take_while(|&&b| b & 0xC0 == 0x80).count()
    }

    fn limits(head: u64, tail: u64) -> LogLimits {
        LogLimits { head, tail }
    }

    /// A log in a fresh directory.
    fn log<T: Write>(dir: &Path, tee: Option<T>, limits: LogLimits) -> CappedLog<T> {
        let path = dir.join("stdout.log");
        CappedLog::new(path.clone(), File::create(&path).unwrap(), tee, limits)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Writes `chunks`, finishes and returns the log file and the counts.
    fn written(limits: LogLimits, chunks: &[&[u8]]) -> (Vec<u8>, LogStats) {
        let dir = tempfile::tempdir().unwrap();
        let mut log: CappedLog<Vec<u8>> = log(dir.path(), None, limits);
        for chunk in chunks {
            log.write(chunk);
        }
        let stats = log.finish(&mut [0u8; 7]);
        log.remove_segments();
        assert_eq!(files(dir.path()), ["stdout.log"], "segments are removed");
        (std::fs::read(dir.path().join("stdout.log")).unwrap(), stats)
    }

    /// What a log of `input` must hold: all of it when it fits in head and
    /// tail, else the head, the marker on its own line, and the last
    /// `tail` bytes less a partial character at their start.
    fn expected(input: &[u8], limits: LogLimits) -> Vec<u8> {
        let (h, t) = (limits.head as usize, limits.tail as usize);
        if input.len() <= h + t {
            return input.to_vec();
        }
        let mut tail = &input[input.len() - t..];
        tail = &tail[continuation_prefix(tail)..];
        let dropped = &input[h..input.len() - tail.len()];
        let mut out = input[..h].to_vec();
        if out.last().is_some_and(|&b| b != b'\n') {
            out.push(b'\n');
        }
        out.extend(marker(dropped.len() as u64, newlines(dropped), limits).as_bytes());
        out.extend(tail);
        out
    }

    #[test]
    fn admit_never_exceeds_the_cap() {
        assert_eq!(admit(0, 10, 4), 4);
        assert_eq!(admit(8, 10, 4), 2);
        assert_eq!(admit(10, 10, 4), 0);
        assert_eq!(admit(12, 10, 4), 0);
        assert_eq!(admit(0, u64::MAX, usize::MAX), usize::MAX);
    }

    #[test]
    fn the_marker_names_both_limits() {
        assert_eq!(
            marker(123_456_789, 4567, limits(16 << 20, 1 << 20)),
            "--- corral: 123456789 bytes (4567 lines) dropped here \
             (log_max_bytes 16Mi, log_tail_bytes 1Mi) ---\n"
        );
    }

    #[test]
    fn keeps_the_head_and_the_tail_and_counts_what_is_between() {
        let (file, stats) = written(limits(5, 4), &[b"abc\n", b"de\nfgh\nij", b"klmno\n"]);
        // abc\nd | e\nfgh\nijkl (10 bytes, 2 newlines) | mno\n
        let expected = format!("abc\nd\n{}mno\n", marker(10, 2, limits(5, 4)));
        assert_eq!(String::from_utf8(file).unwrap(), expected);
        assert_eq!(
            stats,
            LogStats { kept_bytes: 9, dropped_bytes: 10, tail_bytes: 4, dropped_lines: 2 }
        );
    }

    #[test]
    fn output_that_fits_in_head_and_tail_is_kept_whole_without_a_marker() {
        let (file, stats) = written(limits(5, 4), &[b"abcdefg", b"hi"]);
        assert_eq!(file, b"abcdefghi");
        assert_eq!(stats, LogStats { kept_bytes: 9, tail_bytes: 4, ..LogStats::default() });
        // The head may end inside a character: the byte after it is kept.
        let (file, _) = written(limits(1, 4), &["é".as_bytes()]);
        assert_eq!(file, "é".as_bytes());
    }

    #[test]
    fn without_a_tail_the_marker_ends_the_log() {
        let (file, stats) = written(limits(3, 0), &[b"abcdef\n"]);
        assert_eq!(file, [b"abc\n".as_slice(), marker(4, 1, limits(3, 0)).as_bytes()].concat());
        assert_eq!(
            stats,
            LogStats { kept_bytes: 3, dropped_bytes: 4, tail_bytes: 0, dropped_lines: 1 }
        );
    }

    #[test]
    fn the_tail_does_not_begin_inside_a_character() {
        // "€" is three bytes; a 2-byte tail would start with its last one.
        let input = "ab€c€".as_bytes();
        let (file, stats) = written(limits(2, 4), &[input]);
        assert_eq!(file, expected(input, limits(2, 4)));
        assert!(file.ends_with("c€".as_bytes()));
        assert_eq!(stats.tail_bytes, 4);
        assert_eq!(stats.dropped_bytes, 3);
    }

    #[test]
    fn at_most_two_segments_exist_and_they_hold_the_stream_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut log: CappedLog<Vec<u8>> = log(dir.path(), None, limits(2, 3));
        log.write(b"HH0001112");
        assert_eq!(files(dir.path()), ["stdout.log", "stdout.log.tail.1", "stdout.log.tail.2"]);
        let segment = |n| std::fs::read(segment_path(&dir.path().join("stdout.log"), n)).unwrap();
        assert_eq!(segment(1), b"111");
        assert_eq!(segment(2), b"2");
        // The head file is never written past the head while the run goes.
        assert_eq!(std::fs::read(dir.path().join("stdout.log")).unwrap(), b"HH");
    }

    #[test]
    fn the_segments_stay_until_they_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log: CappedLog<Vec<u8>> = log(dir.path(), None, limits(1, 2));
        log.write(b"abcdefg");
        let stats = log.finish(&mut [0u8; 16]);
        assert_eq!(log.finish(&mut [0u8; 16]), stats, "finishing twice changes nothing");
        assert_eq!(files(dir.path()).len(), 3);
        log.remove_segments();
        assert_eq!(files(dir.path()), ["stdout.log"]);
    }

    #[test]
    fn tee_gets_everything_until_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let mut teed = log(dir.path(), Some(Vec::new()), limits(2, 0));
        teed.write(b"hello");
        assert_eq!(teed.tee.as_deref(), Some(&b"hello"[..]));
        let mut broken: CappedLog<Broken> = log(dir.path(), Some(Broken), limits(100, 0));
        broken.write(b"x");
        assert!(!broken.is_teeing());
        broken.write(b"y");
        broken.finish(&mut [0u8; 16]);
        assert_eq!(std::fs::read(dir.path().join("stdout.log")).unwrap(), b"xy");
    }

    #[test]
    fn failed_file_writes_count_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, "").unwrap();
        // Read-only: every write fails with EBADF, as on a full disk.
        let file = File::open(&path).unwrap();
        let mut log: CappedLog<Vec<u8>> = CappedLog::new(path, file, None, limits(100, 0));
        log.write(b"abc");
        assert_eq!(
            log.finish(&mut [0u8; 16]),
            LogStats { kept_bytes: 0, dropped_bytes: 3, ..LogStats::default() }
        );
    }

    /// Bytes that are mostly ASCII with newlines, and some multi-byte
    /// characters, cut into chunks of random sizes.
    fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let text =
            prop::collection::vec(prop_oneof!["[a-z]{1,5}", Just("\n".into()), "[é€😀]"], 0..80)
                .prop_map(|parts| parts.concat().into_bytes());
        (text, prop::collection::vec(1usize..40, 1..20)).prop_map(|(text, sizes)| {
            let mut rest = text.as_slice();
            let mut chunks = Vec::new();
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, after) = rest.split_at((*size).min(rest.len()));
                chunks.push(chunk.to_vec());
                rest = after;
            }
            chunks
        })
    }

    proptest! {
        #[test]
        fn the_log_is_the_head_the_marker_and_the_tail_of_the_stream(
            chunks in chunks(),
            head in 1u64..60,
            tail in prop_oneof![Just(0u64), 1u64..50],
        ) {
            let limits = limits(head, tail);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let (file, stats) = written(limits, &refs);
            let input = chunks.concat();
            prop_assert_eq!(&file, &expected(&input, limits));
            let len = input.len() as u64;
            prop_assert_eq!(stats.kept_bytes + stats.dropped_bytes, len);
            if len <= head + tail {
                prop_assert_eq!(stats.kept_bytes, len);
            } else {
                // Only a partial character more than the limits is dropped.
                prop_assert!(stats.kept_bytes + 3 >= head + tail);
                prop_assert_eq!(stats.kept_bytes, head + stats.tail_bytes);
            }
        }
    }
}

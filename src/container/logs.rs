//! Size-capped job logs.
//!
//! The shim reads the job's stdout and stderr from pipes and writes each to
//! its log file. A log keeps the *first* `log_max_bytes` bytes of its
//! stream; at the first byte past the cap a single marker line is appended,
//! and everything after is read (so the job never blocks on a full pipe) but
//! only counted, into `dropped_bytes` of `status.json`. Keeping the head
//! rather than rotating means a log never changes under a reader once
//! written, and the count says exactly how much is missing.
//!
//! A failed write to the log file (disk full) also counts as dropped: the
//! job is never stalled or killed because of its logs.

use std::io::Write;

use super::status::LogStats;

/// How many of `len` new bytes fit when `kept` of `cap` are used.
pub fn admit(kept: u64, cap: u64, len: usize) -> usize {
    let room = cap.saturating_sub(kept);
    usize::try_from(room).map_or(len, |room| room.min(len))
}

/// The line written once, where the kept part of a log ends.
pub fn marker(cap: u64) -> String {
    format!(
        "\n[corral: log limit of {cap} bytes reached; further output is dropped and counted in status.json]\n"
    )
}

/// One output stream: a capped log file plus an optional copy to a
/// terminal or pipe, given up on for good at its first failed write.
pub struct CappedLog<F: Write, T: Write> {
    file: F,
    tee: Option<T>,
    cap: u64,
    stats: LogStats,
    marked: bool,
}

impl<F: Write, T: Write> CappedLog<F, T> {
    pub fn new(file: F, tee: Option<T>, cap: u64) -> Self {
        CappedLog { file, tee, cap, stats: LogStats::default(), marked: false }
    }

    pub fn write(&mut self, chunk: &[u8]) {
        let keep = admit(self.stats.kept_bytes, self.cap, chunk.len());
        if keep > 0 {
            match self.file.write_all(&chunk[..keep]) {
                Ok(()) => self.stats.kept_bytes += keep as u64,
                Err(_) => self.stats.dropped_bytes += keep as u64,
            }
        }
        let dropped = chunk.len() - keep;
        if dropped > 0 {
            if !self.marked {
                self.marked = true;
                // Best effort: a marker that does not fit on a full disk
                // changes nothing the status does not already say.
                let _ = self.file.write_all(marker(self.cap).as_bytes());
            }
            self.stats.dropped_bytes += dropped as u64;
        }
        if let Some(tee) = &mut self.tee {
            // The copy is for a person watching; a closed terminal (EPIPE)
            // must not affect the job or its logs.
            if tee.write_all(chunk).and_then(|()| tee.flush()).is_err() {
                self.tee = None;
            }
        }
    }

    pub fn stats(&self) -> LogStats {
        self.stats
    }

    pub fn is_teeing(&self) -> bool {
        self.tee.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::io;

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

    #[test]
    fn admit_never_exceeds_the_cap() {
        assert_eq!(admit(0, 10, 4), 4);
        assert_eq!(admit(8, 10, 4), 2);
        assert_eq!(admit(10, 10, 4), 0);
        assert_eq!(admit(12, 10, 4), 0);
        assert_eq!(admit(0, u64::MAX, usize::MAX), usize::MAX);
    }

    #[test]
    fn keeps_the_head_marks_once_and_counts_the_rest() {
        let mut log: CappedLog<Vec<u8>, Vec<u8>> = CappedLog::new(Vec::new(), None, 5);
        log.write(b"abc");
        log.write(b"defg");
        log.write(b"hij");
        assert_eq!(log.stats(), LogStats { kept_bytes: 5, dropped_bytes: 5 });
        let expected = [b"abcde".as_slice(), marker(5).as_bytes()].concat();
        assert_eq!(log.file, expected);
    }

    #[test]
    fn tee_gets_everything_until_it_breaks() {
        let mut log = CappedLog::new(Vec::new(), Some(Vec::new()), 2);
        log.write(b"hello");
        assert_eq!(log.tee.as_deref(), Some(&b"hello"[..]));
        let mut broken: CappedLog<Vec<u8>, Broken> = CappedLog::new(Vec::new(), Some(Broken), 100);
        broken.write(b"x");
        assert!(!broken.is_teeing());
        broken.write(b"y");
        assert_eq!(broken.file, b"xy");
    }

    #[test]
    fn failed_file_writes_count_as_dropped() {
        let mut log: CappedLog<Broken, Vec<u8>> = CappedLog::new(Broken, None, 100);
        log.write(b"abc");
        assert_eq!(log.stats(), LogStats { kept_bytes: 0, dropped_bytes: 3 });
    }
}

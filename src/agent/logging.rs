//! How the agent's text log writes the fields of an event and its spans.
//!
//! Log lines carry text the agent does not choose: job file names, job names,
//! YAML values quoted in problems, error messages from the kernel. A file named
//! `a.yaml\nINFO job file loaded: evil` would otherwise forge a whole line, and
//! escape sequences in a name would reach the terminal of whoever tails the log.
//! So every field value, the message included, is written with its control
//! characters escaped, whatever code logged it: one log event is one line.
//! (The JSON format escapes them already, as JSON strings must.)

use std::borrow::Cow;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// Whether `c` is escaped: C0 and C1 controls and DEL (which include line
/// breaks and the escape that starts a terminal sequence), and the Unicode
/// bidirectional overrides, which reorder what a reader sees.
fn must_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each character [`must_escape`] picks written as Rust writes
/// it in a literal (`\n`, `\u{1b}`); other text, backslashes included, as is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if must_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The text format's fields, written as the default formatter writes them
/// (`message key=value key=value`) but through [`escape_controls`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let value = escape_controls(value);
        self.result = match field.name() {
            "message" => write!(self.writer, "{separator}{value}"),
            // `log` crate records bridged through tracing carry these; the
            // default formatter leaves them out too.
            name if name.starts_with("log.") => Ok(()),
            name => write!(self.writer, "{separator}{name}={value}"),
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Quoted, as the default formatter does, so that a value with spaces
        // reads as one; `Debug` escapes controls on its own.
        if field.name() == "message" {
            self.write(field, value);
        } else {
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_left_alone() {
        assert_eq!(escape_controls("plain/path é.yaml"), "plain/path é.yaml");
        assert!(matches!(escape_controls("no controls"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a.yaml\nINFO forged\r\t\u{1b}[31mred\u{7f}\u{85}"),
            "a.yaml\\nINFO forged\\r\\t\\u{1b}[31mred\\u{7f}\\u{85}"
        );
        assert_eq!(escape_controls("abc\u{202e}fdp.yaml"), "abc\\u{202e}fdp.yaml");
        assert_eq!(escape_controls(r"C:\dir"), r"C:\dir");
    }

    #[test]
    fn an_event_with_a_hostile_field_is_one_line() {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(EscapedFields)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        let path = std::path::PathBuf::from("/j/a.yaml\nERROR forged line \u{1b}[2J");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("run", job = %"job\nname");
            let _in = span.enter();
            tracing::info!(file = %path.display(), text = "quoted\nstr", "loaded:\n  {}", "x");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.ends_with(
                "run{job=job\\nname}: corral::agent::logging::tests: loaded:\\n  x \
                 file=/j/a.yaml\\nERROR forged line \\u{1b}[2J text=\"quoted\\nstr\"\n"
            ),
            "{text}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

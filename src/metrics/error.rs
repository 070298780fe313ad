//! Errors of the metrics module.

use super::format::Format;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Encoding writes into a `String`, which cannot fail; a collector that
    /// gave up mid-way is the only way here.
    #[error("encoding the metrics as {format:?} failed")]
    Encode { format: Format },
}

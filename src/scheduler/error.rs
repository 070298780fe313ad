//! Why the state machine refused an event.

/// An event that cannot happen in the run's current phase: the shell's view
/// of the run and the run's record disagree, which is a bug to log, not a
/// state to enter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not possible while the run is {phase}: {why}")]
pub struct InvalidTransition {
    pub phase: &'static str,
    pub event: &'static str,
    pub why: String,
}

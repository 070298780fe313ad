//! Durable run records.

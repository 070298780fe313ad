//! Placement allocator.

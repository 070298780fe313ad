//! Job spec compiler.
pub mod check;
pub mod duration;
pub mod error;
pub mod name;
pub mod quantity;
pub mod source;
pub mod tree;

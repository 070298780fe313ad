//! Job spec compiler.

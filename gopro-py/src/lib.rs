//! The Python binding of gopro.

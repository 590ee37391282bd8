//! The C ABI of gopro.

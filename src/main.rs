//! Switchboard binary.
fn main() {}

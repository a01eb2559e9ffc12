//! Summer benches (work in progress): see issue 4.

fn main() {}

//! The side-by-side benchmarks of this workspace against the crates people use today; the
//! code is in `benches/` (`cargo bench -p benches --bench propagation | layers | wire`).

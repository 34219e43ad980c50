//! # kiln-core
//!
//! The glue every other Kiln crate stands on:
//!
//! - [`device`]: choose a burn [`Device`](burn::tensor::Device) from a string (`cpu`/`flex`,
//!   `ndarray`, `wgpu`, `wgpu:1`), with a clear error listing what this build offers.
//! - [`seed`]: one call that seeds everything Kiln controls (backend RNG, parameter
//!   initialisation, dropout, shuffling, splits, augmentation) and hands out named,
//!   independent RNG streams derived from that one seed.
//! - [`summary`]: the model-summary machinery (per-layer output shape, parameters, trainable
//!   flag, mult-adds, totals) printable as fixed-width text or JSON.
//! - [`allocator`]: glibc allocator tuning that makes the CPU backends' per-step buffers
//!   cheap (1.3-1.6x faster training steps).
//! - [`Error`]: this crate's error type.
//!
//! kiln-core knows nothing about datasets, models, training or the CLI.

pub mod allocator;
pub mod device;
mod error;
pub mod machine;
pub mod parallel;
pub mod seed;
pub mod summary;

pub use device::{DeviceSpec, available_devices, parse_device};
pub use error::{Error, Result};
pub use seed::Seed;
pub use summary::{LayerRow, ModelSummary, SummaryBuilder};

/// Re-export of burn so downstream crates and users use the exact same version.
pub use burn;

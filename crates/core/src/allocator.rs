//! Allocator tuning for the CPU backends.
//!
//! burn's CPU backends allocate a fresh buffer for nearly every tensor a step produces and free
//! it soon after. With glibc's defaults, buffers above the (dynamic) mmap threshold are mapped
//! and unmapped every time, and freed heap memory is trimmed back to the kernel, so each step
//! pays page faults and kernel page zeroing for memory it had a moment ago: about a third of a
//! ViT-lite training step on this project's 2-core benchmark machine. [`tune`] raises both
//! thresholds (mmap at 32 MiB, glibc's largest; trim at 512 MiB) so the buffers are reused
//! from the heap. Measured with `cargo xtask bench` (ViT-lite training step, batch 64): 1.3-1.6x
//! more samples/s, the same peak RSS.
//!
//! It changes process-wide allocator settings, so only a program that owns its process calls
//! it: the `kiln` binary, `xtask-heavy` (behind `cargo xtask`), the benchmarks and the
//! examples. Library functions (`kiln_train::fit` and every run built on it) never do: a
//! program embedding Kiln keeps its allocator as it set it, and calls `tune()` itself for the
//! speed-up. Setting `KILN_MALLOC_TUNING=0`
//! turns it off. It does nothing off Linux/glibc.

use std::sync::OnceLock;

/// The mmap threshold set by [`tune`]: allocations below it come from the reusable heap.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// The trim threshold set by [`tune`]: free heap memory kept before returning it to the kernel.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Applies the tuning once per process (later calls do nothing); returns whether it is on.
pub fn tune() -> bool {
    static APPLIED: OnceLock<bool> = OnceLock::new();
    *APPLIED.get_or_init(|| std::env::var("KILN_MALLOC_TUNING").as_deref() != Ok("0") && apply())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only adjusts glibc's allocator parameters; both values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn tuning_applies_once_on_glibc() {
        let first = super::tune();
        assert_eq!(super::tune(), first);
        if cfg!(all(target_os = "linux", target_env = "gnu"))
            && std::env::var("KILN_MALLOC_TUNING").as_deref() != Ok("0")
        {
            assert!(first, "glibc accepted neither threshold");
        }
    }
}

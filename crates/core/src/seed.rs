//! Reproducibility: one seed for everything Kiln controls.
//!
//! [`Seed::apply`] seeds the backend RNG of a device (parameter initialisation, dropout,
//! `Tensor::random`). Every other random choice Kiln makes (shuffling, splits, augmentation)
//! draws from a named stream, [`Seed::rng`], derived deterministically from the same seed, so
//! adding a new consumer of randomness never changes the numbers another one sees.

use std::sync::{Mutex, MutexGuard};

use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;

static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// Exclusive use of the backend RNG within this process.
///
/// burn's CPU backends keep one process-wide RNG (parameter initialisation, dropout,
/// `Tensor::random`). Work that seeds it and expects the same numbers back (a training run, a
/// reproducibility test) holds this guard so that other threads cannot draw in between.
///
/// Re-entrant on one thread: a run that holds its turn may call code that asks for it again
/// (a training loop inside a run that also evaluates), and the turn ends when the outermost
/// guard drops.
pub fn exclusive_rng() -> RngTurn {
    let depth = TURN_DEPTH.with(|d| d.get());
    let guard = if depth == 0 {
        Some(
            BACKEND_RNG
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    } else {
        None
    };
    TURN_DEPTH.with(|d| d.set(depth + 1));
    RngTurn { _guard: guard }
}

thread_local! {
    static TURN_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A thread's turn at the backend RNG ([`exclusive_rng`]); the turn ends when the outermost
/// guard of the thread drops.
#[must_use = "the turn ends when the guard drops"]
pub struct RngTurn {
    _guard: Option<MutexGuard<'static, ()>>,
}

impl Drop for RngTurn {
    fn drop(&mut self) {
        TURN_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A run's master seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Seed(pub u64);

impl Default for Seed {
    fn default() -> Self {
        Seed(42)
    }
}

impl Seed {
    /// Seeds the backend RNG of `device` (and, on backends whose RNG is global, all devices of
    /// that backend) and returns `self` for chaining.
    pub fn apply(self, device: &Device) -> Self {
        device.seed(self.0);
        self
    }

    /// A 64-bit seed for the named stream (e.g. `"shuffle"`, `"split"`), derived with
    /// SplitMix64 over the master seed and an FNV-1a hash of the name.
    pub fn derive(self, stream: &str) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in stream.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        splitmix64(self.0 ^ hash)
    }

    /// A 64-bit seed for the named stream keyed by integers (e.g. epoch and item index), so
    /// that work spread over threads draws the same numbers whatever the scheduling.
    pub fn derive_keyed(self, stream: &str, keys: &[u64]) -> u64 {
        keys.iter().fold(self.derive(stream), |acc, &k| {
            splitmix64(acc ^ splitmix64(k))
        })
    }

    /// An independent, reproducible RNG for the named stream.
    pub fn rng(self, stream: &str) -> StdRng {
        StdRng::seed_from_u64(self.derive(stream))
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};
    use rand::RngExt;

    #[test]
    fn the_rng_turn_is_reentrant_on_its_thread_and_exclusive_across_threads() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let outer = exclusive_rng();
        let inner = exclusive_rng(); // would deadlock if not re-entrant
        let taken = Arc::new(AtomicBool::new(false));
        let other = {
            let taken = taken.clone();
            std::thread::spawn(move || {
                let _turn = exclusive_rng();
                taken.store(true, Ordering::SeqCst);
            })
        };
        drop(inner);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !taken.load(Ordering::SeqCst),
            "another thread took the turn while it was held"
        );
        drop(outer);
        other.join().unwrap();
        assert!(taken.load(Ordering::SeqCst));
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let draw = |seed: Seed, stream: &str| {
            let mut rng = seed.rng(stream);
            (0..4).map(|_| rng.random()).collect::<Vec<u32>>()
        };
        assert_eq!(draw(Seed(7), "shuffle"), draw(Seed(7), "shuffle"));
        assert_ne!(draw(Seed(7), "shuffle"), draw(Seed(7), "split"));
        assert_ne!(draw(Seed(7), "shuffle"), draw(Seed(8), "shuffle"));
        assert_ne!(Seed(7).derive("shuffle"), Seed(7).derive("split"));
        assert_ne!(Seed(7).derive("shuffle"), Seed(8).derive("shuffle"));
        let keyed = |keys: &[u64]| Seed(7).derive_keyed("augment", keys);
        assert_eq!(keyed(&[1, 2]), keyed(&[1, 2]));
        assert_ne!(keyed(&[1, 2]), keyed(&[2, 1]));
        assert_ne!(keyed(&[0, 0]), keyed(&[0, 1]));
    }

    #[test]
    fn backend_rng_follows_the_seed() {
        let _rng = exclusive_rng();
        let device = Device::flex();
        let draw = |seed: u64| {
            Seed(seed).apply(&device);
            Tensor::<1>::random([16], Distribution::Default, &device)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}

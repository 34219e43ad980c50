//! Seeded, stratified splits, and the two rules every dataset follows:
//!
//! - **The test split is a property of the dataset.** Datasets without a published test set
//!   (digits, tables, image folders without `test/`) hold out a fixed, stratified 20%, drawn
//!   with [`TEST_SPLIT_SEED`] and never with the run's seed. So two runs on the same dataset
//!   (a teacher and its student, a pretrained run and its fine-tuning, runs over several
//!   seeds) share one test set and never train on each other's test items.
//! - **Validation comes from the training data.** A run carves its validation split
//!   ([`validation_split`], stratified where there are labels, seeded by the run, default
//!   [`DEFAULT_VALID_FRACTION`] of the training items) out of the training split; early
//!   stopping, reduce-on-plateau and best-epoch choice watch it, and the test split is read
//!   once, at the end.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{Error, Result};

/// The seed of every dataset's fixed test split (see the module docs); independent of any
/// run's seed.
pub const TEST_SPLIT_SEED: u64 = 0x07E5_75E7;

/// The share of a dataset's test set when it has no published one.
pub const TEST_FRACTION: f64 = 0.2;

/// The default share of the training items held out for validation.
pub const DEFAULT_VALID_FRACTION: f64 = 0.1;

/// [`DEFAULT_VALID_FRACTION`], for serde defaults.
pub fn default_valid_fraction() -> f64 {
    DEFAULT_VALID_FRACTION
}

/// Checks that a validation fraction is in (0, 1).
pub fn check_valid_fraction(fraction: f64) -> Result<()> {
    if fraction > 0.0 && fraction < 1.0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "the validation fraction must be in (0, 1), found {fraction}"
        )))
    }
}

/// A dataset's fixed (train, test) split: [`stratified_split`] with [`TEST_FRACTION`] and
/// [`TEST_SPLIT_SEED`].
pub fn dataset_split(labels: &[usize]) -> (Vec<usize>, Vec<usize>) {
    stratified_split(labels, TEST_FRACTION, TEST_SPLIT_SEED)
}

/// Splits training indices `0..labels.len()` into (train, validation), stratified by label
/// and seeded by the run; an error when either part would be empty.
pub fn validation_split(
    labels: &[usize],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    check_valid_fraction(fraction)?;
    let (train, valid) = stratified_split(labels, fraction, seed);
    if valid.is_empty() || train.is_empty() {
        return Err(Error::Invalid(format!(
            "a validation fraction of {fraction} of {} training items leaves {} for training and {} for validation; choose another fraction",
            labels.len(),
            train.len(),
            valid.len()
        )));
    }
    Ok((train, valid))
}

/// Train, validation and test indices of one dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holdout {
    /// Training items.
    pub train: Vec<usize>,
    /// Validation items (carved from the training part by the run's seed).
    pub valid: Vec<usize>,
    /// Test items (fixed by the dataset).
    pub test: Vec<usize>,
}

/// The three-way split of a dataset without a published test set: the fixed
/// [`dataset_split`], then [`validation_split`] of its training part by `seed`. All lists
/// are sorted indices into `labels`.
pub fn holdout(labels: &[usize], valid_fraction: f64, seed: u64) -> Result<Holdout> {
    let (rest, test) = dataset_split(labels);
    let rest_labels: Vec<usize> = rest.iter().map(|&i| labels[i]).collect();
    let (train, valid) = validation_split(&rest_labels, valid_fraction, seed)?;
    Ok(Holdout {
        train: train.iter().map(|&i| rest[i]).collect(),
        valid: valid.iter().map(|&i| rest[i]).collect(),
        test,
    })
}

/// Splits indices `0..labels.len()` into (train, test), keeping each class's proportion: each
/// class contributes `round(count · test_fraction)` images to the test set. Deterministic for a
/// given `seed`; both index lists come back sorted.
pub fn stratified_split(
    labels: &[usize],
    test_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let num_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut members in by_class {
        members.shuffle(&mut rng);
        let n_test = (members.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_is_disjoint_complete_stratified_and_its_test_part_ignores_the_seed() {
        let labels: Vec<usize> = (0..200).map(|i| i % 2).collect();
        let h = holdout(&labels, 0.125, 3).unwrap();
        assert_eq!((h.train.len(), h.valid.len(), h.test.len()), (140, 20, 40));
        let mut all: Vec<usize> = h
            .train
            .iter()
            .chain(&h.valid)
            .chain(&h.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        assert_eq!(h.valid.iter().filter(|&&i| labels[i] == 1).count(), 10);
        assert_eq!(h.test.iter().filter(|&&i| labels[i] == 1).count(), 20);
        // Another run seed: the same test items, other validation items.
        let other = holdout(&labels, 0.125, 4).unwrap();
        assert_eq!(other.test, h.test);
        assert_ne!(other.valid, h.valid);
        assert_eq!(holdout(&labels, 0.125, 3).unwrap(), h);
        for seed in 0..20 {
            let s = holdout(&labels, 0.1, seed).unwrap();
            assert!(
                s.test
                    .iter()
                    .all(|t| !s.train.contains(t) && !s.valid.contains(t))
            );
        }
    }

    #[test]
    fn validation_fractions_that_leave_a_part_empty_are_errors() {
        let labels = vec![0, 0, 1, 1];
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(validation_split(&labels, bad, 0).is_err(), "{bad}");
        }
        let err = validation_split(&labels, 0.1, 0).unwrap_err().to_string();
        assert!(err.contains("0 for validation"), "{err}");
        assert_eq!(validation_split(&labels, 0.5, 0).unwrap().1.len(), 2);
    }

    #[test]
    fn stratified_and_seeded() {
        let labels: Vec<usize> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let (train, test) = stratified_split(&labels, 0.25, 3);
        assert_eq!(test.len(), 25);
        assert_eq!(test.iter().filter(|&&i| labels[i] == 1).count(), 5);
        assert_eq!(train.len() + test.len(), 100);
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(stratified_split(&labels, 0.25, 3), (train, test.clone()));
        assert_ne!(stratified_split(&labels, 0.25, 4).1, test);
    }
}

//! Seeded, stratified splits.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

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

/// Splits indices into (train, validation, test), each class keeping its proportion in each
/// part: the test set first, then the validation set from what is left. Deterministic for a
/// given `seed`; all lists come back sorted.
pub fn train_valid_test_split(
    labels: &[usize],
    valid_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (rest, test) = stratified_split(labels, test_fraction, seed);
    let rest_labels: Vec<usize> = rest.iter().map(|&i| labels[i]).collect();
    let share = if test_fraction < 1.0 {
        valid_fraction / (1.0 - test_fraction)
    } else {
        0.0
    };
    let (train, valid) = stratified_split(&rest_labels, share.min(1.0), seed ^ 0x5eed);
    (
        train.iter().map(|&i| rest[i]).collect(),
        valid.iter().map(|&i| rest[i]).collect(),
        test,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_split_is_disjoint_complete_and_stratified() {
        let labels: Vec<usize> = (0..100).map(|i| i % 2).collect();
        let (train, valid, test) = train_valid_test_split(&labels, 0.1, 0.2, 3);
        assert_eq!((train.len(), valid.len(), test.len()), (70, 10, 20));
        let mut all: Vec<usize> = train.iter().chain(&valid).chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(valid.iter().filter(|&&i| labels[i] == 1).count(), 5);
        assert_eq!(train_valid_test_split(&labels, 0.1, 0.2, 3).1, valid);
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

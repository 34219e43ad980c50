//! Tables from CSV: numeric and categorical columns, a target column by name, a stated
//! missing-value policy, and standardisation fitted on the training split only.
//!
//! ```no_run
//! use kiln_data::tabular::{Table, TableSpec, TableEncoder};
//! let table = Table::read_csv("ames_housing.csv".as_ref())?;
//! let (train, test) = table.split(0.2, 42);
//! let encoder = TableEncoder::fit(&table, &TableSpec::target("Sale_Price"), &train)?;
//! let train_set = encoder.transform(&table, &train)?; // features [n, encoder.width()]
//! # Ok::<(), kiln_data::Error>(())
//! ```
//!
//! ## Column types
//! A column is **numeric** when every present cell parses as a number, otherwise
//! **categorical**. The target decides the task unless [`TableSpec::task`] says otherwise: a
//! categorical target is classification, a numeric one regression.
//!
//! ## Encoding (fitted on the training rows only)
//! - Numeric features: standardised, `(x − mean) / std` with the training mean and standard
//!   deviation (std 0 → 1).
//! - Categorical features: [`Encoding::OneHot`] (default) gives one 0/1 column per category
//!   seen in training, sorted by name (an unseen category is all zeros); [`Encoding::Index`]
//!   gives one column holding the category's index (unseen → the number of categories).
//! - Regression targets: standardised like features ([`TableEncoder::unscale_target`] maps
//!   predictions back); classification targets: class indices in sorted name order.
//!
//! ## Missing values
//! Empty cells and `NA`, `N/A`, `NaN`, `nan`, `null`, `?` are missing. A missing numeric
//! feature takes the training **median** of its column; a missing categorical feature is the
//! category `<missing>` (a category like any other). A missing target is an error naming the
//! line, never a silently dropped row.

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{Error, ImageSet, Result};

/// Cell texts that mean "missing".
pub const MISSING: &[&str] = &["", "NA", "N/A", "NaN", "nan", "null", "?"];

/// The category a missing categorical cell becomes.
pub const MISSING_CATEGORY: &str = "<missing>";

fn is_missing(cell: &str) -> bool {
    MISSING.contains(&cell)
}

/// A table of raw cells read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The file it came from (for error messages).
    pub source: PathBuf,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of trimmed cells, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
    /// File line of each row (1-based), for error messages.
    pub lines: Vec<usize>,
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = crate::read_maybe_gz(path)?;
    String::from_utf8(bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: 0,
        reason: format!("not UTF-8 text: {e}"),
    })
}

impl Table {
    /// Reads a comma-separated file (gzip when the name ends in `.gz`) whose first row names the
    /// columns. Every row must have as many cells as the header.
    pub fn read_csv(path: &Path) -> Result<Table> {
        Self::parse_csv(path, &read_text(path)?)
    }

    /// Parses CSV text (see [`Table::read_csv`]); `path` is only used in error messages.
    pub fn parse_csv(path: &Path, text: &str) -> Result<Table> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(text.as_bytes());
        let parse_err = |line: usize, reason: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| parse_err(1, e.to_string()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if columns.is_empty() || columns.iter().all(String::is_empty) {
            return Err(parse_err(1, "no header row naming the columns".into()));
        }
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line() as usize);
                parse_err(line, e.to_string())
            })?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            if record.len() != columns.len() {
                return Err(parse_err(
                    line,
                    format!(
                        "expected {} columns (as in the header), found {}",
                        columns.len(),
                        record.len()
                    ),
                ));
            }
            rows.push(record.iter().map(|c| c.trim().to_string()).collect());
            lines.push(line);
        }
        if rows.is_empty() {
            return Err(parse_err(2, "the table has a header but no rows".into()));
        }
        Ok(Table {
            source: path.to_path_buf(),
            columns,
            rows,
            lines,
        })
    }

    /// Reads scikit-learn's bundled-CSV layout (`iris.csv`, `wine_data.csv`,
    /// `breast_cancer.csv`): a first row `n_samples,n_features,class names...`, then rows of
    /// features and a class index. The target column is called `target` and holds class names.
    pub fn read_sklearn_csv(path: &Path, feature_names: Option<&[&str]>) -> Result<Table> {
        let text = read_text(path)?;
        let mut lines = text.lines();
        let bad = |line: usize, reason: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| bad(1, "empty file".into()))?
            .split(',')
            .map(str::trim)
            .collect();
        let count = |i: usize, what: &str| -> Result<usize> {
            header.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| {
                bad(
                    1,
                    format!(
                        "expected `n_samples,n_features,class names...`; {what} is not a count"
                    ),
                )
            })
        };
        let (n, f) = (count(0, "n_samples")?, count(1, "n_features")?);
        let classes: Vec<String> = header[2..].iter().map(|s| s.to_string()).collect();
        let mut columns: Vec<String> = match feature_names {
            Some(names) if names.len() == f => names.iter().map(|s| s.to_string()).collect(),
            _ => (1..=f).map(|i| format!("x{i}")).collect(),
        };
        columns.push("target".into());
        let mut rows = Vec::with_capacity(n);
        let mut numbers = Vec::with_capacity(n);
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let line_no = i + 2;
            let mut cells: Vec<String> = line.split(',').map(|c| c.trim().to_string()).collect();
            if cells.len() != f + 1 {
                return Err(bad(
                    line_no,
                    format!(
                        "expected {} columns ({f} features and a class index), found {}",
                        f + 1,
                        cells.len()
                    ),
                ));
            }
            let class: usize = cells[f]
                .parse()
                .ok()
                .filter(|&c: &usize| c < classes.len())
                .ok_or_else(|| {
                    bad(
                        line_no,
                        format!(
                            "class index `{}` is not one of 0..{}",
                            cells[f],
                            classes.len()
                        ),
                    )
                })?;
            cells[f] = classes[class].clone();
            rows.push(cells);
            numbers.push(line_no);
        }
        if rows.len() != n {
            return Err(bad(
                0,
                format!("the header announces {n} rows, found {}", rows.len()),
            ));
        }
        Ok(Table {
            source: path.to_path_buf(),
            columns,
            rows,
            lines: numbers,
        })
    }

    /// Reads whitespace-separated numbers without a header, naming the columns `names`.
    pub fn read_whitespace(path: &Path, names: &[&str]) -> Result<Table> {
        let text = read_text(path)?;
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if cells.len() != names.len() {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: format!("expected {} columns, found {}", names.len(), cells.len()),
                });
            }
            rows.push(cells);
            lines.push(i + 1);
        }
        Ok(Table {
            source: path.to_path_buf(),
            columns: names.iter().map(|s| s.to_string()).collect(),
            rows,
            lines,
        })
    }

    /// Adds the columns of `other` (same number of rows) to the right.
    pub fn join_columns(mut self, other: Table) -> Result<Table> {
        if other.len() != self.len() {
            return Err(Error::Invalid(format!(
                "{} has {} rows but {} has {}",
                self.source.display(),
                self.len(),
                other.source.display(),
                other.len()
            )));
        }
        self.columns.extend(other.columns);
        for (row, extra) in self.rows.iter_mut().zip(other.rows) {
            row.extend(extra);
        }
        Ok(self)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The index of column `name`, or an error listing the columns.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            Error::Invalid(format!(
                "{} has no column `{name}`; columns: {}",
                self.source.display(),
                self.columns.join(", ")
            ))
        })
    }

    /// True when every present cell of column `c` is a number.
    pub fn is_numeric(&self, c: usize) -> bool {
        self.rows
            .iter()
            .map(|r| r[c].as_str())
            .filter(|v| !is_missing(v))
            .all(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
    }

    /// A seeded random split of the rows into `(train, test)` with `test_fraction` held out.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let labels = vec![0; self.len()];
        crate::split::stratified_split(&labels, test_fraction, seed)
    }

    /// The class index of every row by column `target` (classes in sorted order of their
    /// names), for stratified splits.
    pub fn class_labels(&self, target: &str) -> Result<Vec<usize>> {
        let c = self.column(target)?;
        let mut names: Vec<&str> = self.rows.iter().map(|r| r[c].as_str()).collect();
        names.sort_unstable();
        names.dedup();
        Ok(self
            .rows
            .iter()
            .map(|r| names.binary_search(&r[c].as_str()).unwrap_or(0))
            .collect())
    }

    /// A seeded split stratified by the classes of column `target`.
    pub fn split_stratified(
        &self,
        target: &str,
        test_fraction: f64,
        seed: u64,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let labels = self.class_labels(target)?;
        Ok(crate::split::stratified_split(&labels, test_fraction, seed))
    }
}

/// How categorical features become numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// One 0/1 column per category.
    #[default]
    OneHot,
    /// One column with the category's index.
    Index,
}

/// What the target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableTask {
    /// Predict a number.
    Regression,
    /// Predict one of the target's categories.
    Classification,
}

/// Which column to predict and how to encode the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Target column name.
    pub target: String,
    /// Categorical feature encoding.
    #[serde(default)]
    pub encoding: Encoding,
    /// The task; `None` infers it from the target column's type.
    #[serde(default)]
    pub task: Option<TableTask>,
    /// Columns to leave out (e.g. identifiers).
    #[serde(default)]
    pub drop: Vec<String>,
}

impl TableSpec {
    /// Predict `target`, one-hot encoding, task inferred.
    pub fn target(target: &str) -> Self {
        Self {
            target: target.into(),
            encoding: Encoding::OneHot,
            task: None,
            drop: Vec::new(),
        }
    }
}

/// How one feature column is encoded (fitted on the training rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ColumnEncoder {
    /// A standardised number.
    Numeric {
        /// Column name.
        name: String,
        /// Training median, used for missing cells.
        median: f64,
        /// Training mean.
        mean: f64,
        /// Training standard deviation (1 when constant).
        std: f64,
    },
    /// A category.
    Categorical {
        /// Column name.
        name: String,
        /// Categories seen in training, sorted.
        categories: Vec<String>,
        /// One-hot or index.
        encoding: Encoding,
    },
}

impl ColumnEncoder {
    /// Column name.
    pub fn name(&self) -> &str {
        match self {
            ColumnEncoder::Numeric { name, .. } | ColumnEncoder::Categorical { name, .. } => name,
        }
    }

    /// Number of output features.
    pub fn width(&self) -> usize {
        match self {
            ColumnEncoder::Numeric { .. } => 1,
            ColumnEncoder::Categorical {
                categories,
                encoding,
                ..
            } => match encoding {
                Encoding::OneHot => categories.len(),
                Encoding::Index => 1,
            },
        }
    }
}

/// How the target is encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetEncoder {
    /// Standardised number.
    Regression {
        /// Column name.
        name: String,
        /// Training mean.
        mean: f64,
        /// Training standard deviation.
        std: f64,
    },
    /// Class index.
    Classification {
        /// Column name.
        name: String,
        /// Class names (sorted), indexed by label.
        classes: Vec<String>,
    },
}

/// Encoded targets.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Standardised regression targets.
    Values(Vec<f32>),
    /// Class indices.
    Classes(Vec<usize>),
}

/// Encoded rows: a `[len, width]` feature matrix and targets.
#[derive(Clone, Debug, PartialEq)]
pub struct TabularSet {
    /// Features, row after row.
    pub features: Vec<f32>,
    /// Features per row.
    pub width: usize,
    /// Targets, one per row.
    pub targets: Targets,
}

impl TabularSet {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match &self.targets {
            Targets::Values(v) => v.len(),
            Targets::Classes(c) => c.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.width..(i + 1) * self.width]
    }

    /// A classification set as a one-channel, one-row "image" set (`[1, 1, width]`) so every
    /// image classifier pipeline (MLP presets, training, evaluation) takes tables too.
    pub fn to_image_set(&self, classes: &[String]) -> Result<ImageSet> {
        match &self.targets {
            Targets::Classes(labels) => ImageSet::new(
                self.features.clone(),
                labels.clone(),
                [1, 1, self.width],
                classes.to_vec(),
            ),
            Targets::Values(_) => Err(Error::Invalid(
                "a regression table cannot become a labelled image set".into(),
            )),
        }
    }
}

/// The fitted encoding of a table: feature columns and target (save it with a run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableEncoder {
    /// Feature encoders, in column order.
    pub features: Vec<ColumnEncoder>,
    /// Target encoder.
    pub target: TargetEncoder,
}

impl TableEncoder {
    /// Fits the encoding on the rows `train` of `table`.
    pub fn fit(table: &Table, spec: &TableSpec, train: &[usize]) -> Result<Self> {
        if train.is_empty() {
            return Err(Error::Invalid(
                "cannot fit a table encoding on no rows".into(),
            ));
        }
        let t = table.column(&spec.target)?;
        for name in &spec.drop {
            table.column(name)?;
        }
        let target_numeric = table.is_numeric(t);
        let task = spec.task.unwrap_or(if target_numeric {
            TableTask::Regression
        } else {
            TableTask::Classification
        });
        let target = match task {
            TableTask::Regression => {
                if !target_numeric {
                    return Err(Error::Invalid(format!(
                        "{}: target `{}` is not numeric, so it cannot be a regression target",
                        table.source.display(),
                        spec.target
                    )));
                }
                let values = numeric_cells(table, t, train, None)?;
                let (mean, std) = mean_std(&values);
                TargetEncoder::Regression {
                    name: spec.target.clone(),
                    mean,
                    std,
                }
            }
            TableTask::Classification => {
                let classes = categories(table, t, train);
                TargetEncoder::Classification {
                    name: spec.target.clone(),
                    classes,
                }
            }
        };
        let mut features = Vec::new();
        for (c, name) in table.columns.iter().enumerate() {
            if c == t || spec.drop.contains(name) {
                continue;
            }
            if table.is_numeric(c) {
                let present: Vec<f64> = train
                    .iter()
                    .map(|&r| table.rows[r][c].as_str())
                    .filter(|v| !is_missing(v))
                    .map(|v| v.parse::<f64>().expect("checked numeric"))
                    .collect();
                let median = median(&present);
                let values = numeric_cells(table, c, train, Some(median))?;
                let (mean, std) = mean_std(&values);
                features.push(ColumnEncoder::Numeric {
                    name: name.clone(),
                    median,
                    mean,
                    std,
                });
            } else {
                features.push(ColumnEncoder::Categorical {
                    name: name.clone(),
                    categories: categories(table, c, train),
                    encoding: spec.encoding,
                });
            }
        }
        Ok(Self { features, target })
    }

    /// Number of encoded features per row.
    pub fn width(&self) -> usize {
        self.features.iter().map(ColumnEncoder::width).sum()
    }

    /// Names of the encoded features (`column` or `column=category`).
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for f in &self.features {
            match f {
                ColumnEncoder::Categorical {
                    name,
                    categories,
                    encoding: Encoding::OneHot,
                } => names.extend(categories.iter().map(|c| format!("{name}={c}"))),
                other => names.push(other.name().to_string()),
            }
        }
        names
    }

    /// Class names for a classification target.
    pub fn classes(&self) -> Option<&[String]> {
        match &self.target {
            TargetEncoder::Classification { classes, .. } => Some(classes),
            TargetEncoder::Regression { .. } => None,
        }
    }

    /// Maps a standardised regression prediction back to the target's units.
    pub fn unscale_target(&self, value: f32) -> f64 {
        match &self.target {
            TargetEncoder::Regression { mean, std, .. } => f64::from(value) * std + mean,
            TargetEncoder::Classification { .. } => f64::from(value),
        }
    }

    /// Encodes the rows `rows` of `table` (which must have the fitted columns, by name).
    pub fn transform(&self, table: &Table, rows: &[usize]) -> Result<TabularSet> {
        let width = self.width();
        let mut columns = Vec::with_capacity(self.features.len());
        for f in &self.features {
            columns.push(table.column(f.name())?);
        }
        let mut features = Vec::with_capacity(rows.len() * width);
        for &r in rows {
            let row = &table.rows[r];
            for (f, &c) in self.features.iter().zip(&columns) {
                let cell = row[c].as_str();
                match f {
                    ColumnEncoder::Numeric {
                        median, mean, std, ..
                    } => {
                        let v = if is_missing(cell) {
                            *median
                        } else {
                            let parse_err = |reason: String| Error::Parse {
                                path: table.source.clone(),
                                line: table.lines[r],
                                reason: format!("column `{}`: {reason}", f.name()),
                            };
                            let v = cell
                                .parse::<f64>()
                                .map_err(|_| parse_err(format!("`{cell}` is not a number")))?;
                            check_range(v).map_err(parse_err)?
                        };
                        features.push(((v - mean) / std) as f32);
                    }
                    ColumnEncoder::Categorical {
                        categories,
                        encoding,
                        ..
                    } => {
                        let value = if is_missing(cell) {
                            MISSING_CATEGORY
                        } else {
                            cell
                        };
                        let found = categories.binary_search_by(|c| c.as_str().cmp(value)).ok();
                        match encoding {
                            Encoding::OneHot => {
                                let start = features.len();
                                features.resize(start + categories.len(), 0.0);
                                if let Some(k) = found {
                                    features[start + k] = 1.0;
                                }
                            }
                            Encoding::Index => {
                                features.push(found.unwrap_or(categories.len()) as f32)
                            }
                        }
                    }
                }
            }
        }
        let targets = match &self.target {
            TargetEncoder::Regression { name, mean, std } => {
                let c = table.column(name)?;
                let values = numeric_cells(table, c, rows, None)?;
                Targets::Values(values.iter().map(|v| ((v - mean) / std) as f32).collect())
            }
            TargetEncoder::Classification { name, classes } => {
                let c = table.column(name)?;
                let mut labels = Vec::with_capacity(rows.len());
                for &r in rows {
                    let cell = table.rows[r][c].as_str();
                    let label = classes
                        .binary_search_by(|k| k.as_str().cmp(cell))
                        .map_err(|_| Error::Parse {
                            path: table.source.clone(),
                            line: table.lines[r],
                            reason: format!(
                                "target `{name}`: class `{cell}` did not occur in the training rows (classes: {})",
                                classes.join(", ")
                            ),
                        })?;
                    labels.push(label);
                }
                Targets::Classes(labels)
            }
        };
        Ok(TabularSet {
            features,
            width,
            targets,
        })
    }
}

/// The numbers of column `c` in `rows`; missing cells take `fill`, or are an error when
/// `fill` is `None` (targets).
fn numeric_cells(table: &Table, c: usize, rows: &[usize], fill: Option<f64>) -> Result<Vec<f64>> {
    rows.iter()
        .map(|&r| {
            let cell = table.rows[r][c].as_str();
            let err = |reason: String| Error::Parse {
                path: table.source.clone(),
                line: table.lines[r],
                reason,
            };
            if is_missing(cell) {
                return fill
                    .ok_or_else(|| err(format!("target `{}` is missing", table.columns[c])));
            }
            let v = cell.parse::<f64>().map_err(|_| {
                err(format!(
                    "column `{}`: `{cell}` is not a number",
                    table.columns[c]
                ))
            })?;
            check_range(v).map_err(|reason| err(format!("column `{}`: {reason}", table.columns[c])))
        })
        .collect()
}

/// Kiln's tensors are f32: a number beyond f32's range cannot be represented (and would turn
/// standardised features into infinities or NaN).
fn check_range(v: f64) -> std::result::Result<f64, String> {
    if v.is_finite() && v.abs() <= f64::from(f32::MAX) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is outside the range of 32-bit floats (±3.4e38)"
        ))
    }
}

fn categories(table: &Table, c: usize, rows: &[usize]) -> Vec<String> {
    let mut cats: Vec<String> = rows
        .iter()
        .map(|&r| {
            let cell = table.rows[r][c].as_str();
            if is_missing(cell) {
                MISSING_CATEGORY
            } else {
                cell
            }
            .to_string()
        })
        .collect();
    cats.sort();
    cats.dedup();
    cats
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > 1e-12 { std } else { 1.0 })
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// A table Kiln knows by name, its file(s) under the data directory and its default target.
#[derive(Clone, Copy, Debug)]
pub struct NamedTable {
    /// Name for `--dataset`.
    pub name: &'static str,
    /// The default target column.
    pub target: &'static str,
    /// What it is.
    pub description: &'static str,
}

/// The tables of the data directory's `tabular/` folder.
pub const TABLES: &[NamedTable] = &[
    NamedTable {
        name: "iris",
        target: "target",
        description: "iris species, 150 x 4 (classification)",
    },
    NamedTable {
        name: "wine",
        target: "target",
        description: "wine cultivars, 178 x 13 (classification)",
    },
    NamedTable {
        name: "breast-cancer",
        target: "target",
        description: "breast cancer diagnosis, 569 x 30 (classification)",
    },
    NamedTable {
        name: "diabetes",
        target: "progression",
        description: "diabetes progression, 442 x 10 (regression)",
    },
    NamedTable {
        name: "boston-housing",
        target: "medv",
        description: "Boston house prices, 506 x 13 (regression)",
    },
    NamedTable {
        name: "ames-housing",
        target: "Sale_Price",
        description: "Ames house prices, 2,930 x 73, 40 categorical (regression)",
    },
    NamedTable {
        name: "concrete",
        target: "compressive_strength",
        description: "concrete strength, 1,030 x 8 (regression)",
    },
];

/// Reads a named table from `<data_dir>/tabular/`.
pub fn load_named(name: &str, data_dir: &Path) -> Result<(Table, &'static NamedTable)> {
    let named = TABLES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::UnknownDataset {
            name: name.into(),
            available: TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
        })?;
    let dir = data_dir.join("tabular");
    let file = |f: &str| -> Result<PathBuf> {
        let path = dir.join(f);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Missing {
                dataset: name.into(),
                dir: dir.clone(),
                files: vec![f.into()],
            })
        }
    };
    let table = match name {
        "iris" => Table::read_sklearn_csv(
            &file("iris.csv")?,
            Some(&["sepal_length", "sepal_width", "petal_length", "petal_width"]),
        )?,
        "wine" => Table::read_sklearn_csv(&file("wine_data.csv")?, None)?,
        "breast-cancer" => Table::read_sklearn_csv(&file("breast_cancer.csv")?, None)?,
        "diabetes" => Table::read_whitespace(
            &file("diabetes_data_raw.csv.gz")?,
            &[
                "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
            ],
        )?
        .join_columns(Table::read_whitespace(
            &file("diabetes_target.csv.gz")?,
            &["progression"],
        )?)?,
        "boston-housing" => Table::read_csv(&file("boston_housing.csv")?)?,
        "ames-housing" => Table::read_csv(&file("ames_housing.csv")?)?,
        "concrete" => Table::read_csv(&file("concrete.csv")?)?,
        _ => unreachable!("name checked against TABLES"),
    };
    Ok((table, named))
}

/// One encoded row for burn's `DataLoader`.
#[derive(Clone, Debug)]
pub struct TableItem {
    /// Encoded features.
    pub features: Vec<f32>,
    /// Standardised target (regression) or class index as `f32` (classification).
    pub target: f32,
}

/// A [`TabularSet`] as a burn [`Dataset`].
#[derive(Clone, Debug)]
pub struct TableDataset {
    set: std::sync::Arc<TabularSet>,
}

impl TableDataset {
    /// Wraps an encoded set.
    pub fn new(set: TabularSet) -> Self {
        Self {
            set: std::sync::Arc::new(set),
        }
    }
}

impl Dataset<TableItem> for TableDataset {
    fn get(&self, index: usize) -> Result<TableItem, DatasetError> {
        if index >= self.set.len() {
            return Err(DatasetError::new(Error::Invalid(format!(
                "row {index} is out of range: the table has {} rows",
                self.set.len()
            ))));
        }
        let target = match &self.set.targets {
            Targets::Values(v) => v[index],
            Targets::Classes(c) => c[index] as f32,
        };
        Ok(TableItem {
            features: self.set.row(index).to_vec(),
            target,
        })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// A regression batch.
#[derive(Clone, Debug)]
pub struct RegressionBatch {
    /// `[batch, features]`.
    pub features: Tensor<2>,
    /// `[batch, 1]` standardised targets.
    pub targets: Tensor<2>,
}

/// Stacks [`TableItem`]s into a [`RegressionBatch`].
#[derive(Clone, Debug, Default)]
pub struct RegressionBatcher;

impl Batcher<TableItem, RegressionBatch> for RegressionBatcher {
    fn batch(&self, items: Vec<TableItem>, device: &Device) -> RegressionBatch {
        let n = items.len();
        let width = items.first().map_or(0, |i| i.features.len());
        let mut features = Vec::with_capacity(n * width);
        let mut targets = Vec::with_capacity(n);
        for item in items {
            features.extend_from_slice(&item.features);
            targets.push(item.target);
        }
        RegressionBatch {
            features: Tensor::from_data(TensorData::new(features, [n, width]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, 1]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        Table::parse_csv(Path::new("t.csv"), text).unwrap()
    }

    #[test]
    fn numeric_and_categorical_columns_are_encoded_on_training_rows_only() {
        let t = table("size,colour,price\n1,red,10\n3,blue,20\n,red,30\n100,green,40\n");
        // Fit on rows 0..3: size median of (1, 3) = 2 fills the missing cell.
        let enc = TableEncoder::fit(&t, &TableSpec::target("price"), &[0, 1, 2]).unwrap();
        assert_eq!(
            enc.feature_names(),
            vec!["size", "colour=blue", "colour=red"]
        );
        let set = enc.transform(&t, &[0, 1, 2, 3]).unwrap();
        assert_eq!(set.width, 3);
        // size on train rows: 1, 3, 2 → mean 2, std sqrt(2/3).
        let s = (2.0f64 / 3.0).sqrt();
        assert!((f64::from(set.row(0)[0]) - (1.0 - 2.0) / s).abs() < 1e-6);
        assert_eq!(set.row(2)[0], 0.0, "the median fills a missing cell");
        assert_eq!(&set.row(1)[1..], &[1.0, 0.0]);
        assert_eq!(
            &set.row(3)[1..],
            &[0.0, 0.0],
            "an unseen category is all zeros"
        );
        // Target standardised with the training mean 20 and std sqrt(200/3).
        let Targets::Values(v) = &set.targets else {
            panic!()
        };
        assert!((enc.unscale_target(v[3]) - 40.0).abs() < 1e-4);
        let idx = TableEncoder::fit(
            &t,
            &TableSpec {
                encoding: Encoding::Index,
                ..TableSpec::target("price")
            },
            &[0, 1, 2],
        )
        .unwrap();
        let set = idx.transform(&t, &[0, 1, 3]).unwrap();
        assert_eq!(set.width, 2);
        assert_eq!(
            [set.row(0)[1], set.row(1)[1], set.row(2)[1]],
            [1.0, 0.0, 2.0]
        );
    }

    #[test]
    fn categorical_targets_are_classes_and_missing_categories_are_a_category() {
        let t = table("a,b,y\n1,NA,cat\n2,x,dog\n3,x,cat\n");
        let enc = TableEncoder::fit(&t, &TableSpec::target("y"), &[0, 1, 2]).unwrap();
        assert_eq!(enc.classes().unwrap(), ["cat", "dog"]);
        assert_eq!(enc.feature_names(), vec!["a", "b=<missing>", "b=x"]);
        let set = enc.transform(&t, &[0, 1, 2]).unwrap();
        assert_eq!(set.targets, Targets::Classes(vec![0, 1, 0]));
        assert_eq!(&set.row(0)[1..], &[1.0, 0.0]);
    }

    #[test]
    fn bad_tables_name_file_line_and_column() {
        let err = Table::parse_csv(Path::new("t.csv"), "a,b\n1,2\n3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.csv, line 3") && err.contains("expected 2 columns"),
            "{err}"
        );
        let t = table("a,y\n1,2\n2,\n");
        let err = TableEncoder::fit(&t, &TableSpec::target("y"), &[0, 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("target `y` is missing"),
            "{err}"
        );
        let err = TableEncoder::fit(&t, &TableSpec::target("nope"), &[0])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column `nope`") && err.contains("a, y"),
            "{err}"
        );
        let t = table("a,y\n1,cat\n2,dog\n");
        let enc = TableEncoder::fit(&t, &TableSpec::target("y"), &[0]).unwrap();
        let err = enc.transform(&t, &[1]).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("class `dog`"),
            "{err}"
        );
        let spec = TableSpec {
            task: Some(TableTask::Regression),
            ..TableSpec::target("y")
        };
        assert!(
            TableEncoder::fit(&t, &spec, &[0])
                .unwrap_err()
                .to_string()
                .contains("not numeric")
        );
    }

    #[test]
    fn numbers_beyond_f32_are_errors_not_infinities() {
        // Found by the `csv_table` fuzz target.
        let t = table("a,y\n1,2\n9222222222222222222222222222222222222222222222222,3\n");
        let err = TableEncoder::fit(&t, &TableSpec::target("y"), &[0, 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("range of 32-bit floats"),
            "{err}"
        );
    }

    #[test]
    fn regression_batcher_stacks_rows() {
        let t = table("a,b,y\n1,2,3\n4,5,6\n");
        let enc = TableEncoder::fit(&t, &TableSpec::target("y"), &[0, 1]).unwrap();
        let ds = TableDataset::new(enc.transform(&t, &[0, 1]).unwrap());
        let items = vec![ds.get(1).unwrap(), ds.get(0).unwrap()];
        let batch = RegressionBatcher.batch(items, &Device::flex());
        assert_eq!(batch.features.dims(), [2, 2]);
        assert_eq!(
            batch.targets.into_data().try_to_vec::<f32>().unwrap(),
            vec![1.0, -1.0]
        );
        assert!(ds.get(2).is_err());
    }
}

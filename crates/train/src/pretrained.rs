//! Loading pretrained weights into a zoo model for fine-tuning, and the parameter-group rules
//! of its backbone (below the run kinds: `run` and `finetune` use it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::store::{ApplyError, BurnpackStore, ModuleSnapshot};
use kiln_models::ImageModel;
use kiln_optim::{GroupRule, path_under as under};

use crate::config::FineTune;
use crate::{Error, Result};

/// The weights file a `from` names: a run folder's `model.bpk`, or the file itself.
pub fn pretrained_file(from: &Path) -> PathBuf {
    if from.is_dir() {
        from.join("model.bpk")
    } else {
        from.to_path_buf()
    }
}

/// Loads the pretrained weights of `spec` into `model` (same architecture). Only the
/// classification head may differ in shape (a dataset with other classes); it is
/// re-initialised when `spec.new_head`. Any other missing or mismatched parameter is an error
/// naming it.
pub fn load_pretrained(model: ImageModel, spec: &FineTune) -> Result<ImageModel> {
    let file = pretrained_file(&spec.from);
    if !file.is_file() {
        return Err(Error::Weights {
            path: file,
            reason: "pretrained weights not found (expected a run folder or a .bpk file)".into(),
        });
    }
    let head = model.head_path();
    let mut model = model;
    // Read whole (not lazily mapped onto the file: see `eval::load_weights_eagerly`).
    let bytes = std::fs::read(&file).map_err(|e| Error::Weights {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)))
        .allow_partial(true)
        .validate(false);
    let result = model.load_from(&mut store).map_err(|e| Error::Weights {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    for e in &result.errors {
        let (path, detail) = match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => (
                path.clone(),
                format!(
                    "has shape {:?}, the model expects {:?}",
                    found.to_vec(),
                    expected.to_vec()
                ),
            ),
            other => (String::new(), other.to_string()),
        };
        if !(under(&path, head) && matches!(e, ApplyError::ShapeMismatch { .. })) {
            return Err(Error::Weights {
                path: file,
                reason: format!("`{path}` {detail}: the pretrained model has another architecture"),
            });
        }
    }
    let missing: Vec<&String> = result
        .missing
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !under(p, head))
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::Weights {
            path: file,
            reason: format!(
                "the pretrained weights lack `{first}` ({} parameters missing): another architecture",
                missing.len()
            ),
        });
    }
    let head_mismatch = result
        .errors
        .iter()
        .any(|e| matches!(e, ApplyError::ShapeMismatch { path, .. } if under(path, head)));
    if head_mismatch && !spec.new_head {
        return Err(Error::InvalidSetting(format!(
            "the pretrained head `{head}` has another number of classes than the dataset; fine-tune with a new head"
        )));
    }
    Ok(if spec.new_head {
        model.reset_head()
    } else {
        model
    })
}

/// Parameter-group rules putting every module outside the head (paths as seen from the
/// training task, under `prefix`) frozen or at `backbone_lr_scale`.
pub fn backbone_rules(model: &ImageModel, prefix: &str, spec: &FineTune) -> Vec<GroupRule> {
    let head = format!("{prefix}.{}", model.head_path());
    let mut parents = BTreeSet::new();
    for path in kiln_optim::param_paths(model) {
        let full = format!("{prefix}.{path}");
        if under(&full, &head) {
            continue;
        }
        if let Some((parent, _)) = full.rsplit_once('.') {
            parents.insert(parent.to_string());
        }
    }
    parents
        .into_iter()
        .filter_map(|p| {
            if spec.freeze_backbone {
                Some(GroupRule::frozen(&p))
            } else if spec.backbone_lr_scale != 1.0 {
                Some(GroupRule::scaled(&p, spec.backbone_lr_scale))
            } else {
                None
            }
        })
        .collect()
}

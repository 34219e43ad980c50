//! Fine-tuning: a run that starts from pretrained weights, with a new head, a frozen or
//! slower backbone (parameter groups on burn's `freeze_group` / `ModuleLrScheduler`).

use std::path::{Path, PathBuf};

use kiln_optim::GroupRule;

use crate::config::FineTune;
use crate::{Error, Result};

pub use crate::pretrained::{backbone_rules, load_pretrained, pretrained_file};

/// Gradual unfreezing in two chained runs: `frozen_epochs` epochs of linear probing (a new
/// head on the frozen backbone, run folder `run_dir/frozen`), then the remaining
/// `config.recipe.epochs - frozen_epochs` epochs with every layer training (the backbone at
/// `backbone_lr_scale` times the rate) from the probed model, its head kept, in `run_dir`.
/// `config.finetune` names the pretrained weights. Returns both reports.
pub fn train_gradual(
    config: &crate::TrainConfig,
    run_dir: &Path,
    frozen_epochs: usize,
    options: &crate::TrainOptions,
) -> Result<(crate::TrainReport, crate::TrainReport)> {
    let Some(spec) = config.finetune.clone() else {
        return Err(Error::InvalidSetting(
            "gradual unfreezing needs pretrained weights (TrainConfig.finetune)".into(),
        ));
    };
    if frozen_epochs == 0 || frozen_epochs >= config.recipe.epochs {
        return Err(Error::InvalidSetting(format!(
            "unfreezing after {frozen_epochs} of {} epochs: it must be between 1 and {}",
            config.recipe.epochs,
            config.recipe.epochs.saturating_sub(1)
        )));
    }
    let probe_dir = run_dir.join("frozen");
    let mut probe = config.clone();
    probe.recipe.epochs = frozen_epochs;
    probe.finetune = Some(FineTune {
        freeze_backbone: true,
        ..spec.clone()
    });
    let first = crate::train(&probe, &probe_dir, options)?;
    let mut rest = config.clone();
    rest.recipe.epochs = config.recipe.epochs - frozen_epochs;
    rest.finetune = Some(FineTune {
        from: probe_dir,
        new_head: false,
        freeze_backbone: false,
        backbone_lr_scale: spec.backbone_lr_scale,
    });
    let second = crate::train(&rest, run_dir, options)?;
    Ok((first, second))
}

/// What a user asks of a fine-tuning run (what `kiln finetune` takes), before it is turned
/// into a run config by [`plan`].
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// A run folder of a trained model, or a sentence-transformers folder (absolute, relative
    /// to the working directory, or relative to the data directory).
    pub from: PathBuf,
    /// The dataset to fine-tune on.
    pub dataset: String,
    /// `backbone` (linear probing) and module paths or `@` layer indices to freeze.
    pub freeze: Vec<String>,
    /// The number of classes the new head must have (checked against the dataset).
    pub head_classes: Option<usize>,
    /// Keep the pretrained head (same classes) instead of a new one.
    pub keep_head: bool,
    /// The backbone's learning rate (default: the head's).
    pub backbone_lr: Option<f64>,
    /// Train only the head for this many epochs first (gradual unfreezing; image runs).
    pub unfreeze_after: Option<usize>,
    /// Only the first N training images of each class (image runs).
    pub train_per_class: Option<usize>,
    /// Augmentation of training images (image runs).
    pub augment: Option<String>,
}

/// A fine-tuning run, ready to train.
#[derive(Clone, Debug)]
pub enum Plan {
    /// A zoo model from a run folder on an image (or table) dataset; with `unfreeze_after`,
    /// train it with [`train_gradual`], else with [`crate::train`].
    Image {
        /// The run's config.
        config: Box<crate::TrainConfig>,
        /// Head-only epochs before every layer trains.
        unfreeze_after: Option<usize>,
    },
    /// A pretrained sentence encoder with a new head on labelled texts
    /// ([`crate::text::train_text_classifier`]).
    Text(Box<crate::text::TextTrainConfig>),
}

/// The sentence-transformers folder `from` names, if it names one: `from` itself when it
/// holds a `tokenizer.json`, else `data_dir/from` when `from` is not a folder here.
pub fn encoder_folder(from: &Path, data_dir: &Path) -> Option<PathBuf> {
    if from.join("tokenizer.json").is_file() {
        return Some(from.to_path_buf());
    }
    let under_data = data_dir.join(from);
    (!from.is_dir() && under_data.join("tokenizer.json").is_file()).then_some(under_data)
}

/// Turns a fine-tuning request and recipe overrides into a run: a pretrained text encoder
/// (MiniLM's recipe, `kiln_train::text::TextTrainConfig::minilm_finetune`) when `from` is a
/// sentence-transformers folder, else the run folder's model and recipe
/// ([`crate::TrainConfig::finetune_from`]). Options that do not apply, contradictions
/// (`backbone_lr` with a frozen backbone) and a head whose classes are not the dataset's are
/// errors naming them.
pub fn plan(
    request: &Request,
    overrides: &crate::RecipeOverrides,
    data_dir: &Path,
) -> Result<Plan> {
    let freeze_backbone = request.freeze.iter().any(|f| f == "backbone");
    if freeze_backbone && request.backbone_lr.is_some() {
        return Err(Error::InvalidSetting(
            "a backbone learning rate and a frozen backbone contradict each other".into(),
        ));
    }
    let check_head = |found: usize| match request.head_classes {
        Some(classes) if classes != found => Err(Error::InvalidSetting(format!(
            "the head has {classes} classes, but dataset `{}` has {found} classes",
            request.dataset
        ))),
        _ => Ok(()),
    };
    if let Some(dir) = encoder_folder(&request.from, data_dir) {
        let image_only = [
            (
                "freezing layers other than the backbone",
                request.freeze.iter().any(|f| f != "backbone"),
            ),
            ("gradual unfreezing", request.unfreeze_after.is_some()),
            ("images per class", request.train_per_class.is_some()),
            ("augmentation", request.augment.is_some()),
            ("keeping the head", request.keep_head),
        ];
        let given: Vec<&str> = image_only
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect();
        if !given.is_empty() {
            return Err(Error::InvalidSetting(format!(
                "{}: not for a pretrained text encoder ({})",
                given.join(", "),
                dir.display()
            )));
        }
        let mut config = crate::text::TextTrainConfig::minilm_finetune();
        config.dataset = request.dataset.clone();
        config.name = format!(
            "{}-finetuned",
            dir.file_name()
                .map_or("encoder".into(), |n| n.to_string_lossy())
        );
        let mut recipe = config.recipe();
        overrides.apply(&mut recipe)?;
        config.set_recipe(recipe)?;
        let lr_scale = match request.backbone_lr {
            Some(rate) => rate / config.recipe.lr,
            // The recipe's encoder rate.
            None => config
                .pretrained
                .as_ref()
                .map_or(1.0, |p| p.encoder_lr_scale),
        };
        let absolute = std::path::absolute(&dir).map_err(crate::error::io(&dir))?;
        let mut spec = crate::text::PretrainedText::full(absolute, lr_scale);
        spec.freeze_encoder = freeze_backbone;
        config.pretrained = Some(spec);
        if request.head_classes.is_some() {
            check_head(
                crate::text::load_text_dataset(&request.dataset, data_dir)?
                    .0
                    .classes
                    .len(),
            )?;
        }
        return Ok(Plan::Text(Box::new(config)));
    }
    let spec = FineTune {
        from: request.from.clone(),
        new_head: !request.keep_head,
        freeze_backbone,
        backbone_lr_scale: 1.0,
    };
    let mut config = crate::TrainConfig::finetune_from(&request.from, &request.dataset, spec)?;
    for path in request.freeze.iter().filter(|f| *f != "backbone") {
        config.recipe.optim.groups.push(GroupRule::frozen(path));
    }
    let mut recipe = config.recipe();
    overrides.apply(&mut recipe)?;
    config.set_recipe(recipe)?;
    if let (Some(rate), Some(ft)) = (request.backbone_lr, config.finetune.as_mut()) {
        ft.backbone_lr_scale = rate / config.recipe.lr;
    }
    config.train_per_class = request.train_per_class;
    config.augment = request.augment.clone();
    if request.head_classes.is_some() {
        check_head(
            kiln_data::load_dataset(
                &request.dataset,
                kiln_core::Seed(config.recipe.seed),
                data_dir,
                &config.data,
                config.recipe.valid_fraction,
            )?
            .train
            .num_classes(),
        )?;
    }
    Ok(Plan::Image {
        config: Box::new(config),
        unfreeze_after: request.unfreeze_after,
    })
}

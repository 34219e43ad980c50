//! The zoo's registry: names → config presets → built models.
//!
//! ```
//! use kiln_models::preset;
//! let device = burn::tensor::Device::flex();
//! let p = preset("cnn-small").unwrap();
//! let model = p.config.init(&device).unwrap();
//! let summary = model.summary(p.name, &p.summary_input()).unwrap();
//! assert_eq!(summary.total_params, burn::module::Module::num_params(&model));
//! ```

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_core::ModelSummary;
use serde::{Deserialize, Serialize};

use crate::bert::{BertConfig, BertEncoder};
use crate::cnn::{Cnn, CnnConfig};
use crate::efficientnet::{EfficientNet, EfficientNetConfig};
use crate::transformer::{
    CausalLm, CausalLmConfig, EncoderConfig, Pooling, Positions, TransformerClassifier,
    TransformerClassifierConfig,
};
use crate::vit::{VitConfig, VitLite};
use crate::{Classifier, Error, Mlp, MlpConfig, Result};

/// What a model takes as input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// Images `[batch, channels, height, width]`.
    Image,
    /// Token ids `[batch, sequence]`.
    Tokens,
}

/// The configuration of any zoo model, tagged by `model` in TOML/JSON:
///
/// ```toml
/// model = "mlp"
/// input_size = 64
/// hidden_sizes = [128, 64]
/// output_size = 10
/// activation = "relu"
/// dropout = 0.1
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum ModelConfig {
    /// A multi-layer perceptron.
    Mlp(MlpConfig),
    /// A convolutional classifier.
    Cnn(CnnConfig),
    /// A small Vision Transformer.
    VitLite(VitConfig),
    /// An EfficientNet(-Lite) image classifier.
    Efficientnet(EfficientNetConfig),
    /// A transformer sequence classifier.
    TransformerClassifier(TransformerClassifierConfig),
    /// A decoder-only language model.
    CausalLm(CausalLmConfig),
    /// A BERT encoder (Hugging Face compatible).
    Bert(BertConfig),
}

impl ModelConfig {
    /// The model type name as written in config files.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::Cnn(_) => "cnn",
            ModelConfig::VitLite(_) => "vit-lite",
            ModelConfig::Efficientnet(_) => "efficientnet",
            ModelConfig::TransformerClassifier(_) => "transformer-classifier",
            ModelConfig::CausalLm(_) => "causal-lm",
            ModelConfig::Bert(_) => "bert",
        }
    }

    /// What the model takes as input.
    pub fn input_kind(&self) -> InputKind {
        match self {
            ModelConfig::Mlp(_)
            | ModelConfig::Cnn(_)
            | ModelConfig::VitLite(_)
            | ModelConfig::Efficientnet(_) => InputKind::Image,
            _ => InputKind::Tokens,
        }
    }

    /// Checks the config without building anything.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::Mlp(c) => c.validate(),
            ModelConfig::Cnn(c) => c.validate(),
            ModelConfig::VitLite(c) => c.validate(),
            ModelConfig::Efficientnet(c) => c.validate(),
            ModelConfig::TransformerClassifier(c) => c.validate(),
            ModelConfig::CausalLm(c) => c.validate(),
            ModelConfig::Bert(c) => c.validate(),
        }
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<ZooModel> {
        Ok(match self {
            ModelConfig::TransformerClassifier(c) => {
                ZooModel::TransformerClassifier(c.init(device)?)
            }
            ModelConfig::CausalLm(c) => ZooModel::CausalLm(c.init(device)?),
            ModelConfig::Bert(c) => ZooModel::Bert(c.init(device)?),
            _ => ZooModel::Image(self.init_image(device)?),
        })
    }

    /// Builds an image classifier, or explains why this model is not one.
    pub fn init_image(&self, device: &Device) -> Result<ImageModel> {
        Ok(match self {
            ModelConfig::Mlp(c) => ImageModel::Mlp(c.init(device)?),
            ModelConfig::Cnn(c) => ImageModel::Cnn(c.init(device)?),
            ModelConfig::VitLite(c) => ImageModel::VitLite(c.init(device)?),
            ModelConfig::Efficientnet(c) => ImageModel::Efficientnet(c.init(device)?),
            other => {
                return Err(Error::InvalidConfig {
                    model: other.kind().into(),
                    reason: "this model takes token ids, not images".into(),
                });
            }
        })
    }

    /// Whether a training batch of this image model may be split across threads
    /// (`kiln_core::parallel`): its training forward pass draws no random numbers (no dropout)
    /// and mixes no samples (no batch normalisation), so shards compute exactly what the whole
    /// batch would.
    pub fn shardable(&self) -> bool {
        match self {
            ModelConfig::Mlp(c) => c.dropout == 0.0,
            ModelConfig::Cnn(c) => c.dropout == 0.0 && c.blocks.iter().all(|b| !b.batch_norm),
            ModelConfig::VitLite(c) => c.dropout == 0.0,
            _ => false,
        }
    }

    /// Shards of a training step on a batch of `batch_size` samples:
    /// `kiln_core::parallel::shards_for(batch_size)` for a [`shardable`](Self::shardable)
    /// model, else 1.
    pub fn training_shards(&self, batch_size: usize) -> usize {
        if self.shardable() {
            kiln_core::parallel::shards_for(batch_size)
        } else {
            1
        }
    }

    /// Number of classes an image or sequence classifier predicts (vocabulary size for a
    /// language model, hidden size for BERT).
    pub fn num_classes(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.output_size,
            ModelConfig::Cnn(c) => c.num_classes,
            ModelConfig::VitLite(c) => c.num_classes,
            ModelConfig::Efficientnet(c) => c.num_classes,
            ModelConfig::TransformerClassifier(c) => c.num_classes,
            ModelConfig::CausalLm(c) => c.encoder.vocab_size,
            ModelConfig::Bert(c) => c.hidden_size,
        }
    }

    /// Resizes the model's ends to a dataset: an MLP's input to `C·H·W` features and its
    /// output to `classes`; a CNN's or ViT's head to `classes` (their input shape is part of
    /// the architecture and stays). Other models are unchanged.
    pub fn adapt_to(&mut self, chw: [usize; 3], classes: usize) {
        match self {
            ModelConfig::Mlp(c) => {
                c.input_size = chw.iter().product();
                c.output_size = classes;
            }
            ModelConfig::Cnn(c) => c.num_classes = classes,
            ModelConfig::VitLite(c) => c.num_classes = classes,
            ModelConfig::Efficientnet(c) => c.num_classes = classes,
            ModelConfig::TransformerClassifier(c) => c.num_classes = classes,
            ModelConfig::CausalLm(_) | ModelConfig::Bert(_) => {}
        }
    }

    /// Checks that images of `[channels, height, width]` fit the model.
    pub fn check_input(&self, chw: [usize; 3]) -> Result<()> {
        let mismatch = |expected: [usize; 3]| Error::InvalidConfig {
            model: self.kind().into(),
            reason: format!(
                "the model takes {}x{}x{} images but the data has {}x{}x{}",
                expected[0], expected[1], expected[2], chw[0], chw[1], chw[2]
            ),
        };
        match self {
            ModelConfig::Mlp(c) => {
                let features = chw.iter().product::<usize>();
                if features != c.input_size {
                    return Err(Error::InvalidConfig {
                        model: "mlp".into(),
                        reason: format!(
                            "input_size is {} but the data has {}x{}x{} = {features} features per sample",
                            c.input_size, chw[0], chw[1], chw[2]
                        ),
                    });
                }
                Ok(())
            }
            ModelConfig::Cnn(c) if c.input != chw => Err(mismatch(c.input)),
            ModelConfig::VitLite(c) if c.input != chw => Err(mismatch(c.input)),
            // Any image size works ("same" padding); the channels must match.
            ModelConfig::Efficientnet(c) if c.input[0] != chw[0] => Err(mismatch(c.input)),
            ModelConfig::Cnn(_) | ModelConfig::VitLite(_) | ModelConfig::Efficientnet(_) => Ok(()),
            other => Err(Error::InvalidConfig {
                model: other.kind().into(),
                reason: "this model takes token ids, not images".into(),
            }),
        }
    }

    /// Parses a TOML config.
    pub fn from_toml(text: &str) -> std::result::Result<Self, String> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Parses a JSON config.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let config: ModelConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Reads a config from a `.toml` or `.json` file (by extension; anything else is tried as
    /// TOML).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            Self::from_json(&text)
        } else {
            Self::from_toml(&text)
        };
        parsed.map_err(|reason| Error::ConfigFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("model configs always serialise to TOML")
    }
}

/// A built image classifier (what `kiln train` trains today).
// A model is built once and moved rarely; the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageModel {
    /// A multi-layer perceptron.
    Mlp(Mlp),
    /// A convolutional classifier.
    Cnn(Cnn),
    /// A small Vision Transformer.
    VitLite(VitLite),
    /// An EfficientNet(-Lite).
    Efficientnet(EfficientNet),
}

impl ImageModel {
    /// Module path (inside this enum) of the classification layer: what fine-tuning replaces
    /// with a new head and keeps trainable when the backbone is frozen.
    pub fn head_path(&self) -> &'static str {
        match self {
            ImageModel::Mlp(_) => "Mlp.output",
            ImageModel::Cnn(_) => "Cnn.output",
            ImageModel::VitLite(_) => "VitLite.head",
            ImageModel::Efficientnet(_) => "Efficientnet.classifier",
        }
    }

    /// The same model with a freshly initialised classification layer of the same shape (a
    /// "new head" for fine-tuning on other classes).
    pub fn reset_head(self) -> Self {
        fn fresh(layer: &burn::nn::Linear) -> burn::nn::Linear {
            let [d_in, d_out] = layer.weight.dims();
            burn::nn::LinearConfig::new(d_in, d_out)
                .with_bias(layer.bias.is_some())
                .init(&layer.weight.device())
        }
        match self {
            ImageModel::Mlp(mut m) => {
                m.output = fresh(&m.output);
                ImageModel::Mlp(m)
            }
            ImageModel::Cnn(mut m) => {
                m.output = fresh(&m.output);
                ImageModel::Cnn(m)
            }
            ImageModel::VitLite(mut m) => {
                m.head = fresh(&m.head);
                ImageModel::VitLite(m)
            }
            ImageModel::Efficientnet(mut m) => {
                m.classifier = fresh(&m.classifier);
                ImageModel::Efficientnet(m)
            }
        }
    }
}

impl Classifier for ImageModel {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            ImageModel::Mlp(m) => m.forward(images),
            ImageModel::Cnn(m) => m.forward(images),
            ImageModel::VitLite(m) => m.forward(images),
            ImageModel::Efficientnet(m) => m.forward(images),
        }
    }

    fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        match self {
            ImageModel::Mlp(m) => m.forward_features(images),
            ImageModel::Cnn(m) => m.forward_features(images),
            ImageModel::VitLite(m) => m.forward_features(images),
            ImageModel::Efficientnet(m) => m.forward_features(images),
        }
    }

    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        match self {
            ImageModel::Mlp(m) => m.summary(name, input_shape),
            ImageModel::Cnn(m) => m.summary(name, input_shape),
            ImageModel::VitLite(m) => m.summary(name, input_shape),
            ImageModel::Efficientnet(m) => m.summary(name, input_shape),
        }
    }
}

/// Any built zoo model.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ZooModel {
    /// An image classifier.
    Image(ImageModel),
    /// A transformer sequence classifier.
    TransformerClassifier(TransformerClassifier),
    /// A decoder-only language model.
    CausalLm(CausalLm),
    /// A BERT encoder.
    Bert(BertEncoder),
}

impl ZooModel {
    /// Summary for `input_shape`: `[batch, channels, height, width]` for image models,
    /// `[batch, sequence]` for token models.
    pub fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        match self {
            ZooModel::Image(m) => m.summary(name, input_shape),
            ZooModel::TransformerClassifier(m) => m.summary(name, input_shape),
            ZooModel::CausalLm(m) => m.summary(name, input_shape),
            ZooModel::Bert(m) => m.summary(name, input_shape),
        }
    }
}

/// A named preset of the zoo.
#[derive(Clone, Debug)]
pub struct Preset {
    /// The name used by the CLI (`kiln train mlp`).
    pub name: &'static str,
    /// One line for `kiln models`.
    pub description: &'static str,
    /// Input of one sample: `[channels, height, width]` or `[sequence]`.
    pub input: Vec<usize>,
    /// The dataset the preset is made for.
    pub dataset: &'static str,
    /// The model config.
    pub config: ModelConfig,
}

impl Preset {
    /// Input shape for summaries: batch 1 then [`Preset::input`].
    pub fn summary_input(&self) -> Vec<usize> {
        let mut shape = vec![1];
        shape.extend_from_slice(&self.input);
        shape
    }
}

fn encoder(
    vocab_size: usize,
    max_len: usize,
    d_model: usize,
    n_heads: usize,
    n_layers: usize,
    d_ff: usize,
) -> EncoderConfig {
    EncoderConfig {
        vocab_size,
        max_len,
        d_model,
        n_heads,
        n_layers,
        d_ff,
        dropout: 0.1,
        norm_first: true,
        positions: Positions::Learned,
        layer_norm_eps: 1e-5,
    }
}

/// All presets, in the order `kiln models` lists them.
pub fn presets() -> Vec<Preset> {
    vec![
        Preset {
            name: "mlp",
            description: "MLP 64-128-64-10 (ReLU, dropout 0.1) for 8x8 UCI digits",
            input: vec![1, 8, 8],
            dataset: "digits",
            config: ModelConfig::Mlp(MlpConfig::new(64, &[128, 64], 10).with_dropout(0.1)),
        },
        Preset {
            name: "mlp-mnist",
            description: "MLP 784-256-128-10 (ReLU) for 28x28 MNIST (the reference benchmark's MLP)",
            input: vec![1, 28, 28],
            dataset: "mnist",
            config: ModelConfig::Mlp(MlpConfig::new(784, &[256, 128], 10)),
        },
        Preset {
            name: "lenet-300-100",
            description: "LeNet-300-100 MLP (784-300-100-10, ReLU) for 28x28 MNIST, as in Han et al. 2015",
            input: vec![1, 28, 28],
            dataset: "mnist",
            config: ModelConfig::Mlp(MlpConfig::new(784, &[300, 100], 10)),
        },
        Preset {
            name: "lenet5",
            description: "LeNet-5 (conv 6-16 5x5, dense 120-84-10, ReLU, max pool) for 28x28 MNIST",
            input: vec![1, 28, 28],
            dataset: "mnist",
            config: ModelConfig::Cnn(CnnConfig::lenet5()),
        },
        Preset {
            name: "cnn-small",
            description: "CNN: conv 32-64 3x3 + max pool, dense 1600-128-10, for 28x28 MNIST (the reference benchmark's CNN)",
            input: vec![1, 28, 28],
            dataset: "mnist",
            config: ModelConfig::Cnn(CnnConfig::cnn_small()),
        },
        Preset {
            name: "vit-lite",
            description: "ViT-lite: 28x28x1, patch 4, dim 64, depth 4, heads 4, MLP 128 (the reference benchmark's ViT)",
            input: vec![1, 28, 28],
            dataset: "mnist",
            config: ModelConfig::VitLite(VitConfig::vit_lite()),
        },
        Preset {
            name: "vit-lite-digits",
            description: "ViT-lite for 8x8 UCI digits: patch 2 (16 patches), dim 64, depth 4, heads 4, MLP 128",
            input: vec![1, 8, 8],
            dataset: "digits",
            config: ModelConfig::VitLite(VitConfig::vit_lite_digits()),
        },
        Preset {
            name: "efficientnet-lite0",
            description: "EfficientNet-Lite0 (MBConv, ReLU6, no SE) for 224x224 RGB, 1000 ImageNet classes; pretrained weights load with kiln-transfer",
            input: vec![3, 224, 224],
            dataset: "imagenet",
            config: ModelConfig::Efficientnet(EfficientNetConfig::lite0()),
        },
        Preset {
            name: "transformer-classifier",
            description: "Transformer text classifier: WordPiece vocab 30,522, 128 tokens, d 128, 2 layers, 4 heads, mean pooling, 2 classes",
            input: vec![128],
            dataset: "fine-foods-reviews",
            config: ModelConfig::TransformerClassifier(TransformerClassifierConfig {
                encoder: encoder(30522, 128, 128, 4, 2, 256),
                num_classes: 2,
                pooling: Pooling::Mean,
            }),
        },
        Preset {
            name: "char-lm",
            description: "Character-level causal LM: vocab 128, context 128, d 128, 4 layers, 4 heads (pre-norm)",
            input: vec![128],
            dataset: "jane-austen",
            config: ModelConfig::CausalLm(CausalLmConfig {
                encoder: encoder(128, 128, 128, 4, 4, 512),
            }),
        },
        Preset {
            name: "bert-minilm",
            description: "BERT encoder shaped as all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, vocab 30,522",
            input: vec![128],
            dataset: "-",
            config: ModelConfig::Bert(BertConfig::minilm_l6()),
        },
    ]
}

/// The preset called `name`, or an error listing the available ones.
pub fn preset(name: &str) -> Result<Preset> {
    let all = presets();
    all.iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            available: all.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_lists_presets() {
        let err = preset("resnet-9000").unwrap_err().to_string();
        assert!(err.starts_with("unknown model `resnet-9000`; available models: mlp, mlp-mnist, lenet-300-100, lenet5, cnn-small, vit-lite"), "{err}");
    }

    #[test]
    fn config_round_trips_through_toml_and_json() {
        for p in presets() {
            let toml_text = p.config.to_toml();
            assert_eq!(
                ModelConfig::from_toml(&toml_text).unwrap(),
                p.config,
                "{}",
                p.name
            );
            let json = serde_json::to_string(&p.config).unwrap();
            assert_eq!(
                ModelConfig::from_json(&json).unwrap(),
                p.config,
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn toml_config_file_builds_a_model() {
        let text = "model = \"mlp\"\ninput_size = 64\nhidden_sizes = [32]\noutput_size = 10\nactivation = \"gelu\"\n";
        let config = ModelConfig::from_toml(text).unwrap();
        let model = config.init(&Device::flex()).unwrap();
        assert_eq!(model.num_params(), 64 * 32 + 32 + 32 * 10 + 10);
        let text = "model = \"vit-lite\"\ninput = [1, 8, 8]\npatch = 4\ndim = 32\ndepth = 1\nheads = 2\nmlp_dim = 64\nnum_classes = 10\n";
        assert!(
            ModelConfig::from_toml(text)
                .unwrap()
                .init(&Device::flex())
                .is_ok()
        );
    }

    #[test]
    fn bad_config_files_are_clear_errors() {
        let err = ModelConfig::from_toml(
            "model = \"mlp\"\ninput_size = 64\nhidden_sizes = [32]\noutput_size = 10\nwidth = 3\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `width`"), "{err}");
        let err = ModelConfig::from_toml("model = \"transformer-xxl\"\n").unwrap_err();
        assert!(err.contains("unknown variant `transformer-xxl`"), "{err}");
        let err = ModelConfig::from_toml(
            "model = \"mlp\"\ninput_size = 0\nhidden_sizes = []\noutput_size = 10\n",
        )
        .unwrap_err();
        assert!(err.contains("input_size must be at least 1"), "{err}");
        let err = ModelConfig::from_toml("model = \"vit-lite\"\ninput = [1, 28, 28]\npatch = 3\ndim = 64\ndepth = 1\nheads = 4\nmlp_dim = 64\nnum_classes = 10\n").unwrap_err();
        assert!(
            err.contains("patch size 3 does not divide the 28x28 image"),
            "{err}"
        );
        let err = ModelConfig::from_file(Path::new("/nonexistent/model.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.toml"), "{err}");
    }

    #[test]
    fn check_input_names_the_mismatch() {
        let p = preset("mlp").unwrap();
        assert!(p.config.check_input([1, 8, 8]).is_ok());
        let err = p.config.check_input([1, 28, 28]).unwrap_err().to_string();
        assert!(
            err.contains("input_size is 64 but the data has 1x28x28 = 784"),
            "{err}"
        );
        let err = preset("vit-lite")
            .unwrap()
            .config
            .check_input([1, 8, 8])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("takes 1x28x28 images but the data has 1x8x8"),
            "{err}"
        );
        let err = preset("char-lm")
            .unwrap()
            .config
            .init_image(&Device::flex())
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes token ids, not images"), "{err}");
    }
}

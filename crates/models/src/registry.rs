//! The zoo's registry: names → config presets → built models.
//!
//! ```
//! use kiln_models::{preset, Classifier};
//! let device = burn::tensor::Device::flex();
//! let p = preset("mlp").unwrap();
//! let model = p.config.init(&device).unwrap();
//! let summary = model.summary(p.name, &p.summary_input()).unwrap();
//! assert_eq!(summary.total_params, burn::module::Module::num_params(&model));
//! ```

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_core::ModelSummary;
use serde::{Deserialize, Serialize};

use crate::{Classifier, Error, Mlp, MlpConfig, Result};

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
}

impl ModelConfig {
    /// The model type name (`mlp`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Mlp(_) => "mlp",
        }
    }

    /// Checks the config without building anything.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::Mlp(c) => c.validate(),
        }
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<ZooModel> {
        Ok(match self {
            ModelConfig::Mlp(c) => ZooModel::Mlp(c.init(device)?),
        })
    }

    /// Number of classes the model predicts.
    pub fn num_classes(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.output_size,
        }
    }

    /// Checks that images of `[channels, height, width]` fit the model.
    pub fn check_input(&self, chw: [usize; 3]) -> Result<()> {
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

/// A built zoo model.
#[derive(Module, Debug)]
pub enum ZooModel {
    /// A multi-layer perceptron.
    Mlp(Mlp),
}

impl Classifier for ZooModel {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            ZooModel::Mlp(m) => m.forward(images),
        }
    }

    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        match self {
            ZooModel::Mlp(m) => m.summary(name, input_shape),
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
    /// Input the preset is made for: `[channels, height, width]`.
    pub input: [usize; 3],
    /// The dataset the preset trains on by default.
    pub dataset: &'static str,
    /// The model config.
    pub config: ModelConfig,
}

impl Preset {
    /// Input shape for summaries: batch 1 then [`Preset::input`].
    pub fn summary_input(&self) -> Vec<usize> {
        vec![1, self.input[0], self.input[1], self.input[2]]
    }
}

/// All presets, in the order `kiln models` lists them.
pub fn presets() -> Vec<Preset> {
    vec![
        Preset {
            name: "mlp",
            description: "MLP 64-128-64-10 (ReLU, dropout 0.1) for 8x8 UCI digits",
            input: [1, 8, 8],
            dataset: "digits",
            config: ModelConfig::Mlp(MlpConfig::new(64, &[128, 64], 10).with_dropout(0.1)),
        },
        Preset {
            name: "lenet-300-100",
            description: "LeNet-300-100 MLP (784-300-100-10, ReLU) for 28x28 MNIST, as in Han et al. 2015",
            input: [1, 28, 28],
            dataset: "mnist",
            config: ModelConfig::Mlp(MlpConfig::new(784, &[300, 100], 10)),
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
        assert_eq!(
            err,
            "unknown model `resnet-9000`; available models: mlp, lenet-300-100"
        );
    }

    #[test]
    fn config_round_trips_through_toml_and_json() {
        for p in presets() {
            let toml_text = p.config.to_toml();
            assert_eq!(ModelConfig::from_toml(&toml_text).unwrap(), p.config);
            let json = serde_json::to_string(&p.config).unwrap();
            assert_eq!(ModelConfig::from_json(&json).unwrap(), p.config);
        }
    }

    #[test]
    fn toml_config_file_builds_a_model() {
        let text = "model = \"mlp\"\ninput_size = 64\nhidden_sizes = [32]\noutput_size = 10\nactivation = \"gelu\"\n";
        let config = ModelConfig::from_toml(text).unwrap();
        let model = config.init(&Device::flex()).unwrap();
        assert_eq!(model.num_params(), 64 * 32 + 32 + 32 * 10 + 10);
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
    }
}

//! The facade crate exposes every part under one name, and the parts work together.

use kiln::burn::module::Module;

#[test]
fn facade_reaches_every_crate() {
    let device = kiln::core::parse_device("cpu").unwrap();
    let preset = kiln::models::preset("mlp").unwrap();
    let model = preset.config.init(&device).unwrap();
    let summary = model.summary(preset.name, &preset.summary_input()).unwrap();
    assert_eq!(summary.total_params, model.num_params());
    let data = kiln::data::load_split(preset.dataset, kiln::core::Seed(1)).unwrap();
    assert_eq!(data.train.shape().to_vec(), preset.input);
    let mut config = kiln::train::TrainConfig::for_preset("mlp").unwrap();
    assert_eq!(config.model, preset.config);
    // TrainConfig.optim is kiln-optim's type, reachable through the facade.
    config.optim = kiln::optim::OptimConfig {
        optimizer: kiln::optim::OptimizerConfig::sgd_momentum(0.9, false),
        ..kiln::optim::OptimConfig::default()
    };
    config.validate().unwrap();
    let _ = kiln::compress::Scope::Global;
}

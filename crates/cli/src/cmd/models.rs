//! `kiln models`: List the model zoo's presets.

use super::prelude::*;

pub(crate) fn run() -> Result<()> {
    let device = DeviceSpec::Flex.device();
    let mut rows = vec![[
        "name".to_string(),
        "params".into(),
        "input".into(),
        "dataset".into(),
        "description".into(),
    ]];
    for p in kiln_models::presets() {
        let params = burn::module::Module::num_params(&p.config.init(&device)?);
        let input: Vec<String> = p.input.iter().map(|d| d.to_string()).collect();
        rows.push([
            p.name.to_string(),
            kiln_core::summary::thousands(params as u64),
            input.join("x"),
            p.dataset.to_string(),
            p.description.to_string(),
        ]);
    }
    let width = |col: usize| rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    for r in &rows {
        println!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
            r[0], r[1], r[2], r[3], r[4]
        );
    }
    Ok(())
}

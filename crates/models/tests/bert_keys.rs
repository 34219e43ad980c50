//! `BertEncoder` maps one-to-one onto the tensors of a real Hugging Face BERT checkpoint
//! (all-MiniLM-L6-v2 from the project's data dir): same set of tensors, same shapes (Linear
//! weights transposed), no reshaping.

use std::collections::BTreeMap;
use std::io::Read;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use kiln_models::bert::{BertConfig, map_hf_key};

#[derive(Default)]
struct Paths(BTreeMap<String, Vec<usize>>, Vec<String>);

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.1.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(self.1.join("."), param.val().dims().to_vec());
    }
}

/// Reads the JSON header of a safetensors file: key → shape.
fn safetensors_shapes(path: &std::path::Path) -> BTreeMap<String, Vec<usize>> {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; set KILN_DATA_DIR to the folder holding models/",
            path.display()
        )
    });
    let mut len = [0u8; 8];
    file.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    file.read_exact(&mut header).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&header).unwrap();
    json.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (k.clone(), shape)
        })
        .collect()
}

#[test]
fn minilm_checkpoint_maps_one_to_one() {
    let dir = kiln_data_dir().join("models/all-MiniLM-L6-v2");
    let config =
        BertConfig::from_hf_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config, BertConfig::minilm_l6());
    let model = config.init(&Device::flex()).unwrap();
    let mut kiln = Paths::default();
    model.visit(&mut kiln);

    let hf = safetensors_shapes(&dir.join("model.safetensors"));
    let mut covered = BTreeMap::new();
    let mut unmapped = Vec::new();
    for (key, shape) in &hf {
        let Some(path) = map_hf_key(key) else {
            unmapped.push(key.clone());
            continue;
        };
        let kiln_shape = kiln
            .0
            .get(&path)
            .unwrap_or_else(|| panic!("{key} -> {path}: no such Kiln parameter"));
        let is_linear_weight = path.ends_with(".weight") && !path.contains("embeddings.");
        let expected: Vec<usize> = if is_linear_weight {
            shape.iter().rev().copied().collect()
        } else {
            shape.clone()
        };
        assert_eq!(kiln_shape, &expected, "{key} -> {path}");
        assert!(
            covered.insert(path.clone(), key.clone()).is_none(),
            "{path} mapped twice"
        );
    }
    // Everything the model has comes from the checkpoint...
    let missing: Vec<&String> = kiln
        .0
        .keys()
        .filter(|p| !covered.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "Kiln parameters without a checkpoint tensor: {missing:?}"
    );
    // ...and the only checkpoint tensors left over are the position-id constant and the pooler.
    assert_eq!(
        unmapped,
        vec![
            "embeddings.position_ids",
            "pooler.dense.bias",
            "pooler.dense.weight"
        ]
    );
    assert_eq!(covered.len(), 101);
}

fn kiln_data_dir() -> std::path::PathBuf {
    std::env::var_os("KILN_DATA_DIR")
        .map(std::path::PathBuf::from)
        .expect("KILN_DATA_DIR must point at the real datasets (see .cargo/config.toml)")
}

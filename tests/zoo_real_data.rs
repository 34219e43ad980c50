//! Zoo models that have no training recipe of their own still learn on real data.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kiln::burn;
use kiln::data::text::{LabelledTexts, TextTokenizer};
use kiln::models::ZooModel;
use kiln::models::bert::BertEncoder;

#[derive(Module, Debug)]
struct BertWithHead {
    bert: BertEncoder,
    head: Linear,
}

impl BertWithHead {
    fn forward(&self, ids: Tensor<2, Int>, mask_pad: Tensor<2, Bool>) -> Tensor<2> {
        let hidden = self.bert.forward(ids, None, Some(mask_pad));
        let [b, _, d] = hidden.dims();
        self.head
            .forward(hidden.slice([0..b, 0..1, 0..d]).reshape([b, d]))
    }
}

#[test]
fn bert_minilm_preset_takes_training_steps_on_reviews() {
    let data_dir = kiln::data::data_dir::resolve(None);
    let device = Device::flex().autodiff();
    kiln::core::Seed(5).apply(&device);
    // The preset's architecture; dropout off so that a handful of steps on one batch is a
    // clean signal.
    let kiln::models::ModelConfig::Bert(mut config) =
        kiln::models::preset("bert-minilm").unwrap().config
    else {
        panic!("bert-minilm is a BERT config")
    };
    config.hidden_dropout_prob = 0.0;
    let ZooModel::Bert(bert) = kiln::models::ModelConfig::Bert(config)
        .init(&device)
        .unwrap()
    else {
        panic!("a BERT config builds a BERT encoder")
    };
    let mut model = BertWithHead {
        bert,
        head: LinearConfig::new(384, 2).init(&device),
    };

    // 16 real reviews, WordPiece-tokenized to 32 tokens.
    let (train, _) = LabelledTexts::fine_food_reviews(&data_dir).unwrap();
    let tokenizer =
        TextTokenizer::from_file(&data_dir.join("models/all-MiniLM-L6-v2/tokenizer.json")).unwrap();
    let (n, len) = (16, 32);
    let (mut ids, mut pad) = (Vec::new(), Vec::new());
    for text in &train.texts[..n] {
        let enc = tokenizer.encode_padded(text, len).unwrap();
        ids.extend(enc.ids.iter().map(|&i| i64::from(i)));
        pad.extend(enc.attention.iter().map(|&a| !a));
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, len]), &device);
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [n, len]), &device);
    let labels: Vec<i64> = train.labels[..n].iter().map(|&l| l as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &device);

    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut losses = Vec::new();
    for _ in 0..5 {
        let logits = model.forward(ids.clone(), pad.clone());
        assert_eq!(logits.dims(), [n, 2]);
        let loss = loss_fn.forward(logits, targets.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(2e-5, model, grads);
    }
    eprintln!("bert-minilm losses: {losses:?}");
    assert!(losses[4] < losses[0], "losses {losses:?} do not fall");
}

//! Knowledge distillation: the loss against values computed independently, a small student
//! distilled from a trained teacher on real data, and clear errors for teachers that do not fit.

use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_train::{Distill, TrainConfig, TrainOptions, distillation_loss, train};

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn the_distillation_loss_is_hintons() {
    let device = Device::flex();
    let student = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]];
    let teacher = [[0.0, 1.0, 0.5], [3.0, -1.0, 0.0]];
    let labels = [0i64, 1];
    let (t, alpha) = (2.0, 0.7);
    let s_t = Tensor::<2>::from_data(
        TensorData::new(student.concat().iter().map(|v| *v as f32).collect(), [2, 3]),
        &device,
    );
    let t_t = Tensor::<2>::from_data(
        TensorData::new(teacher.concat().iter().map(|v| *v as f32).collect(), [2, 3]),
        &device,
    );
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [2]), &device);
    let got: Vec<f32> = distillation_loss(s_t, t_t, y, t, alpha)
        .into_data()
        .try_to_vec()
        .unwrap();
    for i in 0..2 {
        let soft = |z: &[f64; 3]| softmax(&z.map(|v| v / t));
        let (p, q) = (soft(&teacher[i]), soft(&student[i]));
        let kl: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        let ce = -softmax(&student[i])[labels[i] as usize].ln();
        let want = alpha * t * t * kl + (1.0 - alpha) * ce;
        assert!(
            (got[i] as f64 - want).abs() < 1e-5,
            "{i}: {} vs {want}",
            got[i]
        );
    }
}

#[test]
fn a_small_student_learns_from_its_teacher() {
    let teacher = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 8;
    let t_report = train(&config, teacher.path(), &TrainOptions::quiet()).unwrap();

    let mut student = config.clone();
    let kiln_models::ModelConfig::Mlp(m) = &mut student.model else {
        panic!("an MLP")
    };
    m.hidden_sizes = vec![16];
    student.distill = Some(Distill {
        teacher: teacher.path().to_path_buf(),
        temperature: 4.0,
        alpha: 0.9,
        feature_weight: 0.0,
    });
    let out = tempfile::tempdir().unwrap();
    let report = train(&student, out.path(), &TrainOptions::quiet()).unwrap();
    assert!(
        report.params < t_report.params / 2,
        "{} vs {}",
        report.params,
        t_report.params
    );
    assert!(report.test.accuracy > 0.85, "{}", report.test.accuracy);
    // The run folder records the teacher.
    let saved = TrainConfig::load(&out.path().join("config.toml")).unwrap();
    assert_eq!(saved.distill, student.distill);

    // Feature distillation: a projection from the student's 16 features to the teacher's
    // trains with it (the saved model is the student alone).
    let mut hinted = student.clone();
    hinted.distill = Some(Distill {
        feature_weight: 1.0,
        ..student.distill.clone().unwrap()
    });
    let hinted_dir = tempfile::tempdir().unwrap();
    let hinted_report = train(&hinted, hinted_dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(hinted_report.params, report.params);
    assert!(
        hinted_report.test.accuracy > 0.85,
        "{}",
        hinted_report.test.accuracy
    );

    // A teacher with other classes, bad temperature and alpha are named.
    let iris = tempfile::tempdir().unwrap();
    let mut other = TrainConfig::for_preset("mlp").unwrap();
    other.dataset = "iris".into();
    other.adapt_model = true;
    other.recipe.epochs = 1;
    train(&other, iris.path(), &TrainOptions::quiet()).unwrap();
    let mut wrong = student.clone();
    wrong.distill = Some(Distill {
        teacher: iris.path().to_path_buf(),
        temperature: 4.0,
        alpha: 0.5,
        feature_weight: 0.0,
    });
    let err = train(&wrong, out.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("3 classes"), "{err}");
    for (t, a, word) in [(0.0, 0.5, "temperature"), (2.0, 1.5, "alpha")] {
        let mut bad = student.clone();
        bad.distill = Some(Distill {
            teacher: teacher.path().to_path_buf(),
            temperature: t,
            alpha: a,
            feature_weight: 0.0,
        });
        let err = train(&bad, out.path(), &TrainOptions::quiet()).unwrap_err();
        assert!(err.to_string().contains(word), "{err}");
    }
}

#[test]
fn fake_quantization_puts_weights_on_the_grid_and_passes_gradients() {
    use burn::module::Module;
    let device = Device::flex().autodiff();
    let model = kiln_models::preset("mlp")
        .unwrap()
        .config
        .init_image(&device)
        .unwrap();
    let fq = kiln_train::fake_quantized(model.clone(), 4);
    let (kiln_models::ImageModel::Mlp(m), kiln_models::ImageModel::Mlp(f)) = (&model, &fq) else {
        panic!("MLPs")
    };
    let w: Vec<f32> = f.hidden[0].weight.val().into_data().try_to_vec().unwrap();
    let max = m.hidden[0].weight.val().abs().max().into_scalar::<f32>();
    // 4 bits, symmetric: at most 15 levels, multiples of max / 7.
    let mut levels: Vec<i32> = w.iter().map(|v| (v / (max / 7.0)).round() as i32).collect();
    for (v, l) in w.iter().zip(&levels) {
        assert!((v - *l as f32 * max / 7.0).abs() < 1e-5, "{v} off the grid");
    }
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() <= 15, "{levels:?}");
    // Straight-through: the float weights receive the gradient of the quantized forward pass.
    let x = Tensor::<4>::ones([2, 1, 8, 8], &device);
    let loss = kiln_models::Classifier::forward(&fq, x).sum();
    let grads = loss.backward();
    let g = m.hidden[0]
        .weight
        .val()
        .grad(&grads)
        .expect("a gradient for the float weight");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
    let _ = model.num_params();
}

#[test]
fn a_student_inherits_the_teachers_data_and_budget_but_not_its_groups() {
    let teacher = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 7;
    config.recipe.seed = 9;
    config.augment = Some("rotate=10".into());
    config.recipe.early_stopping = Some(kiln_train::EarlyStopping::new(2, 0.0));
    config.recipe.optim.groups = vec![kiln_optim::GroupRule::frozen("model.Mlp.hidden.0")];
    config.save(&teacher.path().join("config.toml")).unwrap();
    let distill = Distill {
        teacher: "ignored".into(),
        temperature: 4.0,
        alpha: 0.9,
        feature_weight: 0.0,
    };
    let student = TrainConfig::distill_from(teacher.path(), "lenet5", distill.clone()).unwrap();
    assert!(
        student.recipe.optim.groups.is_empty(),
        "{:?}",
        student.recipe.optim.groups
    );
    assert_eq!(
        student.recipe.optim.optimizer,
        config.recipe.optim.optimizer
    );
    assert_eq!(
        (
            student.dataset.as_str(),
            student.recipe.seed,
            student.recipe.epochs
        ),
        ("digits", 9, 7)
    );
    assert_eq!(student.data, config.data);
    assert_eq!(student.name, "lenet5-distilled");
    assert!(student.adapt_model);
    assert!(student.augment.is_none() && student.recipe.early_stopping.is_none());
    let d = student.distill.as_ref().unwrap();
    assert_eq!(d.teacher, teacher.path());
    assert_eq!((d.temperature, d.alpha), (4.0, 0.9));
    // A bad distillation setting or a missing teacher is an error, not a run.
    let bad = Distill {
        alpha: 1.5,
        ..distill.clone()
    };
    assert!(TrainConfig::distill_from(teacher.path(), "mlp", bad).is_err());
    let err = TrainConfig::distill_from(&teacher.path().join("nope"), "mlp", distill).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

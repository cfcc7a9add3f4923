//! The model card `README.md` of `best/`, in the Hugging Face Hub's format (what
//! transformers' `Trainer` writes): YAML metadata (`tags`, `base_model` when
//! fine-tuned, `datasets` when the pack names them, `model-index` with WER and CER per
//! evaluated split), then the training hyperparameters as a list and the table of the
//! evaluations (Training Loss | Epoch | Step | Validation Loss | Wer | Cer).
//!
//! Written each time `best/` is saved (the eval split's figures so far) and again at
//! the end of the run with the best model's results on the final splits.

use std::path::Path;

use crate::config::TrainConfig;
use crate::metrics::MetricsRecord;

/// WER and CER of the model on one split.
#[derive(Debug, Clone, PartialEq)]
pub struct CardResult {
    /// The split's name.
    pub split: String,
    /// Word error rate (fraction).
    pub wer: f64,
    /// Character error rate (fraction).
    pub cer: f64,
}

/// What the card says besides the configuration.
pub struct CardFacts<'a> {
    /// The run's `metrics.jsonl` records (the evaluations table).
    pub records: &'a [MetricsRecord],
    /// The model's results, one per evaluated split.
    pub results: &'a [CardResult],
    /// `model_type` of the model (`wav2vec2`, `hubert`, `whisper`).
    pub model_type: &'a str,
    /// The task trained (`ctc` or `seq2seq`), a tag of the card.
    pub task: &'a str,
}

/// Write `dir/README.md`.
pub fn write(dir: &Path, config: &TrainConfig, facts: &CardFacts) -> std::io::Result<()> {
    std::fs::write(dir.join("README.md"), render(config, facts))
}

/// The card's text.
pub fn render(config: &TrainConfig, facts: &CardFacts) -> String {
    let mut s = front_matter(config, facts);
    let name = run_name(config);
    s.push_str(&format!("\n# {name}\n\n"));
    s.push_str(&format!(
        "This model is {} trained with CTC by asr-train on {}.\n",
        base_description(config),
        data_description(config)
    ));
    if !facts.results.is_empty() {
        s.push_str("It achieves the following results:\n");
        for r in facts.results {
            s.push_str(&format!(
                "- {}: Wer {}, Cer {}\n",
                r.split,
                number(r.wer),
                number(r.cer)
            ));
        }
    }
    s.push_str("\n## Training procedure\n\n### Training hyperparameters\n\n");
    s.push_str("The following hyperparameters were used during training:\n");
    for (key, value) in hyperparameters(config) {
        s.push_str(&format!("- {key}: {value}\n"));
    }
    s.push_str("\n### Training results\n\n");
    s.push_str(&results_table(facts.records));
    s.push_str(&format!(
        "\n### Framework versions\n\n- asr-train {}\n- libtorch (tch {})\n",
        env!("CARGO_PKG_VERSION"),
        "0.24"
    ));
    s
}

/// The run folder's name, the card's model name.
pub fn run_name(config: &TrainConfig) -> String {
    config
        .out
        .file_name()
        .map_or_else(|| "asr-train-model".into(), |n| n.to_string_lossy().into())
}

/// The `--model` given, when it names weights to start from (a folder or a Hub id,
/// without its `@revision`), not a preset or a config.json (random weights).
pub fn base_model(config: &TrainConfig) -> Option<&str> {
    let spec = config.model.as_str();
    let random = asr_model::Preset::from_name(spec).is_some()
        || crate::whisper::is_preset(spec)
        || spec.ends_with(".json");
    if random || spec.is_empty() {
        return None;
    }
    match spec.rsplit_once('@') {
        Some((id, _)) if !Path::new(spec).exists() && !id.is_empty() => Some(id),
        _ => Some(spec),
    }
}

fn base_description(config: &TrainConfig) -> String {
    match base_model(config) {
        Some(base) => format!("a fine-tuned version of `{base}`"),
        None => format!("a `{}` model from random weights", config.model),
    }
}

fn data_description(config: &TrainConfig) -> String {
    match &config.shards {
        Some(dir) => format!(
            "the `{}` split(s) of the shards in `{}`",
            config.train_split,
            dir.display()
        ),
        None => format!("the `{}` split(s)", config.train_split),
    }
}

/// The dataset ids the pack's `manifest.json` names (`"datasets": [...]` or
/// `"dataset": "..."`), none when it names none or cannot be read.
fn datasets(config: &TrainConfig) -> Vec<String> {
    let Some(dir) = &config.shards else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
        return Vec::new();
    };
    let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    match (&manifest["datasets"], &manifest["dataset"]) {
        (serde_json::Value::Array(ids), _) => ids
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        (_, serde_json::Value::String(id)) => vec![id.clone()],
        _ => Vec::new(),
    }
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn front_matter(config: &TrainConfig, facts: &CardFacts) -> String {
    let mut y = String::from("---\nlibrary_name: transformers\n");
    if let Some(base) = base_model(config) {
        y.push_str(&format!("base_model: {}\n", quoted(base)));
    }
    y.push_str("pipeline_tag: automatic-speech-recognition\ntags:\n");
    for tag in [
        "automatic-speech-recognition",
        facts.task,
        facts.model_type,
        "asr-train",
    ] {
        y.push_str(&format!("- {}\n", quoted(tag)));
    }
    let datasets = datasets(config);
    if !datasets.is_empty() {
        y.push_str("datasets:\n");
        for d in &datasets {
            y.push_str(&format!("- {}\n", quoted(d)));
        }
    }
    y.push_str("metrics:\n- wer\n- cer\n");
    y.push_str(&format!(
        "model-index:\n- name: {}\n  results:\n",
        quoted(&run_name(config))
    ));
    if facts.results.is_empty() {
        y.pop();
        y.push_str(" []\n");
    }
    let data_name = config
        .shards
        .as_ref()
        .and_then(|d| d.file_name())
        .map_or_else(|| "shards".to_string(), |n| n.to_string_lossy().into());
    let data_type = datasets
        .first()
        .cloned()
        .unwrap_or_else(|| data_name.clone());
    for r in facts.results {
        y.push_str(&format!(
            "  - task:\n      type: automatic-speech-recognition\n      name: Automatic Speech Recognition\n    \
             dataset:\n      name: {}\n      type: {}\n      split: {}\n    metrics:\n    \
             - type: wer\n      value: {}\n      name: Wer\n    - type: cer\n      value: {}\n      name: Cer\n",
            quoted(&format!("{data_name} {}", r.split)),
            quoted(&data_type),
            quoted(&r.split),
            yaml_number(r.wer),
            yaml_number(r.cer)
        ));
    }
    y.push_str("---\n");
    y
}

/// A number YAML reads back as the same float (`.nan`, `.inf` for the others).
fn yaml_number(v: f64) -> String {
    if v.is_nan() {
        ".nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        format!("{v:?}")
    }
}

/// A figure of the card's text and table: 4 significant decimals, no trailing zeros.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The hyperparameter list, in the Trainer card's names where there is one.
fn hyperparameters(c: &TrainConfig) -> Vec<(&'static str, String)> {
    let opt = |v: Option<String>, default: &str| v.unwrap_or_else(|| default.to_string());
    let mut list = vec![
        ("learning_rate", format!("{:e}", c.lr)),
        ("batch_seconds", number(c.batch_seconds)),
        ("gradient_accumulation_steps", c.grad_accum.to_string()),
        ("seed", c.seed.to_string()),
        (
            "optimizer",
            format!(
                "AdamW with betas=({},{}), epsilon={:e} and weight_decay={}",
                c.adam_beta1, c.adam_beta2, c.adam_eps, c.weight_decay
            ),
        ),
        ("lr_scheduler_type", format!("{:?}", c.decay).to_lowercase()),
        (
            "lr_scheduler_warmup",
            opt(
                c.warmup_steps.map(|s| format!("{s} steps")),
                &format!("ratio {}", c.warmup_ratio),
            ),
        ),
        (
            "training_steps",
            opt(
                c.max_steps.map(|s| s.to_string()),
                &format!("{} epochs", c.epochs),
            ),
        ),
        ("precision", format!("{:?}", c.precision).to_lowercase()),
        ("max_grad_norm", number(c.guard.max_grad_norm)),
    ];
    if !c.model_set.is_empty() {
        list.push(("model_settings", c.model_set.join(", ")));
    }
    if let Some(minutes) = c.max_minutes {
        list.push(("max_minutes", number(minutes)));
    }
    list
}

/// One row per evaluation: the mean training loss since the previous one, the epoch,
/// step, eval loss, WER and CER.
fn results_table(records: &[MetricsRecord]) -> String {
    let mut t = String::from(
        "| Training Loss | Epoch | Step | Validation Loss | Wer | Cer |\n\
         |:-------------:|:-----:|:----:|:---------------:|:---:|:---:|\n",
    );
    let mut losses = Vec::new();
    for record in records {
        match record {
            MetricsRecord::Step(s) => losses.extend(s.loss.filter(|l| l.is_finite())),
            MetricsRecord::Eval(e) => {
                let train = if losses.is_empty() {
                    "No log".to_string()
                } else {
                    number(losses.iter().sum::<f64>() / losses.len() as f64)
                };
                losses.clear();
                t.push_str(&format!(
                    "| {train} | {} | {} | {} | {} | {} |\n",
                    number(e.epoch),
                    e.step,
                    e.loss.map_or("-".into(), number),
                    number(e.wer),
                    number(e.cer)
                ));
            }
            MetricsRecord::Event(_) => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EvalRecord;
    use std::path::PathBuf;

    fn step(step: u64, loss: f64) -> MetricsRecord {
        crate::metrics::test_step(step, step as f64 / 2.0, Some(loss), Some(1.0))
    }

    fn eval(step: u64, wer: f64) -> MetricsRecord {
        MetricsRecord::Eval(EvalRecord {
            step,
            epoch: step as f64 / 2.0,
            split: "dev-clean".into(),
            wer,
            cer: wer / 4.0,
            loss: Some(1.25),
            utterances: 3,
            blank_fraction: 0.0,
            best: true,
            eval_time_s: 0.1,
            elapsed_s: None,
        })
    }

    #[test]
    fn card_has_hub_metadata_hyperparameters_and_the_results_table() {
        let config = TrainConfig {
            model: "facebook/wav2vec2-base".into(),
            out: PathBuf::from("/runs/w2v-librispeech"),
            shards: Some(PathBuf::from("/data/librispeech-shards")),
            lr: 3e-4,
            max_steps: Some(4),
            ..TrainConfig::default()
        };
        let records = [
            step(1, 3.0),
            step(2, 2.0),
            eval(2, 0.5),
            step(3, 1.0),
            eval(3, 0.25),
        ];
        let results = [CardResult {
            split: "test-clean".into(),
            wer: 0.125,
            cer: 0.03,
        }];
        let card = render(
            &config,
            &CardFacts {
                records: &records,
                results: &results,
                model_type: "wav2vec2",
                task: "ctc",
            },
        );
        assert!(card.starts_with("---\n"), "{card}");
        for line in [
            "base_model: \"facebook/wav2vec2-base\"\n",
            "- \"automatic-speech-recognition\"\n",
            "- name: \"w2v-librispeech\"\n",
            "      split: \"test-clean\"\n",
            "      value: 0.125\n      name: Wer\n",
            "      value: 0.03\n      name: Cer\n",
            "- learning_rate: 3e-4\n",
            "- training_steps: 4\n",
            "| Training Loss | Epoch | Step | Validation Loss | Wer | Cer |\n",
            "| 2.5 | 1 | 2 | 1.25 | 0.5 | 0.125 |\n",
            "| 1 | 1.5 | 3 | 1.25 | 0.25 | 0.0625 |\n",
        ] {
            assert!(card.contains(line), "missing {line:?} in\n{card}");
        }
        // A Hub id at a revision: the id.
        let pinned = TrainConfig {
            model: "facebook/wav2vec2-base@main".into(),
            ..config.clone()
        };
        assert_eq!(base_model(&pinned), Some("facebook/wav2vec2-base"));
        // A preset starts from random weights: no base_model.
        let preset = TrainConfig {
            model: "tiny".into(),
            ..config
        };
        let card = render(
            &preset,
            &CardFacts {
                records: &[],
                results: &[],
                model_type: "wav2vec2",
                task: "ctc",
            },
        );
        assert!(!card.contains("base_model"), "{card}");
        assert!(card.contains("  results: []\n"), "{card}");
    }

    #[test]
    fn numbers_have_no_trailing_zeros() {
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.04391), "0.0439");
        assert_eq!(yaml_number(0.1), "0.1");
        assert_eq!(yaml_number(f64::NAN), ".nan");
    }
}

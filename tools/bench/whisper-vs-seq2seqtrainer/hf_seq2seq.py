"""The transformers side of tools/bench/whisper-vs-seq2seqtrainer.sh: a Whisper model
folder (the same initial weights `asr-train run` loads) trained with transformers'
`Seq2SeqTrainer` on the same shards and the same batches, in the same order (the plan
printed by asr-train's `batch_plan` example), as Hugging Face's Whisper fine-tuning
guide does it:

- the shard's `text` is tokenized beforehand by `WhisperTokenizer` with the prefix
  `<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>` and `<|endoftext|>`
  (the guide's `prepare_dataset`); the audio (int16 in the Arrow shards, read with
  pyarrow, / 32768) stays as it is until its batch comes;
- `DataCollatorSpeechSeq2SeqWithPadding` of the guide, with the feature extraction of
  `prepare_dataset` moved into it: `WhisperFeatureExtractor` (numpy, padded to 30 s,
  3000 frames) per batch, as asr-train's loader computes features per batch, so that
  neither engine holds the features of the whole run in memory (30 s of float32 log-mel
  per clip, ~1 MB); labels padded with -100 (pad == EOS, so by length), and the leading
  decoder-start token cut when every row has it (the model puts it back when it shifts
  the labels right into decoder inputs);
- `Seq2SeqTrainer`, AdamW (torch), gradient clipping at 1.0, f32 on the CPU; no
  evaluation, no checkpoints. The loss is the model's own: the mean cross-entropy over
  the batch's non-ignored label tokens.

The learning-rate schedule is asr-train's (`crates/asr-train/src/schedule.rs`): linear
warm-up whose first step already has `lr / warmup` (transformers' `linear` gives step 0
a rate of 0, one step behind), then the same linear decay to 0 at `--steps`; with it the
two engines apply the same rate at every step.

Every finished optimizer step appends a JSON line to --steps-out
(`{"kind": "step", "step": N, "time": UNIX_SECONDS, "loss": ..., "lr": ...,
"utterances": ..., "audio_s": ...}`, the loss unrounded), which the driver watches while
it samples the process's CPU time.

    python hf_seq2seq.py --shards DIR --split train --model MODEL_DIR --plan plan.jsonl \
        --steps 20 --threads 2 --language en --steps-out steps.jsonl
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset
from transformers import (
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

SAMPLE_RATE_HZ = 16000


def read_rows(shards: str, split: str, wanted: set) -> dict:
    """id -> (float32 audio in [-1, 1], text) for the wanted ids of a split."""
    with open(os.path.join(shards, "manifest.json")) as f:
        manifest = json.load(f)
    rows = {}
    for shard in manifest["splits"][split]["shards"]:
        with pa.memory_map(os.path.join(shards, shard["file"])) as source:
            table = pa.ipc.open_stream(source).read_all()
        ids = table.column("id").to_pylist()
        audio, text = table.column("audio"), table.column("text")
        for i, utt_id in enumerate(ids):
            if utt_id not in wanted:
                continue
            samples = audio[i].values.to_numpy(zero_copy_only=False)
            if samples.dtype == np.int16:
                samples = samples.astype(np.float32) / 32768.0
            rows[utt_id] = (samples.astype(np.float32), text[i].as_py())
    missing = wanted - rows.keys()
    if missing:
        raise SystemExit(f"{len(missing)} planned ids are not in split {split}, e.g. {sorted(missing)[0]}")
    return rows


class PlanDataset(Dataset):
    def __init__(self, examples):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


class DataCollatorSpeechSeq2SeqWithPadding:
    """As in the Hugging Face blog's "Fine-Tune Whisper" guide."""

    def __init__(self, feature_extractor, tokenizer, decoder_start_token_id):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, features):
        batch = self.feature_extractor([f["audio"] for f in features], sampling_rate=SAMPLE_RATE_HZ,
                                       return_tensors="pt")
        label_features = [{"input_ids": f["labels"]} for f in features]
        labels_batch = self.tokenizer.pad(label_features, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


class PlanTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose training batches are the plan's, in order, with asr-train's
    learning-rate schedule, and which keeps each step's loss unrounded."""

    def __init__(self, *args, plan_batches=None, warmup=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan_batches = plan_batches
        self.warmup = warmup
        self.last_loss = self.last_lr = None

    def get_train_dataloader(self):
        return DataLoader(
            self.train_dataset,
            batch_sampler=self.plan_batches,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            warmup, total = self.warmup, num_training_steps

            def factor(step):
                if step < warmup:
                    return (step + 1) / warmup
                span = total - warmup
                return 1.0 if span <= 0 else max(0.0, 1.0 - (step - warmup) / span)

            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, factor)
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        self.last_loss = float(loss.detach())
        # The rate this step's update will use (the scheduler steps after the update).
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        return result


class StepLog(TrainerCallback):
    def __init__(self, path, plan_audio_s, plan_sizes):
        self.out = open(path, "a")
        self.audio_s, self.sizes = plan_audio_s, plan_sizes
        self.trainer = None

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        step = state.global_step
        record = {
            "kind": "step",
            "step": step,
            "time": time.time(),
            "loss": self.trainer.last_loss,
            "lr": self.trainer.last_lr,
            "utterances": self.sizes[step - 1],
            "audio_s": self.audio_s[step - 1],
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shards", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--model", required=True, help="Whisper folder (config, weights, tokenizer)")
    p.add_argument("--plan", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--language", default="en")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--weight-decay", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps-out", required=True)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(a.plan) as f:
        plan = [json.loads(line)["ids"] for line in f if line.strip()][: a.steps]
    rows = read_rows(a.shards, a.split, {i for batch in plan for i in batch})

    feature_extractor = WhisperFeatureExtractor.from_pretrained(a.model)
    tokenizer = WhisperTokenizer.from_pretrained(a.model, language=a.language, task="transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(a.model)
    model.generation_config.language = a.language
    model.generation_config.task = "transcribe"

    examples, batches, audio_s = [], [], []
    for batch in plan:
        members = []
        for utt_id in batch:
            audio, text = rows[utt_id]
            members.append(len(examples))
            examples.append({"audio": audio, "labels": tokenizer(text).input_ids})
        batches.append(members)
        audio_s.append(sum(len(rows[i][0]) for i in batch) / SAMPLE_RATE_HZ)

    args = Seq2SeqTrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-seq2seq-"),
        max_steps=a.steps,
        per_device_train_batch_size=1,  # the plan decides
        learning_rate=a.lr,
        warmup_steps=a.warmup_steps,
        weight_decay=a.weight_decay,
        max_grad_norm=1.0,
        optim="adamw_torch",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        seed=a.seed,
        disable_tqdm=True,
        remove_unused_columns=False,
        predict_with_generate=False,
    )
    log = StepLog(a.steps_out, audio_s, [len(b) for b in batches])
    trainer = PlanTrainer(
        model=model,
        args=args,
        train_dataset=PlanDataset(examples),
        data_collator=DataCollatorSpeechSeq2SeqWithPadding(
            feature_extractor, tokenizer, model.config.decoder_start_token_id),
        callbacks=[log],
        plan_batches=batches,
        warmup=a.warmup_steps,
    )
    log.trainer = trainer
    trainer.train()


if __name__ == "__main__":
    main()

"""The transformers side of tools/bench/train-vs-transformers.sh: Wav2Vec2ForCTC from a
config.json, trained with transformers' `Trainer` on the same shards and the same
batches as `asr-train run` (the batch plan printed by asr-train's `batch_plan` example),
as the transformers CTC example does it:

- the audio (int16 in the Arrow shards, read with pyarrow) is normalized to zero mean
  and unit variance per utterance beforehand, like the example's `prepare_dataset` map;
- `DataCollatorCTCWithPadding` as in `run_speech_recognition_ctc.py`: the feature
  extractor pads the inputs (attention mask for layer-norm feature encoders), labels are
  padded with -100;
- `Trainer` with AdamW (torch), linear schedule with warm-up, gradient clipping at 1.0,
  f32 on the CPU or bf16 on CUDA; no evaluation, no checkpoints, no logging.

Every finished optimizer step appends a JSON line to --steps-out
(`{"kind": "step", "step": N, "time": UNIX_SECONDS, "audio_s": ...}`), which the driver
watches while it samples the process's CPU time.

    python hf_trainer.py --shards DIR --split train --config config.json --plan plan.jsonl \
        --steps 20 --threads 2 --device cpu --steps-out steps.jsonl

For a learning curve against wall time (the README's equal-data check of the reference
configuration), `--save-every-minutes M --save-dir DIR` saves the model every M minutes
of training as DIR/min-XX.X (an HF folder with vocab.json, which `asr-train eval`
scores), `--max-minutes` stops the run, and `--schedule-steps` sets the learning-rate
horizon when the plan holds fewer steps than the schedule (the plan then repeats).
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import (
    Trainer,
    TrainerCallback,
    TrainingArguments,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
)

SAMPLE_RATE_HZ = 16000


def read_rows(shards: str, split: str, wanted: set) -> dict:
    """id -> (float32 audio in [-1, 1], label list) for the wanted ids of a split."""
    with open(os.path.join(shards, "manifest.json")) as f:
        manifest = json.load(f)
    rows = {}
    for shard in manifest["splits"][split]["shards"]:
        with pa.memory_map(os.path.join(shards, shard["file"])) as source:
            table = pa.ipc.open_stream(source).read_all()
        ids = table.column("id").to_pylist()
        audio = table.column("audio")
        labels = table.column("labels")
        for i, utt_id in enumerate(ids):
            if utt_id not in wanted:
                continue
            samples = audio[i].values.to_numpy(zero_copy_only=False)
            if samples.dtype == np.int16:
                samples = samples.astype(np.float32) / 32768.0
            rows[utt_id] = (samples.astype(np.float32), labels[i].values.to_pylist())
    return rows


class PlanDataset(Dataset):
    """The utterances of the plan, in plan order, already normalized."""

    def __init__(self, examples):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


class DataCollatorCTCWithPadding:
    """As in transformers' examples/pytorch/speech-recognition/run_speech_recognition_ctc.py."""

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    def __call__(self, features):
        input_features = [{"input_values": f["input_values"]} for f in features]
        batch = self.feature_extractor.pad(
            input_features, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        longest = max(len(f["labels"]) for f in features)
        labels = torch.full((len(features), longest), -100, dtype=torch.long)
        for i, f in enumerate(features):
            labels[i, : len(f["labels"])] = torch.tensor(f["labels"], dtype=torch.long)
        batch["labels"] = labels
        return batch


class PlanTrainer(Trainer):
    """Trainer whose training batches are the plan's, in order."""

    def __init__(self, *args, plan_batches=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan_batches = plan_batches

    def get_train_dataloader(self):
        return DataLoader(
            self.train_dataset,
            batch_sampler=self.plan_batches,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )


class TimedSaves(TrainerCallback):
    """Saves the model every `every_s` seconds of training and stops after `max_s`."""

    def __init__(self, model, out_dir, vocab, every_s, max_s):
        self.model, self.out_dir, self.vocab = model, out_dir, vocab
        self.every_s, self.max_s = every_s, max_s
        self.start = None
        self.next_save = every_s

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()

    def save(self, elapsed, step):
        path = os.path.join(self.out_dir, f"min-{elapsed / 60:05.1f}")
        self.model.save_pretrained(path)
        with open(os.path.join(path, "vocab.json"), "w") as f:
            json.dump(self.vocab, f)
        with open(os.path.join(path, "saved.json"), "w") as f:
            json.dump({"step": step, "elapsed_s": elapsed}, f)

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.time() - self.start
        due = self.every_s and elapsed >= self.next_save
        stop = self.max_s and elapsed >= self.max_s
        # The last step is always saved, once, even when a periodic save falls on it.
        if due or (stop and self.every_s):
            self.save(elapsed, state.global_step)
        if due:
            self.next_save += self.every_s
        if stop:
            control.should_training_stop = True


class StepLog(TrainerCallback):
    def __init__(self, path, audio_s):
        self.out = open(path, "a")
        self.audio_s = audio_s

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available() and args.bf16:
            torch.cuda.synchronize()
        step = state.global_step
        record = {
            "kind": "step",
            "step": step,
            "time": time.time(),
            "audio_s": self.audio_s[step - 1] if step - 1 < len(self.audio_s) else 0.0,
        }
        if torch.cuda.is_available() and args.bf16:
            record["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The training loss of the step (logging every step), for comparing how the two
        # engines learn on the same batches.
        if logs and "loss" in logs:
            record = {"kind": "loss", "step": state.global_step, "loss": float(logs["loss"])}
            self.out.write(json.dumps(record) + "\n")
            self.out.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shards", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--config", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--weight-decay", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps-out", required=True)
    p.add_argument("--schedule-steps", type=int, help="lr schedule horizon [default: --steps]")
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--save-every-minutes", type=float)
    p.add_argument("--save-dir")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(a.plan) as f:
        plan = [json.loads(line)["ids"] for line in f if line.strip()][: a.steps]
    wanted = {i for batch in plan for i in batch}
    rows = read_rows(a.shards, a.split, wanted)
    with open(os.path.join(a.shards, "manifest.json")) as f:
        manifest_vocab = json.load(f)["vocab"]
    vocab = json.loads(manifest_vocab) if isinstance(manifest_vocab, str) else manifest_vocab
    blank = vocab.get("[PAD]", vocab.get("<pad>", 0))

    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE_HZ,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    examples, batches, audio_s = [], [], []
    for batch in plan:
        members = []
        for utt_id in batch:
            audio, labels = rows[utt_id]
            # prepare_dataset of the CTC example: the feature extractor normalizes.
            values = feature_extractor(audio, sampling_rate=SAMPLE_RATE_HZ).input_values[0]
            members.append(len(examples))
            examples.append({"input_values": values, "labels": labels})
        batches.append(members)
        audio_s.append(sum(len(rows[i][0]) for i in batch) / SAMPLE_RATE_HZ)

    with open(a.config) as f:
        config = json.load(f)
    config.pop("architectures", None)
    config.update(vocab_size=len(vocab), pad_token_id=blank)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**config))

    out_dir = tempfile.mkdtemp(prefix="hf-trainer-")
    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=a.schedule_steps or a.steps,
        per_device_train_batch_size=1,  # the plan decides
        learning_rate=a.lr,
        warmup_steps=a.warmup_steps,
        weight_decay=a.weight_decay,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=a.device == "cpu",
        bf16=a.device == "cuda",
        dataloader_num_workers=0,
        seed=a.seed,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = PlanTrainer(
        model=model,
        args=args,
        train_dataset=PlanDataset(examples),
        data_collator=DataCollatorCTCWithPadding(feature_extractor),
        callbacks=[
            StepLog(a.steps_out, audio_s),
            TimedSaves(
                model,
                a.save_dir,
                vocab,
                (a.save_every_minutes or 0) * 60,
                (a.max_minutes or 0) * 60,
            ),
        ],
        plan_batches=batches,
    )
    trainer.train()


if __name__ == "__main__":
    main()

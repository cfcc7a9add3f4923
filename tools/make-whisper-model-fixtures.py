#!/usr/bin/env python3
"""Whisper model fixtures for asr-model, made with transformers, and the export check.

    python=$(tools/venv.sh model-fixtures tools/requirements-model-fixtures.txt)
    $python tools/make-whisper-model-fixtures.py                 # (re)write fixtures/whisper/models/
    $python tools/make-whisper-model-fixtures.py --check-export  # Rust-saved folders load in transformers

Fixtures (fixtures/whisper/models/<name>/), tiny random WhisperForConditionalGeneration
models with every parameter (the fixed sinusoidal encoder positions included) perturbed
away from its init, so that a swapped, misnamed or recomputed tensor cannot match:

  multilingual  the real multilingual vocabulary (51,865 tokens) and special-token ids,
                80 mels, 1500 encoder positions (3000 input frames, as every Whisper),
                d_model 8, 2 + 2 layers, a 4-token prompt <|startoftranscript|> <|zh|>
                <|transcribe|> <|notimestamps|>, generation capped by max_length
  mel128        128 mels (large-v3), a small vocabulary (96), d_model 16, 1 + 2 layers,
                100 encoder positions, 12 decoder positions: generation capped by
                max_target_positions, a pad (== EOS) token inside a label row

mel128-bin/ holds mel128's weights as pytorch_model.bin (`torch.save(model.state_dict())`,
with the tied proj_out.weight sharing the embedding's storage).

Each model folder holds config.json, generation_config.json, model.safetensors (tied proj_out, so
one embedding matrix) and expected.safetensors, computed by transformers in eval mode
with eager attention on CPU in float32:
  input_features       [2, mels, 2 * max_source_positions] (values exact in fp16, so
                       they are stored as fp16 and read as the same float32 numbers)
  decoder_input_ids, decoder_attention_mask   a right-padded batch (row 1 shorter)
  logits               of that batch
  labels               -100 padded; loss: transformers' loss with labels only
                       (decoder inputs = shift_tokens_right(labels))
  grad.<name>          gradients of that loss for a few parameters
  prompt_ids           the forced prompt generate() built from language/task
  generated            generate(input_features, language, task) with the
                       generation_config's suppress_tokens / begin_suppress_tokens,
                       greedy; row 0 stops at EOS, row 1 runs to the length cap
                       (the EOS embedding is nudged so that one row stops early, and
                       tokens the model would generate are added to both suppress
                       lists, so that the ids differ without either list)

--check-export runs `cargo run -p asr-model --example export_whisper -- OUT`, which
loads each fixture in Rust, saves it with WhisperModel::save_pretrained and records its
logits; then each folder is loaded with WhisperForConditionalGeneration: no missing,
unexpected or mismatched weights, logits within 1e-4.
"""
import argparse
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "fixtures", "whisper", "models")

# The multilingual special tokens (openai/whisper-* since v1; large-v3 shifts them by one).
EOT, SOT, EN, ZH = 50257, 50258, 50259, 50260
TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS = 50358, 50359, 50363
SUPPRESS_MULTI = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92,
                  93, 359, 503, 522, 542, 873, 893, 902, 918, 922, 931, 1350, 1853, 1982, 2460, 2627,
                  50254, 50258, 50360, 50361, 50362]

CONFIGS = {
    "multilingual": dict(
        config=dict(vocab_size=51865, num_mel_bins=80, d_model=8, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
                    decoder_ffn_dim=16, max_source_positions=1500, max_target_positions=448,
                    pad_token_id=EOT, bos_token_id=EOT, eos_token_id=EOT, decoder_start_token_id=SOT,
                    begin_suppress_tokens=[220, EOT], suppress_tokens=SUPPRESS_MULTI),
        generation=dict(max_length=10, lang_to_id={"<|en|>": EN, "<|zh|>": ZH},
                        task_to_id={"translate": TRANSLATE, "transcribe": TRANSCRIBE},
                        no_timestamps_token_id=NO_TIMESTAMPS, is_multilingual=True),
        language="zh", task="transcribe", perturb=0.1,
        decoder_input_ids=[[SOT, ZH, TRANSCRIBE, NO_TIMESTAMPS, 2000, 300, 51000],
                           [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS, 17, EOT, EOT]],
        labels=[[ZH, TRANSCRIBE, NO_TIMESTAMPS, 2000, 300, 51000, EOT], [EN, TRANSCRIBE, NO_TIMESTAMPS, 17, EOT]],
    ),
    "mel128": dict(
        config=dict(vocab_size=96, num_mel_bins=128, d_model=16, encoder_layers=1, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=24,
                    decoder_ffn_dim=32, max_source_positions=100, max_target_positions=12,
                    pad_token_id=90, bos_token_id=90, eos_token_id=90, decoder_start_token_id=91,
                    begin_suppress_tokens=[5, 90], suppress_tokens=[3, 4, 92, 93]),
        generation=dict(max_length=448, lang_to_id={"<|en|>": 92}, task_to_id={"transcribe": 94, "translate": 93},
                        no_timestamps_token_id=95, is_multilingual=True),
        language="en", task="transcribe", perturb=0.3,
        decoder_input_ids=[[91, 92, 94, 95, 10, 11, 12, 13], [91, 92, 94, 95, 20, 90, 90, 90]],
        # A pad (== EOS) token inside row 0: embed_tokens has padding_idx = pad, so its
        # lookup passes no gradient to that row (only proj_out does).
        labels=[[92, 94, 95, 10, 90, 12, 13, 90], [92, 94, 95, 20, 90]],
    ),
}

GRADS = [
    "model.encoder.conv1.weight",
    "model.encoder.conv2.bias",
    "model.encoder.layers.0.self_attn.k_proj.weight",
    "model.encoder.layer_norm.weight",
    "model.decoder.embed_positions.weight",
    "model.decoder.layers.0.encoder_attn.k_proj.weight",
    "model.decoder.layers.1.self_attn.q_proj.bias",
    "model.decoder.layers.1.fc1.weight",
]


def perturb(model, seed, extra):
    """Move every tensor away from its init (norms are 1/0, biases 0 at init), the
    encoder's fixed sinusoidal positions included; `extra` adds noise of that scale
    (a tiny model's greedy output is otherwise one token repeated)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = max(0.05, 0.2 * float(p.std()) if p.numel() > 1 else 0.05) + extra
            p.add_(torch.randn(p.shape, generator=g) * scale)


def label_batch(rows):
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def build(spec, seed):
    config = WhisperConfig(**spec["config"])
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.config._attn_implementation = "eager"
    perturb(model, seed + 1, spec.get("perturb", 0.0))
    model.eval()
    generation = GenerationConfig.from_model_config(config)
    for key, value in spec["generation"].items():
        setattr(generation, key, value)
    generation.suppress_tokens = spec["config"]["suppress_tokens"]
    generation.begin_suppress_tokens = spec["config"]["begin_suppress_tokens"]
    # Saved with `_from_model_config: true`, GenerationConfig.from_pretrained would drop
    # lang_to_id / task_to_id / no_timestamps_token_id on load; real checkpoints lack it.
    generation._from_model_config = False
    generation.do_sample = False
    generation.num_beams = 1
    generation.return_timestamps = False
    return model, generation


def generate(model, generation, features, spec):
    with torch.no_grad():
        return model.generate(features, generation_config=copy.deepcopy(generation),
                              language=spec["language"], task=spec["task"])


def nudge_eos(model, generation, features, spec):
    """Point the EOS embedding (tied to proj_out) along the difference of the two rows'
    decoder outputs at one step, scaled up until row 0 stops at EOS before row 1 does."""
    eos = spec["config"]["eos_token_id"]
    base = generate(model, generation, features, spec)
    prompt = spec["decoder_input_ids"][0][:4]
    weight = model.model.decoder.embed_tokens.weight
    original = weight[eos].clone()
    # generate() drops the EOS it stops at and right-pads rows with pad (== EOS).
    def lengths(out):
        return [len([t for t in r.tolist() if t != eos]) for r in out]

    for step in range(1, base.shape[1] - 1):
        if base[0, :step].tolist() == base[1, :step].tolist():
            continue  # the same prefix: row 1 would stop there too
        # The direction in which row 0's decoder output at this step differs from row 1's.
        ids = torch.tensor([prompt + base[0, :step].tolist(), prompt + base[1, :step].tolist()])
        with torch.no_grad():
            out = model.model(features, decoder_input_ids=ids).last_hidden_state[:, -1]
        h = out[0] - out[1]
        for scale in [0.5, 1, 2, 4, 8, 16, 32, 64]:
            with torch.no_grad():
                weight[eos] = h / h.norm() * scale
            got = generate(model, generation, features, spec)
            short, full = lengths(got)
            if 1 <= short < full and full == base.shape[1]:
                return got
    with torch.no_grad():
        weight[eos] = original
    return None


def without(generation, key):
    changed = copy.deepcopy(generation)
    setattr(changed, key, [])
    return changed


def bind_suppress_lists(model, generation, features, spec):
    """Add tokens the model would otherwise generate to the suppress lists: row 0's
    first token to begin_suppress_tokens, a later token of row 1 to suppress_tokens, so
    that generation without either list gives other ids."""
    free = without(without(generation, "suppress_tokens"), "begin_suppress_tokens")
    raw = generate(model, free, features, spec)
    taken = set(spec["decoder_input_ids"][0][:4]) | {spec["config"]["eos_token_id"]}
    first = int(raw[0, 0])
    later = next((int(t) for t in raw[1, 1:] if int(t) not in taken | {first}), None)
    if first not in taken:
        generation.begin_suppress_tokens = list(generation.begin_suppress_tokens) + [first]
    if later is not None:
        generation.suppress_tokens = list(generation.suppress_tokens) + [later]
    model.config.begin_suppress_tokens = generation.begin_suppress_tokens
    model.config.suppress_tokens = generation.suppress_tokens


def suppression_matters(model, generation, features, spec, generated):
    """Whether dropping either suppress list changes the generated ids."""
    return all(not torch.equal(generate(model, without(generation, key), features, spec), generated)
               for key in ("suppress_tokens", "begin_suppress_tokens"))


def model_and_inputs(spec, seed):
    """A model and input features whose greedy outputs differ between the two rows early
    enough that row 0 can be made to stop at EOS before row 1; the first seed that works."""
    for attempt in range(8):
        model, generation = build(spec, seed + 100 * attempt)
        config = model.config
        frames = 2 * config.max_source_positions
        g = torch.Generator().manual_seed(seed + 100 * attempt + 2)
        # fp16-exact values: stored as fp16, the same float32 numbers on both sides. A
        # per-row offset per mel bin, so that the two rows decode differently.
        features = torch.randn(2, config.num_mel_bins, frames, generator=g) * 0.6
        features = (features + torch.randn(2, config.num_mel_bins, 1, generator=g)).half().float()
        bind_suppress_lists(model, generation, features, spec)
        generated = nudge_eos(model, generation, features, spec)
        if generated is not None and suppression_matters(model, generation, features, spec, generated):
            return model, generation, features, generated
    sys.exit("could not make row 0 stop at EOS before row 1 with any seed")


def make_fixture(name, spec, seed):
    model, generation, features, generated = model_and_inputs(spec, seed)
    config = model.config
    prompt = torch.tensor([spec["decoder_input_ids"][0][:4]])

    ids = torch.tensor(spec["decoder_input_ids"])
    eos = config.eos_token_id
    mask = torch.ones_like(ids)
    mask[1, ids.shape[1] - 2:] = 0  # row 1: two padded positions at the end
    with torch.no_grad():
        logits = model(features, decoder_input_ids=ids, decoder_attention_mask=mask).logits

    labels = label_batch(spec["labels"])
    model.zero_grad()
    loss = model(features, labels=labels).loss
    loss.backward()
    params = dict(model.named_parameters())
    missing = [n for n in GRADS if params[n].grad is None]
    assert not missing, f"no gradient for {missing}"
    grads = {f"grad.{n}": params[n].grad.detach().clone() for n in GRADS}
    if config.vocab_size < 1000:
        grads["grad.model.decoder.embed_tokens.weight"] = params["model.decoder.embed_tokens.weight"].grad.clone()

    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    generation.save_pretrained(folder)
    expected = {
        "input_features": features.half(),
        "decoder_input_ids": ids,
        "decoder_attention_mask": mask,
        "logits": logits.contiguous(),
        "labels": labels,
        "loss": loss.detach().reshape(1),
        "prompt_ids": prompt,
        "generated": generated,
        **grads,
    }
    assert all(v is not None for v in expected.values()), [k for k, v in expected.items() if v is None]
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(folder, "expected.safetensors"))
    if name == "mel128":
        make_bin_folder(model, folder)
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    print(f"{name}: loss {float(loss):.6f}, generated {generated.tolist()} (eos {eos}), files {sizes}")


def make_bin_folder(model, source):
    """<source>-bin/: the same weights as `torch.save(model.state_dict())` in
    pytorch_model.bin (an OrderedDict holding the tied proj_out.weight, which shares
    its storage with model.decoder.embed_tokens.weight), as older Hub checkpoints are."""
    folder = source + "-bin"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for f in ("config.json", "generation_config.json"):
        shutil.copy(os.path.join(source, f), folder)
    state = model.state_dict()
    assert "proj_out.weight" in state
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    reloaded, info = WhisperForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def check_export(keep):
    out = tempfile.mkdtemp(prefix="asr-model-whisper-export-")
    cmd = ["cargo", "run", "--quiet", "-p", "asr-model", "--example", "export_whisper", "--", out]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    folders = sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)))
    assert folders, "the export wrote nothing"
    failures = 0
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    transformers.logging.set_verbosity_warning()
    transformers.logging.get_logger().addHandler(handler)
    for name in folders:
        folder = os.path.join(out, name)
        records.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model, info = WhisperForConditionalGeneration.from_pretrained(
                folder, output_loading_info=True, attn_implementation="eager")
            generation = GenerationConfig.from_pretrained(folder)
        problems = {k: v for k, v in info.items() if v}
        with open(os.path.join(folder, "generation_config.json")) as f:
            saved = json.load(f)
        for key in ("lang_to_id", "task_to_id", "no_timestamps_token_id", "suppress_tokens",
                    "begin_suppress_tokens", "max_length", "decoder_start_token_id"):
            if key in saved and getattr(generation, key, None) != saved[key]:
                problems.setdefault("generation_config", []).append(
                    f"{key}: file {saved[key]}, loaded {getattr(generation, key, None)}")
        if records:
            problems["warnings"] = [r.getMessage() for r in records]
        rust = load_file(os.path.join(out, f"{name}.rust.safetensors"))
        model.eval()
        with torch.no_grad():
            logits = model(rust["input_features"], decoder_input_ids=rust["decoder_input_ids"]).logits
        diff = float((logits - rust["logits"]).abs().max())
        status = "ok" if not problems and diff <= 1e-4 else "FAILED"
        failures += status != "ok"
        print(f"{name}: {type(model).__name__} loaded, loading problems {problems or 'none'}, "
              f"max |logits - rust| = {diff:.2e}: {status}")
    if keep:
        print(f"exported folders kept in {out}")
    else:
        shutil.rmtree(out)
    if failures:
        sys.exit(f"{failures} exported folder(s) failed")
    print(f"all {len(folders)} Rust-saved Whisper folders load in transformers {transformers.__version__}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-export", action="store_true", help="check Rust-saved folders in transformers")
    parser.add_argument("--keep", action="store_true", help="with --check-export: keep the exported folders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.check_export:
        check_export(args.keep)
        return
    for i, (name, spec) in enumerate(CONFIGS.items()):
        make_fixture(name, spec, seed=100 + 10 * i)


if __name__ == "__main__":
    main()

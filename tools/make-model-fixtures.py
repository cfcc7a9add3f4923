#!/usr/bin/env python3
"""Model fixtures for asr-model, made with transformers, and the export check.

    python=$(tools/venv.sh model-fixtures tools/requirements-model-fixtures.txt)
    $python tools/make-model-fixtures.py                 # (re)write fixtures/models/
    $python tools/make-model-fixtures.py --check-export  # Rust-saved folders load in transformers

Fixtures (fixtures/models/<name>/): tiny random models (hidden size 32, three convs of 16
channels, 20 samples per frame) in five configurations covering the switches real
checkpoints use:

  w2v2-base       group-norm feature encoder, post-LN encoder, no conv bias, even
                  positional kernel, ctc_loss_reduction "sum"    (wav2vec2-base-960h)
  w2v2-large      layer-norm feature encoder, stable (pre-LN) encoder, conv bias,
                  "mean" reduction, ctc_zero_infinity           (wav2vec2-large-lv60, XLS-R)
  w2v2-mms        large-like plus per-layer attention adapters   (facebook/mms-1b-all)
  hubert          HuBERT base-like, no feature-projection layer norm, odd positional
                  kernel, weights saved under the old weight_g/weight_v names
  hubert-large-bn HuBERT large-like with conv_pos_batch_norm (batch norm before the
                  positional conv, running statistics)

Each holds config.json, model.safetensors, vocab.json and expected.safetensors: a padded
batch of two utterances (1600 and 1100 samples) with its attention mask and labels
(-100 padded), the logits with and without the mask, the output lengths, the CTC loss
(config reduction, and both reductions), the zero_infinity loss of infeasible labels,
and gradients of a few parameters, all computed by transformers in eval mode (no
dropout). Every parameter is perturbed away from its init so that swapped or
misnamed tensors cannot match by accident.

fixtures/models/bin-variants/ holds w2v2-base's weights as torch.save files: a plain
dict (what transformers 4.x `save_pretrained(safe_serialization=False)` wrote), the
OrderedDict of `torch.save(model.state_dict())`, a legacy pre-1.6 (non-zip) file, and
an fp16 safetensors copy; w2v2-base-bin/ is a model folder with pytorch_model.bin.

--check-export builds and runs `cargo run -p asr-model --example export_fixtures`,
which loads each fixture in Rust (plus a `tiny` preset and a HuBERT config from random
weights), saves it with CtcModel::save_pretrained and records its logits; then loads
every folder with AutoModelForCTC and Wav2Vec2Processor and checks: no missing,
unexpected or mismatched weights, the same vocabulary, logits within 1e-4.
"""
import argparse
import collections
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCTC,
    HubertConfig,
    HubertForCTC,
    Wav2Vec2Config,
    Wav2Vec2ForCTC,
    Wav2Vec2Processor,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "fixtures", "models")

VOCAB = ["[PAD]", "[UNK]", "|"] + list("ABCDEFGHI")

COMMON = dict(
    vocab_size=len(VOCAB),
    pad_token_id=0,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 2, 2),
    conv_kernel=(10, 3, 3),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=4,
    mask_time_prob=0.05,
    mask_time_length=4,
)

FIXTURES = {
    "w2v2-base": (Wav2Vec2ForCTC, Wav2Vec2Config, dict(
        feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
        ctc_loss_reduction="sum")),
    "w2v2-large": (Wav2Vec2ForCTC, Wav2Vec2Config, dict(
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
        ctc_loss_reduction="mean", ctc_zero_infinity=True, num_conv_pos_embeddings=6)),
    "w2v2-mms": (Wav2Vec2ForCTC, Wav2Vec2Config, dict(
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
        adapter_attn_dim=8, ctc_loss_reduction="mean")),
    "hubert": (HubertForCTC, HubertConfig, dict(
        feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
        feat_proj_layer_norm=False, num_conv_pos_embeddings=7, ctc_loss_reduction="sum")),
    "hubert-large-bn": (HubertForCTC, HubertConfig, dict(
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
        feat_proj_layer_norm=True, conv_pos_batch_norm=True, ctc_loss_reduction="mean")),
}

LENGTHS = (1600, 1100)
LABELS = ([3, 4, 4, 5, 2, 6, 7, 8, 2, 9], [10, 11, 3, 2, 4, 4])
# The second utterance's labels need 54 + 27 = 81 frames (a blank between repeats) but
# it has 54: its CTC loss is infinite.
LABELS_LONG = ([3, 4, 5], [3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11] * 3)


def grad_names(prefix, config):
    names = [
        "lm_head.weight",
        f"{prefix}.encoder.layers.0.attention.q_proj.weight",
        f"{prefix}.encoder.layers.1.final_layer_norm.weight",
        f"{prefix}.feature_extractor.conv_layers.0.conv.weight",
        f"{prefix}.feature_projection.projection.weight",
    ]
    if getattr(config, "conv_pos_batch_norm", False):
        names += [f"{prefix}.encoder.pos_conv_embed.conv.weight", f"{prefix}.encoder.pos_conv_embed.batch_norm.weight"]
    else:
        names += [
            f"{prefix}.encoder.pos_conv_embed.conv.parametrizations.weight.original0",
            f"{prefix}.encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        ]
    if getattr(config, "adapter_attn_dim", None):
        names.append(f"{prefix}.encoder.layers.1.adapter_layer.linear_1.weight")
    return names


def padded_batch(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000.0
        x = torch.sin(2 * math.pi * (180 + 60 * i) * t) + 0.3 * torch.randn(n, generator=g)
        batch[i, :n] = (x - x.mean()) / (x.std() + 1e-7)  # do_normalize, as the feature extractor
        mask[i, :n] = 1
    return batch, mask


def label_batch(rows):
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def perturb(model, seed):
    """Move every tensor away from its init (norms are 1/0, biases 0 at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * max(0.05, 0.2 * float(p.std()) if p.numel() > 1 else 0.05))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("num_batches_tracked"):
                b.fill_(7)


def write_vocab(path):
    with open(path, "w") as f:
        json.dump({t: i for i, t in enumerate(VOCAB)}, f, indent=2, ensure_ascii=False)


def ctc_loss(model, inputs, mask, labels, reduction=None, zero_infinity=None):
    saved = (model.config.ctc_loss_reduction, model.config.ctc_zero_infinity)
    if reduction is not None:
        model.config.ctc_loss_reduction = reduction
    if zero_infinity is not None:
        model.config.ctc_zero_infinity = zero_infinity
    try:
        with torch.no_grad():
            return model(inputs, attention_mask=mask, labels=labels).loss.detach().clone()
    finally:
        model.config.ctc_loss_reduction, model.config.ctc_zero_infinity = saved


def make_fixture(name, seed):
    model_cls, config_cls, options = FIXTURES[name]
    config = config_cls(**{**COMMON, **options})
    torch.manual_seed(seed)
    model = model_cls(config)
    perturb(model, seed + 1)
    model.eval()
    prefix = model.base_model_prefix
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    write_vocab(os.path.join(out, "vocab.json"))
    if name == "hubert":
        # Old checkpoints (e.g. facebook/hubert-large-ls960-ft) store weight norm as weight_g/weight_v.
        path = os.path.join(out, "model.safetensors")
        tensors = load_file(path)
        renamed = {
            k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
            for k, v in tensors.items()
        }
        assert renamed.keys() != tensors.keys()
        save_file(renamed, path, metadata={"format": "pt"})
        reloaded, info = model_cls.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info

    inputs, mask = padded_batch(LENGTHS, seed + 2)
    labels = label_batch(LABELS)
    labels_long = label_batch(LABELS_LONG)
    with torch.no_grad():
        logits_masked = model(inputs, attention_mask=mask).logits
        logits_unmasked = model(inputs).logits
    model.zero_grad()
    result = model(inputs, attention_mask=mask, labels=labels)
    result.loss.backward()
    params = dict(model.named_parameters())
    # The model registers weight norm as a parametrization: its parameters are original0/1.
    grads = {}
    for g in grad_names(prefix, config):
        grads[f"grad.{g}"] = params[g].grad.detach().clone()
    output_lengths = model._get_feat_extract_output_lengths(mask.sum(-1))
    expected = {
        "input_values": inputs,
        "attention_mask": mask,
        "labels": labels,
        "labels_long": labels_long,
        "output_lengths": output_lengths.to(torch.long),
        "logits_masked": logits_masked,
        "logits_unmasked": logits_unmasked,
        "loss": result.loss.detach(),
        "loss_sum": ctc_loss(model, inputs, mask, labels, "sum"),
        "loss_mean": ctc_loss(model, inputs, mask, labels, "mean"),
        "loss_long_zero_infinity": ctc_loss(model, inputs, mask, labels_long, zero_infinity=True),
        "loss_long": ctc_loss(model, inputs, mask, labels_long, zero_infinity=False),
        **grads,
    }
    expected = {k: v.contiguous() for k, v in expected.items()}
    save_file(expected, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({
            "made_by": "tools/make-model-fixtures.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "class": model_cls.__name__,
            "attn_implementation": model.config._attn_implementation,
            "gradients": grad_names(prefix, config),
            "loss": float(result.loss.detach()),
        }, f, indent=2)
        f.write("\n")
    assert math.isinf(float(expected["loss_long"])) and math.isfinite(float(expected["loss_long_zero_infinity"]))
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, loss {float(result.loss.detach()):.6f}, "
          f"frames {logits_masked.shape[1]}, lengths {output_lengths.tolist()}")
    return model


def make_bin_variants(model):
    state = model.state_dict()
    plain = {k: v.contiguous() for k, v in state.items()}
    out = os.path.join(OUT, "bin-variants")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    # transformers 4.x save_pretrained(safe_serialization=False): torch.save of a plain dict.
    torch.save(plain, os.path.join(out, "plain_dict.bin"))
    # torch.save(model.state_dict()): an OrderedDict carrying _metadata.
    assert isinstance(state, collections.OrderedDict) and hasattr(state, "_metadata")
    torch.save(state, os.path.join(out, "ordered_dict.bin"))
    # Pre-1.6 format.
    torch.save(plain, os.path.join(out, "legacy.bin"), _use_new_zipfile_serialization=False)
    # Non-contiguous storage views must be rebuilt correctly: a transposed view.
    noncontig = dict(plain)
    key = "lm_head.weight"
    noncontig[key] = plain[key].t().contiguous().t()
    assert not noncontig[key].is_contiguous()
    torch.save(noncontig, os.path.join(out, "noncontiguous.bin"))
    # Half-precision checkpoint (converted to float32 on load).
    save_file({k: v.half() if v.is_floating_point() else v for k, v in plain.items()},
              os.path.join(out, "model-fp16.safetensors"), metadata={"format": "pt"})
    folder = os.path.join(OUT, "w2v2-base-bin")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shutil.copy(os.path.join(OUT, "w2v2-base", "config.json"), folder)
    shutil.copy(os.path.join(OUT, "w2v2-base", "vocab.json"), folder)
    shutil.copy(os.path.join(out, "plain_dict.bin"), os.path.join(folder, "pytorch_model.bin"))
    reloaded, info = Wav2Vec2ForCTC.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def check_export(keep):
    out = tempfile.mkdtemp(prefix="asr-model-export-")
    cmd = ["cargo", "run", "--quiet", "-p", "asr-model", "--example", "export_fixtures", "--", out]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    folders = sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d)))
    assert folders, "the export wrote nothing"
    failures = 0
    # Every warning transformers logs while loading (missing/unexpected weights are
    # reported there) counts as a problem.
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
            model, info = AutoModelForCTC.from_pretrained(folder, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        if records:
            problems["warnings"] = [r.getMessage() for r in records]
        processor = Wav2Vec2Processor.from_pretrained(folder)
        with open(os.path.join(folder, "vocab.json")) as f:
            vocab = json.load(f)
        if len(processor.tokenizer) != model.config.vocab_size or processor.tokenizer.get_vocab() != vocab:
            problems["tokenizer"] = f"{len(processor.tokenizer)} tokens for vocab_size {model.config.vocab_size}"
        rust = load_file(os.path.join(out, f"{name}.rust.safetensors"))
        model.eval()
        with torch.no_grad():
            logits = model(rust["input_values"], attention_mask=rust["attention_mask"]).logits
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
    print(f"all {len(folders)} Rust-saved folders load in transformers {transformers.__version__} with the same logits")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-export", action="store_true", help="check Rust-saved folders in transformers")
    parser.add_argument("--keep", action="store_true", help="keep the exported folders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.check_export:
        check_export(args.keep)
        return
    os.makedirs(OUT, exist_ok=True)
    base = None
    for i, name in enumerate(FIXTURES):
        model = make_fixture(name, seed=1000 + 10 * i)
        if name == "w2v2-base":
            base = model
    make_bin_variants(base)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(
            "# Model fixtures\n\n"
            "Made by `tools/make-model-fixtures.py` with transformers "
            f"{transformers.__version__} and torch {torch.__version__}; do not edit by hand.\n"
            "See the script's docstring for what each folder holds. Regenerate with:\n\n"
            "    python=$(tools/venv.sh model-fixtures tools/requirements-model-fixtures.txt)\n"
            "    $python tools/make-model-fixtures.py\n"
        )


if __name__ == "__main__":
    main()

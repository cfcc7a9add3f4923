"""A random Whisper model folder that both engines start from (the same initial weights):
transformers' `WhisperForConditionalGeneration` built from a config file and a seed,
saved as Hugging Face saves a checkpoint, so that `asr-train run --model DIR` and
`Seq2SeqTrainer` load exactly the same tensors.

    python make_model.py --config model.json --tokenizer fixtures/whisper/tokenizer/tokenizer.json \
        --out DIR [--seed 0]

The folder holds config.json, model.safetensors (proj_out tied to the decoder's
embed_tokens, the encoder's sinusoidal positions included), generation_config.json
(language and task ids, `<|notimestamps|>`, max_length 448), preprocessor_config.json
(WhisperFeatureExtractor with the model's mel count, and a `chunk_length` other than 30 s
when the config file has one, which must match `max_source_positions`: 50 per second)
and the tokenizer files
(tokenizer.json from --tokenizer, which tools/make-whisper-fixtures.py converts from
openai-whisper's multilingual tiktoken file).

Special-token ids are looked up by name in the tokenizer, never hard-coded. The config
file holds the shape (d_model, layers, heads, FFN, mels, positions) and must switch
dropout, LayerDrop and SpecAugment off for a loss-per-step comparison. Generation
suppresses the control tokens (`suppress_tokens`: start of transcript, the task and
previous-text tokens, no-speech, no-timestamps) and, at the first step, a space and
`<|endoftext|>` (`begin_suppress_tokens`), as Whisper checkpoints do; the openai
non-speech symbol list of the real checkpoints is not reproduced (a random model has no
reason to prefer those symbols).
"""

import argparse
import json
import os

import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

CONTROL = ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
           "<|startofprev|>", "<|nospeech|>", "<|nocaptions|>", "<|notimestamps|>"]


def token_id(tokenizer, name):
    vocab = tokenizer.get_vocab()
    if name not in vocab:
        raise SystemExit(f"the tokenizer has no token {name}")
    return vocab[name]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="JSON of WhisperConfig arguments (shape)")
    p.add_argument("--tokenizer", required=True, help="a multilingual Whisper tokenizer.json")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    tokenizer = WhisperTokenizer(tokenizer_file=a.tokenizer)
    vocab = tokenizer.get_vocab()
    eot = token_id(tokenizer, "<|endoftext|>")
    sot = token_id(tokenizer, "<|startoftranscript|>")
    languages = {t: i for t, i in vocab.items()
                 if t.startswith("<|") and t.endswith("|>") and 2 <= len(t) - 4 <= 3
                 and t[2:-2].isalpha() and t[2:-2].islower() and i > sot}
    with open(a.config) as f:
        shape = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    # The input window (preprocessor_config.json), 30 s unless the file says otherwise;
    # the encoder takes 100 frames a second, halved by conv2's stride.
    chunk_length = shape.pop("chunk_length", 30)
    positions = shape.get("max_source_positions", 1500)
    if 2 * positions != 100 * chunk_length:
        raise SystemExit(f"{a.config}: max_source_positions {positions} does not fit a "
                         f"{chunk_length}-s window (needs {50 * chunk_length})")
    suppress = sorted(vocab[t] for t in CONTROL if t in vocab)
    begin_suppress = [token_id(tokenizer, "Ġ"), eot]
    config = WhisperConfig(
        vocab_size=len(tokenizer), pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=sot, suppress_tokens=suppress, begin_suppress_tokens=begin_suppress,
        **shape,
    )
    torch.manual_seed(a.seed)
    model = WhisperForConditionalGeneration(config)
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out)

    generation = GenerationConfig.from_model_config(config)
    generation.lang_to_id = languages
    generation.task_to_id = {"translate": token_id(tokenizer, "<|translate|>"),
                             "transcribe": token_id(tokenizer, "<|transcribe|>")}
    generation.no_timestamps_token_id = token_id(tokenizer, "<|notimestamps|>")
    generation.is_multilingual = True
    generation.max_length = config.max_target_positions
    generation.suppress_tokens = suppress
    generation.begin_suppress_tokens = begin_suppress
    generation.return_timestamps = False
    # Saved with `_from_model_config: true`, GenerationConfig.from_pretrained would drop
    # lang_to_id / task_to_id on load; real checkpoints do not carry it.
    generation._from_model_config = False
    generation.save_pretrained(a.out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=chunk_length).save_pretrained(a.out)
    # As the openai/whisper-* tokenizers: <|endoftext|> is also bos, unk and pad.
    tokenizer.bos_token = tokenizer.eos_token = tokenizer.pad_token = tokenizer.unk_token = "<|endoftext|>"
    tokenizer.save_pretrained(a.out)
    trained = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    print(f"{a.out}: random Whisper, seed {a.seed}, d_model {config.d_model}, "
          f"{config.encoder_layers} + {config.decoder_layers} layers, vocabulary {config.vocab_size}, "
          f"{len(languages)} languages, {trained / 1e6:.2f} M trained parameters")


if __name__ == "__main__":
    main()

"""The transformers side of tools/bench/model-step.sh: one training step (forward,
CTC loss, backward) of Wav2Vec2ForCTC with the wav2vec2-base shape, timed.

    python transformers_step.py BATCH SECONDS STEPS THREADS

Prints `transformers batch seconds threads median_step_s min_step_s` (tab-separated).
"""
import sys
import time

import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

batch, seconds, steps, threads = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)
torch.manual_seed(0)
# The `base` preset of asr-model: transformers' defaults, vocab 32, no LayerDrop.
model = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32, layerdrop=0.0))
model.train()
samples = seconds * 16000
inputs = torch.randn(batch, samples)
labels = torch.randint(3, 32, (batch, 50))
times = []
for step in range(steps + 1):
    start = time.perf_counter()
    loss = model(inputs, labels=labels).loss
    loss.backward()
    model.zero_grad(set_to_none=False)
    if step > 0:
        times.append(time.perf_counter() - start)
times.sort()
print(f"transformers\t{batch}\t{seconds}\t{threads}\t{times[len(times) // 2]:.4f}\t{times[0]:.4f}")

"""Shards written by asr-shards open in Python: pyarrow (memory-mapped IPC stream) and
Hugging Face `datasets` (`Dataset.from_file` and `load_dataset("arrow", ...)`), with the
columns, types, schema metadata and values the Rust side wrote.

Run by `tools/interop-test.sh`, which writes the packs with
`cargo run -p asr-shards --example write_interop_shards -- DIR` and calls
`python tests/interop/test_shards_pyarrow.py DIR` in the venv of
`tests/interop/requirements.txt`. Works under pytest too (`SHARDS_DIR=DIR pytest ...`).
"""

import json
import os
import sys
import tempfile
import traceback

import numpy as np
import pyarrow as pa

SHARDS_DIR = os.environ.get("SHARDS_DIR", "")


def pack_dir(dtype: str) -> str:
    return os.path.join(SHARDS_DIR, dtype)


def expected():
    with open(os.path.join(SHARDS_DIR, "expected.json")) as f:
        return json.load(f)


def expected_rows(split: str):
    return [r for r in expected()["rows"] if r["split"] == split]


def shard_files(dtype: str, split: str):
    with open(os.path.join(pack_dir(dtype), "manifest.json")) as f:
        manifest = json.load(f)
    return [os.path.join(pack_dir(dtype), s["file"]) for s in manifest["splits"][split]["shards"]]


def expected_schema(audio_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("audio", pa.list_(pa.field("item", audio_type, nullable=False)), nullable=False),
            pa.field("num_samples", pa.uint32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("labels", pa.list_(pa.field("item", pa.int32(), nullable=False)), nullable=False),
            pa.field("speaker", pa.string(), nullable=True),
            pa.field("source", pa.string(), nullable=False),
        ]
    )


def quantize(audio_f32) -> np.ndarray:
    x = np.round(np.asarray(audio_f32, dtype=np.float32) * np.float32(32768.0))
    return np.clip(x, -32768, 32767).astype(np.int16)


def check_rows(table_rows, want_rows, dtype: str):
    assert len(table_rows) == len(want_rows), (len(table_rows), len(want_rows))
    for got, want in zip(table_rows, want_rows):
        for key in ("id", "num_samples", "text", "labels", "speaker", "source"):
            assert got[key] == want[key], (key, got[key], want[key])
        audio = np.asarray(got["audio"])
        assert len(audio) == want["num_samples"]
        if dtype == "int16":
            assert np.array_equal(audio.astype(np.int16), quantize(want["audio_f32"])), want["id"]
        else:
            assert np.array_equal(audio.astype(np.float32), np.asarray(want["audio_f32"], np.float32))


def test_pyarrow_memory_maps_every_shard_with_schema_and_metadata():
    for dtype, audio_type in (("int16", pa.int16()), ("float32", pa.float32())):
        for split in ("train", "test"):
            tables = []
            for path in shard_files(dtype, split):
                with pa.memory_map(path) as source:
                    table = pa.ipc.open_stream(source).read_all()
                assert table.schema.equals(expected_schema(audio_type)), table.schema
                meta = table.schema.metadata
                assert meta[b"asr.sample_rate"] == b"16000"
                assert meta[b"asr.format_version"] == b"1"
                assert json.loads(meta[b"asr.vocab"]) == expected()["vocab"]
                tables.append(table)
            assert len(tables) >= 2, f"{dtype}/{split} should span several shards"
            check_rows(pa.concat_tables(tables).to_pylist(), expected_rows(split), dtype)


def test_pyarrow_reads_one_record_batch_at_a_time():
    path = shard_files("int16", "train")[0]
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_stream(source)
        sizes = [batch.num_rows for batch in reader]
    assert sizes[:-1] == [4] * (len(sizes) - 1), sizes


def readme_snippet(shards: str):
    """The README's example, verbatim apart from the folder name."""
    import json

    import numpy as np
    import pyarrow as pa
    from datasets import Dataset, concatenate_datasets, load_dataset

    manifest = json.load(open(f"{shards}/manifest.json"))
    train_files = [f"{shards}/{s['file']}" for s in manifest["splits"]["train"]["shards"]]

    # pyarrow: each shard is an Arrow IPC stream; memory-mapped, read batch by batch or whole.
    with pa.memory_map(train_files[0]) as source:
        table = pa.ipc.open_stream(source).read_all()
    vocab = json.loads(table.schema.metadata[b"asr.vocab"])

    # Hugging Face datasets: memory-mapped, no copy.
    train = concatenate_datasets([Dataset.from_file(f) for f in train_files])
    # or, every split at once:
    splits = load_dataset(
        "arrow",
        data_files={
            name: [f"{shards}/{s['file']}" for s in split["shards"]]
            for name, split in manifest["splits"].items()
        },
    )
    row = train[0]
    audio = np.asarray(row["audio"], dtype=np.float32) / 32768.0  # int16 -> [-1, 1]
    return table, vocab, train, splits, audio


def test_readme_snippet_with_hugging_face_datasets():
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HF_HOME"] = cache
        os.environ["HF_DATASETS_CACHE"] = os.path.join(cache, "datasets")
        table, vocab, train, splits, audio = readme_snippet(pack_dir("int16"))
        assert vocab == expected()["vocab"]
        assert table.num_rows > 0
        want_train = expected_rows("train")
        assert train.num_rows == len(want_train)
        assert set(splits.keys()) == {"train", "test"}
        assert splits["test"].num_rows == len(expected_rows("test"))
        assert train.column_names == ["id", "audio", "num_samples", "text", "labels", "speaker", "source"]
        check_rows(list(train), want_train, "int16")
        check_rows(list(splits["test"]), expected_rows("test"), "int16")
        assert np.allclose(audio, quantize(want_train[0]["audio_f32"]) / 32768.0)
        # The features carry the stored types.
        assert train.features["audio"].feature.dtype == "int16", train.features
        assert train.features["labels"].feature.dtype == "int32", train.features
        assert train.features["num_samples"].dtype == "uint32", train.features
        # The labels decode back to the transcript with the stored vocabulary.
        id_to_token = {i: t for t, i in vocab.items()}
        first = train[0]
        decoded = "".join(id_to_token[i] for i in first["labels"]).replace("|", " ")
        assert decoded == first["text"], (decoded, first["text"])


def test_dataset_from_file_opens_float32_shards():
    from datasets import Dataset

    with tempfile.TemporaryDirectory() as cache:
        os.environ["HF_HOME"] = cache
        files = shard_files("float32", "test")
        rows = [r for f in files for r in Dataset.from_file(f)]
        check_rows(rows, expected_rows("test"), "float32")


def main() -> int:
    global SHARDS_DIR
    if len(sys.argv) > 1:
        SHARDS_DIR = sys.argv[1]
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tests = [(name, fn) for name, fn in sorted(globals().items()) if name.startswith("test_")]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print(f"ok     {name}")
        except Exception:  # report every failing test, then fail
            failed += 1
            print(f"FAILED {name}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

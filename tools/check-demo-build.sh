#!/usr/bin/env bash
# After `cargo test --workspace`: the demo's `cargo build -p asr-data -p asr-train` must
# compile nothing. It reuses the test build only while the workspace's "Feature pins"
# (Cargo.toml) match the features the dev-dependencies turn on; when they drift, a user
# who runs the tests and then the demo compiles tch, tokenizers, hf-hub and clap twice.
#   tools/check-demo-build.sh
# Exits 1 and names the crates it compiled when the build was not a no-op.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cargo build --locked -p asr-data -p asr-train --message-format json |
    python3 -c '
import json, sys
built = sorted({m["target"]["name"] for m in map(json.loads, sys.stdin)
                if m.get("reason") == "compiler-artifact" and not m["fresh"]})
if built:
    sys.exit("the demo build compiled again after cargo test: " + ", ".join(built) +
             "\nalign the [workspace.dependencies] feature pins in Cargo.toml with the"
             " features `cargo tree -e features --workspace` shows for these crates")
print("demo build: nothing to compile after cargo test")
'

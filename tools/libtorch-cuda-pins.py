#!/usr/bin/env python3
"""The CUDA libraries the torch wheel was built against, as exact pins, read from the
wheels' own metadata (standard library only; run by tools/install-libtorch-cuda.sh).

    python3 tools/libtorch-cuda-pins.py TORCH_WHEEL [CUDA_TOOLKIT_WHEEL]

With the torch wheel alone it prints the Linux `Requires-Dist` entries that carry shared
libraries: the `nvidia-*` packages (cuDNN, cuSPARSELt, NCCL, NVSHMEM) and the
`cuda-toolkit[...]==X` meta-package with its extras. Given the cuda-toolkit wheel of that
version too, it replaces the meta-package by the `nvidia-*` pins its METADATA gives for
those extras (cuBLAS, the CUDA runtime, cuFFT, cuRAND, ...), plus the header-only
`crt` and `cccl` extras that the NCCL shim's build needs. One requirement a line,
e.g. `nvidia-nccl-cu13==2.28.9`. Python-only dependencies (triton, cuda-bindings,
sympy...) are left out: libtorch does not load them.
"""
from __future__ import annotations

import re
import sys
import zipfile

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def metadata(wheel: str) -> list[str]:
    """The Requires-Dist values of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def parse(entry: str) -> tuple[str, set[str], str, str]:
    """(name, extras, '==version' (else ''), marker) of one Requires-Dist value."""
    m = REQUIREMENT.match(entry)
    if not m:
        sys.exit(f"error: cannot read the requirement {entry!r}")
    name, extras, pin, marker = m.groups()
    extras = {e.strip() for e in (extras or "[]")[1:-1].split(",") if e.strip()}
    pin = (pin or "").replace(" ", "")
    if not re.fullmatch(r"==[0-9][0-9A-Za-z.*+]*", pin):
        pin = ""
    return name.lower(), extras, pin, (marker or "")[1:].strip()


def on_linux(marker: str) -> bool:
    """Whether a marker can hold on Linux (the only platform markers these wheels use)."""
    if not marker:
        return True
    return "linux" in marker.lower()


# Header-only parts of the toolkit that torch's CUDA headers include and the wheel's
# dependencies leave out: `crt/host_config.h` (cuda_runtime.h) and CCCL's `nv/target`
# (cuda_fp16.h). tools/build-nccl-shim.sh compiles against them; nothing loads them.
HEADER_EXTRAS = {"crt", "cccl"}


def torch_pins(torch_wheel: str) -> tuple[list[str], tuple[str, set[str]] | None]:
    """The nvidia-* pins and the cuda-toolkit (pin, extras) of the torch wheel."""
    pins, toolkit = [], None
    for entry in metadata(torch_wheel):
        name, extras, pin, marker = parse(entry)
        if "extra ==" in marker or not on_linux(marker):
            continue
        if name.startswith("nvidia-") or name == "cuda-toolkit":
            if not pin:
                sys.exit(f"error: {torch_wheel}: {entry!r} is not pinned to one version")
            if name == "cuda-toolkit":
                toolkit = (f"{name}{pin}", extras)
            else:
                pins.append(f"{name}{pin}")
    return pins, toolkit


def toolkit_pins(toolkit_wheel: str, extras: set[str]) -> list[str]:
    """The nvidia-* pins the cuda-toolkit wheel gives for `extras`."""
    pins, found = [], set()
    for entry in metadata(toolkit_wheel):
        name, _, pin, marker = parse(entry)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if not extra or extra.group(1) not in extras or not on_linux(marker):
            continue
        found.add(extra.group(1))
        pins.append(f"{name}{pin}")
    missing = extras - found
    if missing:
        sys.exit(f"error: {toolkit_wheel} has no extra(s) {', '.join(sorted(missing))}")
    return sorted(set(pins))


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    pins, toolkit = torch_pins(sys.argv[1])
    if toolkit is None:
        sys.exit(f"error: {sys.argv[1]} does not depend on cuda-toolkit: not a CUDA wheel?")
    if len(sys.argv) == 3:
        pins += toolkit_pins(sys.argv[2], toolkit[1] | HEADER_EXTRAS)
    else:
        pins.append(f"{toolkit[0].replace('==', '[' + ','.join(sorted(toolkit[1])) + ']==')}")
    print("\n".join(pins))


if __name__ == "__main__":
    main()

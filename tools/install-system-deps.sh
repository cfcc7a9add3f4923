#!/usr/bin/env bash
# Debian packages the corpus tools need: espeak-ng (speech synthesis), sox with MP3
# support, flac, lame and ffmpeg (encoders). Only the fixture and benchmark corpus
# generators need them; building and testing the project does not.
set -euo pipefail
packages=(espeak-ng sox libsox-fmt-mp3 flac lame ffmpeg)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2

#!/usr/bin/env bash
# Regenerates the small audio fixtures of this folder from one source signal, with the encoders
# from Debian (apt-get install sox flac lame vorbis-tools ffmpeg). The fixtures are committed, so
# the tests need none of these tools; run this only to change them.
#
# source.wav: 0.5 s, 44.1 kHz, 16-bit stereo, two sine sweeps (non-periodic, so that a
# cross-correlation has one sharp peak and any offset of decoded frames shows).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export LC_ALL=C

sox -n -r 44100 -b 16 -c 2 source.wav synth 0.5 sine 220-1760 sine 330-990 gain -6 fade t 0.01 0.5 0.01
# An 8x8 PNG as cover art.
ffmpeg -loglevel error -y -f lavfi -i color=c=blue:s=8x8 -frames:v 1 cover.png

flac --silent --force -8 -o sweep.flac \
    -T "TITLE=Blue Sweep" -T "ARTIST=The Test Tones" -T "ALBUM=Fixtures" -T "TRACKNUMBER=3" \
    --picture="3|image/png|||cover.png" source.wav
lame --quiet -b 192 --tt "Red Glide" --ta "The Test Tones" --tl "Fixtures" --tn 4 \
    --ti cover.png source.wav sweep.mp3
oggenc --quiet -q 5 -t "Green Rise" -a "Other Band" -l "Elsewhere" -N 5 -o sweep.ogg source.wav
ffmpeg -loglevel error -y -i source.wav -c:a aac -b:a 160k -metadata title="Aac Sweep" sweep-aac.m4a
ffmpeg -loglevel error -y -i source.wav -c:a alac -metadata title="Alac Sweep" sweep-alac.m4a
# Short ones, to keep the folder small: 0.25 s of AIFF, 0.1 s of 64-bit float WAV (an encoding
# hound lacks), both the source's first channel.
sox source.wav -c 1 sweep-mono.aiff remix 1 trim 0 0.25
sox source.wav -c 1 -e floating-point -b 64 sweep-f64.wav remix 1 trim 0 0.1
# 5.1 at 48 kHz, 0.25 s: the first source channel on the front left and rear left speakers.
sox source.wav -r 48000 -c 1 mono48.wav remix 1 trim 0 0.25
sox -M mono48.wav mono48.wav mono48.wav mono48.wav mono48.wav mono48.wav -b 16 six.wav \
    remix 1 0 0 0 5 0
flac --silent --force -o surround-5.1.flac --channel-map=none six.wav 2>/dev/null \
    || flac --silent --force -o surround-5.1.flac six.wav
rm -f mono48.wav six.wav
# Formats the player does not decode: Opus in Ogg, WMA in ASF.
ffmpeg -loglevel error -y -i source.wav -c:a libopus -b:a 64k sweep.opus
ffmpeg -loglevel error -y -i source.wav -c:a wmav2 -b:a 96k sweep.wma
ls -l

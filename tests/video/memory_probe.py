"""Run as a script by test_memory.py: read every clip of a video and report memory use as JSON.

A separate process, so that the measurement sees only this reading. The peak is the kernel's VmHWM
(high-water mark of this process's memory map), not ru_maxrss, which Linux carries over from the
parent across fork and exec.
"""

import json
import sys
import time

from vidsearch.video import ClipSpec, get_preprocess_preset, probe, read_clips, segment


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(f"{field}:"))
    return int(line.split()[1])


def main(path: str, clip_length_s: float) -> None:
    spec = get_preprocess_preset("viclip")
    before = _status_kb("VmRSS") * 1024
    info = probe(path)
    clips = segment(info, ClipSpec(length_s=clip_length_s))
    started = time.monotonic()
    stream = read_clips(path, clips, spec)
    count = sum(1 for _ in stream)
    peak = _status_kb("VmHWM") * 1024
    print(json.dumps({
        "clips": count,
        "expected_clips": len(clips),
        "duration_s": info.duration_s,
        "height": info.height,
        "rss_before_mb": before / 2**20,
        "peak_growth_mb": (peak - before) / 2**20,
        "seconds": time.monotonic() - started,
        "frames_decoded": stream.stats.frames_decoded,
    }))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))

#!/usr/bin/env python3
"""Reads cotune's TensorBoard event files with the `tensorboard` package and checks their scalars.

Checks, in order:
  1. tests/golden/track/tb/ (the bytes pinned by the C++ test TensorBoard.GoldenBytes): every scalar,
     tag, step and wall time, and the text event, as written by that test.
  2. With --build BUILD_DIR: runs BUILD_DIR/tests/track_demo_run into a temp folder (a synthetic 60-step
     run through MetricsHub), and checks that TensorBoard's scalars equal metrics.jsonl's, record for record
     (to float32 precision). Then it resumes that run from step 30 with different values
     (--resume-from 30) and checks that TensorBoard, purging the abandoned tail through the SessionLog
     START event, again agrees with the truncated-and-appended metrics.jsonl; and that a fresh run into
     the same folder hides the older runs' events.
  3. With --run OUTPUT_DIR (repeatable): the same jsonl-vs-TensorBoard comparison for a real run.
  4. With --server (and --build): starts the `tensorboard` server itself on a free loopback port (its
     Rust data server, --load_fast=true, which is what the UI reads through) on the resumed demo run and
     compares its HTTP scalars API with metrics.jsonl, and checks the text plugin lists the sample.

Usage:  pip install tensorboard
        python3 tools/check_tensorboard.py --build build
Exit status 0 when every check passes; 1 with a message naming the tag / step otherwise; 77 (skip)
when the tensorboard package is missing. CTest runs it as `track_check_tensorboard` (label `tools`).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util
except ImportError:
    print("SKIP: the tensorboard package is not installed (pip install tensorboard)")
    sys.exit(77)  # the automake / CTest SKIP_RETURN_CODE convention

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def load(logdir):
    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0})  # 0: keep everything
    acc.Reload()
    return acc


def f32(x):
    import struct
    return struct.unpack("<f", struct.pack("<f", x))[0]


def tag_of(key):
    return "eval/" + key[5:] if key.startswith("eval_") and len(key) > 5 else "train/" + key


def check_golden():
    logdir = os.path.join(REPO, "tests", "golden", "track", "tb")
    if not os.path.isdir(logdir):
        fail(f"{logdir} is missing (run test_track with COTUNE_UPDATE_GOLDEN=1)")
    acc = load(logdir)
    tags = acc.Tags()
    expected_scalars = {
        "train/loss": [(s, 3.0 - 0.25 * s) for s in range(1, 5)],
        "train/lr": [(s, 1e-4 * s) for s in range(1, 5)],
        "train/grad_norm": [(s, 0.5 + s) for s in range(1, 5)],
        "train/tokens": [(s, 100.0 * s) for s in range(1, 5)],
        "eval/loss": [(4, 2.125)],
        "eval/mean_token_accuracy": [(4, 0.5)],
    }
    if sorted(tags["scalars"]) != sorted(expected_scalars):
        fail(f"golden: scalar tags {sorted(tags['scalars'])}, expected {sorted(expected_scalars)}")
    n = 0
    for tag, want in expected_scalars.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        if len(got) != len(want):
            fail(f"golden {tag}: {len(got)} points, expected {len(want)}")
        for (gs, gv), (ws, wv) in zip(got, want):
            if gs != ws or gv != f32(wv):
                fail(f"golden {tag}: (step {gs}, {gv}) != (step {ws}, {f32(wv)})")
            n += 1
        for e in acc.Scalars(tag):
            if e.wall_time != 1700000000.5:
                fail(f"golden {tag}: wall_time {e.wall_time}")
    if "sample/after" not in tags["tensors"]:
        fail(f"golden: text tag sample/after missing; tensor tags {tags['tensors']}")
    t = acc.Tensors("sample/after")
    text = tensor_util.make_ndarray(t[0].tensor_proto).item().decode("utf-8")
    if t[0].step != 4 or text != "<think>short reasoning</think> answer":
        fail(f"golden text: step {t[0].step} {text!r}")
    meta = acc.SummaryMetadata("sample/after")
    if meta.plugin_data.plugin_name != "text":
        fail(f"golden text: plugin {meta.plugin_data.plugin_name!r}")
    print(f"ok  golden file: {n} scalars in {len(expected_scalars)} tags + 1 text event read by tensorboard "
          f"{__import__('tensorboard').__version__}, all equal")


def compare_run(out_dir, label):
    jsonl = os.path.join(out_dir, "metrics.jsonl")
    tb = os.path.join(out_dir, "tb")
    if not os.path.isfile(jsonl) or not os.path.isdir(tb):
        fail(f"{label}: expected {jsonl} and {tb}/")
    want = {}  # tag -> {step: value}
    with open(jsonl) as f:
        for line_no, line in enumerate(f, 1):
            rec = json.loads(line)
            step = rec.pop("step")
            for k, v in rec.items():
                if v is None:
                    v = math.nan
                if not isinstance(v, (int, float)):
                    continue
                slot = want.setdefault(tag_of(k), {})
                if step in slot:
                    fail(f"{label}: {jsonl} line {line_no}: {k} logged twice at step {step}")
                slot[step] = float(v)
    acc = load(tb)
    got_tags = set(acc.Tags()["scalars"])
    if got_tags != set(want):
        fail(f"{label}: TensorBoard tags {sorted(got_tags)} != metrics.jsonl keys {sorted(want)}")
    n = 0
    for tag, by_step in want.items():
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        if steps != sorted(by_step):
            fail(f"{label} {tag}: TensorBoard steps {steps[:5]}..{steps[-5:]} != jsonl steps "
                 f"{sorted(by_step)[:5]}..{sorted(by_step)[-5:]} ({len(steps)} vs {len(by_step)})")
        for e in events:
            w = f32(by_step[e.step])
            if not (e.value == w or (math.isnan(e.value) and math.isnan(w))):
                fail(f"{label} {tag} step {e.step}: TensorBoard {e.value} != jsonl {w}")
            n += 1
    files = sorted(os.listdir(tb))
    print(f"ok  {label}: {n} scalars in {len(want)} tags from {len(files)} event file(s) equal metrics.jsonl")
    return acc


def check_server(out, label):
    import socket
    import time
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["tensorboard", "--logdir", os.path.join(out, "tb"), "--host", "127.0.0.1",
                             "--port", str(port), "--load_fast=true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        tags = None
        for _ in range(120):  # the data server needs a few seconds to start and load
            time.sleep(0.5)
            try:
                tags = json.load(urllib.request.urlopen(base + "/scalars/tags", timeout=5)).get(".", {})
                if "train/loss" in tags:
                    break
            except OSError:
                continue
        if not tags:
            fail(f"{label}: the tensorboard server on port {port} served no scalars")
        want = {}
        with open(os.path.join(out, "metrics.jsonl")) as f:
            for line in f:
                rec = json.loads(line)
                step = rec.pop("step")
                for k, v in rec.items():
                    if isinstance(v, (int, float)):
                        want.setdefault(tag_of(k), {})[step] = f32(float(v))
        n = 0
        for tag, by_step in want.items():
            url = f"{base}/scalars/scalars?run=.&tag={urllib.request.quote(tag)}"
            got = {step: value for _, step, value in json.load(urllib.request.urlopen(url, timeout=10))}
            if sorted(got) != sorted(by_step):
                fail(f"{label} {tag}: server steps differ from metrics.jsonl ({len(got)} vs {len(by_step)})")
            for step, v in by_step.items():
                if got[step] != v:
                    fail(f"{label} {tag} step {step}: server {got[step]} != jsonl {v}")
                n += 1
        text_tags = json.load(urllib.request.urlopen(base + "/text/tags", timeout=5)).get(".", [])
        if "sample/after" not in text_tags:
            fail(f"{label}: text plugin tags {text_tags}")
        print(f"ok  {label}: the tensorboard server (load_fast) serves {n} scalars equal to metrics.jsonl + the text sample")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def check_demo(build_dir, server=False):
    demo = os.path.join(build_dir, "tests", "track_demo_run")
    if not os.access(demo, os.X_OK):
        fail(f"{demo} not found: build the track_demo_run target")
    with tempfile.TemporaryDirectory(prefix="cotune-tb-check-") as out:
        subprocess.run([demo, out], check=True, capture_output=True)
        acc = compare_run(out, "demo run (60 steps)")
        if len(acc.Scalars("train/loss")) != 60 or len(acc.Scalars("eval/loss")) != 6:
            fail("demo run: expected 60 train/loss and 6 eval/loss points")
        before = {e.step: e.value for e in acc.Scalars("train/loss")}
        subprocess.run([demo, out, "--resume-from", "30"], check=True, capture_output=True)
        acc = compare_run(out, "demo run resumed at step 30")
        after = {e.step: e.value for e in acc.Scalars("train/loss")}
        if len(after) != 60 or any(after[s] != before[s] for s in range(1, 31)):
            fail("resume: steps 1..30 should be the first run's")
        if all(after[s] == before[s] for s in range(31, 61)):
            fail("resume: steps 31..60 still show the abandoned run's values")
        print("ok  resume: TensorBoard dropped the abandoned steps 31..60 (SessionLog START purge)")
        if server:
            check_server(out, "resumed demo run")
        subprocess.run([demo, out], check=True, capture_output=True)
        compare_run(out, "a fresh run into the same folder")
        print("ok  fresh run: the older runs' events no longer show (SessionLog START at step 1)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", help="build folder holding tests/track_demo_run")
    ap.add_argument("--run", action="append", default=[], help="a run's OUTPUT folder (metrics.jsonl + tb/)")
    ap.add_argument("--server", action="store_true", help="also query a real tensorboard server (with --build)")
    args = ap.parse_args()
    check_golden()
    if args.build:
        check_demo(args.build, server=args.server)
    for r in args.run:
        compare_run(r, r)
    print("PASS")


if __name__ == "__main__":
    main()

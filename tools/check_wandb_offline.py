#!/usr/bin/env python3
"""Checks cotune's offline W&B runs with the official `wandb` package (pip install wandb).

1. Trains the demo for a few steps with `--report-to wandb --wandb-mode offline` (cotune from --build).
2. Reads wandb/offline-run-*/run-*.wandb back:
   - with the client's own reader, wandb.sdk.internal.datastore (wandb <= 0.30 ships it), when importable;
   - always: every record parsed with the client's protobuf schema (wandb.proto.wandb_internal_pb2.Record).
3. Runs `wandb sync` on the folder against a loopback fake W&B server (below; 127.0.0.1, random port) and
   checks that the client uploaded the run as cotune logged it: UpsertBucket with the run id and config,
   every history row through file_stream, the summary, console output, the samples table file, and the
   final "complete" with exit code 0.

Exit 0 when all checks pass, 1 on a failure, 77 when `wandb` is not installed (CTest: skipped).
Usage: tools/check_wandb_offline.py --build BUILD_DIR [--keep DIR]
"""
import argparse
import glob
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib

try:
    import wandb  # noqa: F401
    from wandb.proto import wandb_internal_pb2 as pb
except ImportError:
    print("wandb is not installed (pip install wandb); skipping")
    sys.exit(77)

SRC = os.environ.get("COTUNE_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "c0ffee" * 6 + "beef"  # a 40-character key the fake server accepts


class FakeServer(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.lock = threading.Lock()
        self.runs = {}  # name -> {"upsert": vars, "files": {file: [lines]}, "uploads": {}, "final": body}


class FakeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self):
        m = re.match(r"/upload/([^/]+)/(.+)", self.path)
        body = self._body()
        with self.server.lock:
            if m and m.group(1) in self.server.runs:
                self.server.runs[m.group(1)]["uploads"][m.group(2)] = body
        self._reply({})

    def do_POST(self):
        body = self._body()
        srv = self.server
        if self.path.startswith("/sdk/"):  # the client's own telemetry
            return self._reply({})
        try:
            j = json.loads(body)
        except ValueError:
            return self._reply({"error": "not json"}, 400)
        if self.path == "/graphql":
            q, v = j.get("query", ""), j.get("variables") or {}
            with srv.lock:
                if "mutation UpsertBucket" in q:
                    run = srv.runs.setdefault(v["name"], {"upsert": {}, "files": {}, "uploads": {}, "final": None})
                    for k, val in v.items():
                        if val is not None:
                            run["upsert"][k] = val
                    return self._reply({"data": {"upsertBucket": {"inserted": True, "bucket": {
                        "id": "b1", "name": v["name"], "displayName": v.get("displayName") or "fake",
                        "description": "", "config": "{}", "sweepName": None, "historyLineCount": 0,
                        "project": {"id": "p1", "name": v.get("project") or "p",
                                    "entity": {"id": "e1", "name": v.get("entity") or "fake-entity"}}}}}})
                if "mutation CreateRunFiles" in q:
                    port = srv.server_address[1]
                    files = [{"name": f, "uploadUrl": f"http://127.0.0.1:{port}/upload/{v['run']}/{f}"} for f in v["files"]]
                    return self._reply({"data": {"createRunFiles": {"runID": "b1", "uploadHeaders": [], "files": files}}})
                if "viewer" in q:
                    return self._reply({"data": {"viewer": {"id": "u1", "entity": "fake-entity", "username": "fake"}}})
            return self._reply({"data": {}})
        m = re.match(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", self.path)
        if m:
            with srv.lock:
                run = srv.runs.setdefault(m.group(3), {"upsert": {}, "files": {}, "uploads": {}, "final": None})
                for name, chunk in j.get("files", {}).items():
                    lines = run["files"].setdefault(name, [])
                    off = 0 if name == "wandb-summary.json" else chunk["offset"]
                    if name == "wandb-summary.json":
                        lines.clear()
                    for i, line in enumerate(chunk["content"]):
                        if off + i < len(lines):
                            lines[off + i] = line
                        else:
                            lines.append(line)
                if j.get("complete"):
                    run["final"] = j
            return self._reply({"exitcode": None, "limits": {}})
        self._reply({}, 404)


def read_frames(path):
    """The .wandb framing (7-byte header, 32 KiB blocks, zlib CRC-32 over type + payload), independently."""
    data = open(path, "rb").read()
    assert data[:7] == b":W&B\xe1\xbe\x00", f"bad header {data[:7]!r}"
    off, records, cur = 7, [], b""
    while off < len(data):
        left = 32768 - off % 32768
        if left < 7:
            off += left
            continue
        crc, n, t = struct.unpack("<IHB", data[off:off + 7])
        payload = data[off + 7:off + 7 + n]
        assert crc == zlib.crc32(bytes([t]) + payload), f"bad checksum at byte {off}"
        cur += payload
        off += 7 + n
        if t in (1, 4):
            records.append(cur)
            cur = b""
    return records


def read_with_datastore(path):
    from wandb.sdk.internal import datastore  # wandb <= 0.30
    ds = datastore.DataStore()
    ds.open_for_scan(path)
    out = []
    while True:
        data = ds.scan_data()
        if data is None:
            break
        out.append(data)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--keep", help="write the run here instead of a temporary folder")
    args = ap.parse_args()
    cotune = os.path.join(args.build, "bin", "cotune")
    work = args.keep or tempfile.mkdtemp(prefix="cotune-wandb-")
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    env = dict(os.environ, HOME=work, WANDB_MODE="offline")
    for k in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        env.pop(k, None)
    subprocess.run([cotune, "init-model", "--output", f"{work}/model", "--preset", "demo", "--vocab-from",
                    "recipes/data/demo_medical.jsonl"], cwd=SRC, check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([cotune, "train", "--recipe", "recipes/demo.toml", "--model", f"{work}/model", "--output",
                    f"{work}/run", "--max-steps", "4", "--eval-steps", "2", "--logging-steps", "2",
                    "--max-seq-length", "64", "--batch-size", "2", "--grad-accum", "1", "--data-cache", "false",
                    "--sample-questions", "2", "--sample-max-new-tokens", "4", "--report-to", "wandb",
                    "--wandb-mode", "offline", "--wandb-project", "offline-check", "--run-name", "offline-demo"],
                   cwd=SRC, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dirs = glob.glob(f"{work}/run/wandb/offline-run-*")
    check(len(run_dirs) == 1, f"one offline run folder ({run_dirs})")
    run_dir = run_dirs[0]
    log = glob.glob(f"{run_dir}/run-*.wandb")[0]
    run_id = os.path.basename(log)[4:-6]

    frames = read_frames(log)
    try:
        via = read_with_datastore(log)
        check(via == frames, f"wandb {wandb.__version__} datastore reads {len(via)} records, the same bytes")
    except ImportError:
        print(f"note: wandb {wandb.__version__} has no Python datastore; its Go reader is checked by `wandb sync`")
    kinds = {}
    history = []
    for data in frames:
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind is None:
            check(False, f"record {rec.num} has a record type the client knows")
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "history":
            history.append({(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in rec.history.item})
        if kind == "run":
            check(rec.run.run_id == run_id and rec.run.project == "offline-check" and rec.run.display_name == "offline-demo",
                  "run record: id, project, name")
            config = {it.key: json.loads(it.value_json) for it in rec.run.config.update}
            check(config.get("lr") == 0.005 and config.get("max_steps") == 4, "run record: config has the recipe")
    print(f"records: {len(frames)} {json.dumps(kinds, sort_keys=True)}")
    check(kinds.get("run") == 1 and kinds.get("exit") == 1, "one run record and one exit record")
    train_rows = [h for h in history if "train/loss" in h]
    check(len(train_rows) == 4 and [h["train/global_step"] for h in train_rows] == [1, 2, 3, 4],
          "history: 4 steps with train/loss and train/global_step")
    check(sum("eval/loss" in h for h in history) == 2, "history: 2 evaluations (eval/loss)")
    check(kinds.get("stats", 0) >= 1, "system metrics (stats records)")
    check(kinds.get("output_raw", 0) >= 5, "console output (output_raw records)")

    server = FakeServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    senv = dict(env, WANDB_API_KEY=KEY, WANDB_BASE_URL=url)
    senv.pop("WANDB_MODE")
    wandb_cli = shutil.which("wandb") or "wandb"
    p = subprocess.run([wandb_cli, "sync", run_dir], env=senv, cwd=work, capture_output=True, text=True, timeout=180)
    print("wandb sync:", (p.stdout + p.stderr).strip().replace("\n", " | ")[:600])
    check(p.returncode == 0, "wandb sync exits 0")
    server.shutdown()
    run = server.runs.get(run_id)
    check(run is not None, f"the server got run {run_id}")
    if run:
        up = run["upsert"]
        cfg = json.loads(up.get("config", "{}"))
        check(up.get("project") == "offline-check", "UpsertBucket project")
        check(cfg.get("lr", {}).get("value") == 0.005 and "model_identity" in cfg, "UpsertBucket config (recipe keys, model identity)")
        rows = [json.loads(x) for x in run["files"].get("wandb-history.jsonl", [])]
        check(len(rows) == len(history), f"file_stream history: {len(rows)} rows (the log has {len(history)})")
        check([r["train/global_step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4], "file_stream history steps")
        summary = json.loads(run["files"].get("wandb-summary.json", ["{}"])[0])
        check("train/train_runtime" in summary and "eval/loss" in summary, "summary uploaded")
        check(len(run["files"].get("wandb-events.jsonl", [])) >= 1, "system metrics uploaded")
        check(any("step 2/4" in x for x in run["files"].get("output.log", [])), "console output uploaded")
        tables = [f for f in run["uploads"] if f.startswith("media/table/samples_")]
        if run["uploads"]:
            check(len(tables) == 1 and len(json.loads(run["uploads"][tables[0]])["data"]) == 2, "samples table uploaded")
        else:  # wandb <= 0.18's Python sync uploads no run files from an offline folder
            print(f"note: wandb {wandb.__version__} sync uploaded no run files; the table check needs a newer wandb")
        final = run["final"] or {}
        check(final.get("complete") is True and final.get("exitcode") == 0, "final file_stream: complete, exit code 0")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS" if not failures else f"FAILED: {len(failures)} check(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())

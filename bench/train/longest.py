"""The longest single sequence that trains on this GPU, for cotune (bench_train) and the HF + PEFT baseline
(hf_baseline.py): issue 8 (c). Called by longest.sh; see bench/train/README.md.

"Trains" = one optimizer step (forward, backward, update) of one sequence of L tokens, batch 1, completes with a
finite loss and no out-of-memory. Every trial is a separate process (a failed allocation leaves nothing behind),
under a timeout. Search per system: start at --start (8192) and double until a trial fails (or --cap), then
bisect between the last pass and the first failure until they are within --tol (5%) of each other, lengths
rounded to multiples of --grain (1024).

cotune trials above --full-until are memory probes (bench_train --split N: the same buffers and workspaces as
one sequence of L, whose sizes depend only on the token count, but attention over pieces of N tokens, so a probe
costs seconds where a real step at 300k tokens costs minutes); the length the probes find is then confirmed by
a real single-sequence step (--no-verify skips that), and if that step fails the search goes on below it with
real steps. The baseline's trials are always real steps.

Results: OUT/trials.jsonl (one line per trial, appended as they finish; trials already there, or in --resume
files, are not run again), OUT/logs/*.log (each trial's stdout and stderr), a table on stdout and, last, one
JSON line {"cotune_max": ..., "hf_max": ..., "ratio": ..., ...}.
"""
import argparse
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ("cotune", "hf")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="longest.sh", description="longest single sequence that trains (issue 8 c)")
    ap.add_argument("bench_train", help='the bench_train command, may be several words (".gpu/run bench_train")')
    ap.add_argument("config", help="model config.json (the 1.5B shape)")
    ap.add_argument("out", help="output folder")
    ap.add_argument("systems", nargs="*", default=list(SYSTEMS), help="cotune and/or hf (default both)")
    ap.add_argument("--start", type=int, default=8192)
    ap.add_argument("--cap", type=int, default=1048576)
    ap.add_argument("--tol", type=float, default=0.05, help="stop when first failure - last pass <= tol * last pass")
    ap.add_argument("--grain", type=int, default=1024, help="lengths are multiples of this")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per trial, plus the two terms below")
    ap.add_argument("--timeout-quadratic", type=float, default=40.0,
                    help="extra seconds per (L / 100k)^2 for a real step (its attention is quadratic in L)")
    ap.add_argument("--timeout-linear", type=float, default=5.0, help="extra seconds per 100k tokens")
    ap.add_argument("--full-until", type=int, default=8192,
                    help="cotune: real steps up to this length while searching, memory probes above it")
    ap.add_argument("--probe-split", type=int, default=2048, help="cotune probes: pieces of this many tokens")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="cotune: do not confirm the probes' answer with a real step")
    ap.add_argument("--cotune-args", default="--4bit --optim adamw8bit",
                    help="extra bench_train arguments (default: NF4 base + 8-bit AdamW)")
    ap.add_argument("--hf-args", default="", help="extra hf_baseline.py arguments (e.g. --device cpu)")
    ap.add_argument("--python", default=os.environ.get("PYTHON", "python3"))
    ap.add_argument("--resume", action="append", default=[], help="trials.jsonl of an earlier run to reuse")
    a = ap.parse_intermixed_args(argv)
    for s in a.systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (cotune or hf)")
    if a.start < 2 or a.cap < a.start or a.grain < 1 or not 0 < a.tol < 1:
        ap.error("need 2 <= start <= cap, grain >= 1, 0 < tol < 1")
    return a


class Runner:
    def __init__(self, a):
        self.a = a
        os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
        self.path = os.path.join(a.out, "trials.jsonl")
        self.cache = {}
        self.trials_run = 0
        self.gpu_seconds = 0.0
        for f in a.resume:
            if not os.path.exists(f):
                print(f"longest: warning: --resume {f}: no such file, nothing reused from it", flush=True)
        for f in a.resume + [self.path]:
            if os.path.exists(f):
                for line in open(f):
                    line = line.strip()
                    if line.startswith("{"):
                        r = json.loads(line)
                        self.cache[(r["system"], r["length"], r["mode"], r.get("sig", ""))] = r
        self.results = []

    def sig(self, system):
        # What makes two trials comparable: the config and the extra arguments (not where the binary lives).
        extra = self.a.cotune_args if system == "cotune" else self.a.hf_args
        return f"{os.path.basename(self.a.config)}|{extra}"

    def command(self, system, length, mode):
        a = self.a
        if system == "cotune":
            cmd = shlex.split(a.bench_train) + ["--config", a.config, "--setting", "single", "--length", str(length),
                                                "--json"] + shlex.split(a.cotune_args)
            if mode == "probe":
                cmd += ["--split", str(a.probe_split)]
        else:
            cmd = [a.python, os.path.join(HERE, "hf_baseline.py"), "--config", a.config, "--setting", "single",
                   "--length", str(length)] + shlex.split(a.hf_args)
        return cmd

    def timeout(self, length, mode):
        x = length / 1e5
        t = self.a.timeout + self.a.timeout_linear * x
        if mode == "full":
            t += self.a.timeout_quadratic * x * x
        return t

    def trial(self, system, length, mode):
        """Runs (or reuses) one trial; returns its record (status pass / oom / nonfinite / timeout / error)."""
        sig = self.sig(system)
        hit = self.cache.get((system, length, mode, sig))
        if hit is None and mode == "probe":
            full = self.cache.get((system, length, "full", sig))
            if full is not None and full["status"] == "pass":
                hit = full  # a real step that trained: the probe would too
        if hit is not None:
            self.report(hit, cached=True)
            self.results.append(hit)
            return hit
        cmd = self.command(system, length, mode)
        limit = self.timeout(length, mode)
        log = os.path.join(self.a.out, "logs", f"{system}-{length}-{mode}.log")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                 start_new_session=True)
        except OSError as e:
            sys.exit(f"longest: cannot start {shlex.join(cmd)}: {e}")
        timed_out = False
        try:
            out, err = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(p)
            out, err = p.communicate()
        except BaseException:
            kill_group(p)
            raise
        wall = time.monotonic() - t0
        self.trials_run += 1
        self.gpu_seconds += wall
        with open(log, "w") as f:
            f.write(f"$ {shlex.join(cmd)}\n# rc {p.returncode}, {wall:.1f} s{' (timed out)' if timed_out else ''}\n")
            f.write("---- stdout\n" + out + "---- stderr\n" + err)
        row = None
        for line in out.splitlines():
            if line.startswith("{"):
                try:
                    row = json.loads(line)
                except ValueError:
                    pass
        rec = dict(system=system, length=length, mode=mode, sig=sig, rc=p.returncode, wall_s=round(wall, 1))
        if timed_out:
            rec["status"] = "timeout"
            rec["error"] = f"no answer within {limit:.0f} s"
        elif p.returncode == 0 and row and row.get("ok") and isinstance(row.get("loss"), (int, float)) \
                and math.isfinite(row["loss"]):
            rec["status"] = "pass"
        elif p.returncode == 3 or (row and row.get("oom")):
            rec["status"] = "oom"
        elif p.returncode == 4:
            rec["status"] = "nonfinite"
        else:
            rec["status"] = "error"
        if row:
            for k in ("loss", "step_s", "peak_gib", "plan_gib", "gpu_total_gib", "gpu", "phase", "error",
                      "used_gib_at_failure", "torch_max_allocated_gib"):
                if k in row and k not in rec:
                    rec[k] = row[k]
        if rec["status"] != "pass" and "error" not in rec:
            tail = [l for l in err.strip().splitlines() if l.strip()]
            rec["error"] = (tail[-1] if tail else f"exit status {p.returncode}, no output")[:500]
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.cache[(system, length, mode, sig)] = rec
        self.results.append(rec)
        self.report(rec)
        return rec

    @staticmethod
    def report(r, cached=False):
        extra = ""
        if r["status"] == "pass":
            extra = f"loss {r.get('loss')}, step {r.get('step_s')} s, peak {r.get('peak_gib')} GiB"
        else:
            extra = f"{r.get('phase', '')}: {r.get('error', '')}".strip(": ")[:160]
        print(f"  {r['system']:6s} {r['length']:>8d} {r['mode']:5s} {r['status']:9s} {r['wall_s']:7.1f} s"
              f"{' (cached)' if cached else ''}  {extra}", flush=True)


def kill_group(p):
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass


def round_grain(x, grain):
    return int(round(x / grain)) * grain


def search(run, system):
    """Doubling then bisection; returns dict(max=..., first_fail=..., verified=..., note=...)."""
    a = run.a
    probes = system == "cotune"
    mode_for = lambda L: "probe" if probes and L > a.full_until else "full"  # noqa: E731
    passes = lambda r: r["status"] == "pass"  # noqa: E731
    lo = lo_full = hi = None
    L = a.start
    while True:
        r = run.trial(system, L, mode_for(L))
        if not passes(r):
            hi = L
            break
        lo = L
        if r["mode"] == "full":
            lo_full = L
        if L >= a.cap:
            break
        L = min(2 * L, a.cap)
    if lo is None:
        return dict(max=None, first_fail=hi, verified=False,
                    note=f"fails at the start length {a.start} ({r['status']}: {r.get('error', '')})")

    def bisect(lo, hi, mode):
        while hi is not None and hi - lo > max(a.grain, a.tol * lo):
            mid = round_grain((lo + hi) / 2, a.grain)
            if mid <= lo or mid >= hi:
                break
            r = run.trial(system, mid, mode(mid))
            if passes(r):
                lo = mid
            else:
                hi = mid
        return lo, hi

    lo, hi = bisect(lo, hi, mode_for)
    verified = mode_for(lo) == "full"
    note = ""
    if not verified and a.verify:
        r = run.trial(system, lo, "full")
        if passes(r):
            verified = True
        elif r["status"] == "timeout":
            note = (f"the real step at {lo} timed out ({r.get('error')}): not confirmed, rerun with a larger "
                    f"--timeout-quadratic (the trials so far are reused)")
        else:
            # A real step needs something the probe did not (e.g. more kernel local memory): step down by 2 tol
            # at a time with real steps (the answer is most likely just below), then bisect.
            note = f"the probes' answer {lo} failed a real step ({r['status']}); searched below it with real steps"
            hi = lo
            while True:
                cand = round_grain(hi * (1 - 2 * a.tol), a.grain)
                if lo_full is not None and cand <= lo_full:
                    lo = lo_full
                    break
                if cand < a.start:
                    return dict(max=None, first_fail=hi, verified=False, note=note)
                r = run.trial(system, cand, "full")
                if passes(r):
                    lo = cand
                    break
                hi = cand
            lo, hi = bisect(lo, hi, lambda _: "full")
            verified = True
    elif not verified:
        note = "memory probes only (--no-verify)"
    return dict(max=lo, first_fail=hi, verified=verified, note=note)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    run = Runner(a)
    found = {}
    for system in a.systems:
        print(f"== {system}: start {a.start}, double until failure (cap {a.cap}), bisect to {a.tol:.0%}", flush=True)
        found[system] = search(run, system)
        f = found[system]
        print(f"== {system}: longest that trains {f['max']} (first failure {f['first_fail']})"
              f"{'' if f['verified'] else ', NOT confirmed by a real step'}{'; ' + f['note'] if f['note'] else ''}",
              flush=True)

    print("\nsystem  length    mode   status    wall s   step s  peak GiB  note")
    for r in sorted(run.results, key=lambda r: (r["system"], r["length"], r["mode"])):
        note = "" if r["status"] == "pass" else f"{r.get('phase', '')}: {r.get('error', '')}".strip(": ")[:90]
        step = f"{r['step_s']:.2f}" if isinstance(r.get("step_s"), (int, float)) else "-"
        peak = f"{r['peak_gib']:.2f}" if isinstance(r.get("peak_gib"), (int, float)) and r["status"] == "pass" else "-"
        print(f"{r['system']:7s} {r['length']:>8d}  {r['mode']:5s}  {r['status']:8s} {r['wall_s']:7.1f} {step:>8s} "
              f"{peak:>9s}  {note}")
    gpu = next((r["gpu"] for r in run.results if r.get("gpu")), None)
    c, h = found.get("cotune", {}), found.get("hf", {})
    cm, hm = c.get("max"), h.get("max")
    summary = dict(cotune_max=cm, hf_max=hm, ratio=round(cm / hm, 2) if cm and hm else None,
                   cotune_first_fail=c.get("first_fail"), hf_first_fail=h.get("first_fail"),
                   cotune_verified=c.get("verified"), cap=a.cap, tol=a.tol, gpu=gpu, trials_run=run.trials_run,
                   trial_seconds=round(run.gpu_seconds, 1))
    print(json.dumps(summary), flush=True)
    return 0 if all(found[s]["max"] for s in a.systems) else 1


if __name__ == "__main__":
    sys.exit(main())

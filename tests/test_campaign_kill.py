"""kill -9 a real campaign process at random moments, resume, compare with a clean run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from naive_campaign import read_records, results_of
from numharden.campaign import CampaignConfig, SyntheticSpec, run_campaign, summarize

ROOT = Path(__file__).resolve().parents[1]
SPEC_KW = dict(n_images=200, n_bits=20_000, hit_prob=0.01, nan_prob=0.002)
CFG = CampaignConfig(bers=[5e-5, 2e-4, 1e-3], trials=10, seed=21, ci_width=0.004,
                     max_trials=200, round_size=10)

DRIVER = """
import json, sys
from numharden.campaign import CampaignConfig, SyntheticSpec, run_campaign
spec = SyntheticSpec(**json.loads(sys.argv[1]))
cfg = CampaignConfig.from_dict(json.loads(sys.argv[2]))
run_campaign(spec, cfg, sys.argv[3], workers=int(sys.argv[4]))
"""


def _start(out, workers):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    args = [sys.executable, "-c", DRIVER, json.dumps(dict(SPEC_KW, work_seconds=0.02)),
            json.dumps(CFG.to_dict()), str(out), str(workers)]
    # own session: the kill reaches the driver and its pool workers, nothing else
    return subprocess.Popen(args, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _lines(out):
    return sum(f.read_bytes().count(b"\n") for f in (out / "records").glob("*.jsonl")) \
        if (out / "records").is_dir() else 0


def test_kill_9_at_random_moments_then_resume_equals_clean_run(tmp_path):
    clean = run_campaign(SyntheticSpec(**SPEC_KW), CFG, tmp_path / "clean")
    want = results_of(read_records(tmp_path / "clean"))
    assert len(want) == 311  # enough work that the kills land mid-campaign

    out = tmp_path / "killed"
    rng = np.random.default_rng(2024)
    counts = [0]
    for k in range(5):
        proc = _start(out, workers=2 if k % 2 else 1)
        if k == 0:  # blind: may land in start-up or while the header is created
            time.sleep(float(rng.uniform(0.05, 0.6)))
        else:  # at a random moment after this run has recorded something
            deadline = time.monotonic() + 60
            while _lines(out) <= counts[-1] and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0.0, 0.3)))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if (out / "campaign.json").exists():
            # the store is readable after every kill and holds only correct trials
            summarize(out)
            got = results_of(read_records(out))
            assert all(want[key] == val for key, val in got.items())
            counts.append(len(got))
    interrupted = sum(1 for a, b in zip(counts, counts[1:]) if a < b < len(want))
    assert interrupted >= 4, counts

    resumed = run_campaign(SyntheticSpec(**SPEC_KW), CFG, out)
    assert results_of(read_records(out)) == want
    assert resumed.rows == clean.rows and resumed.complete

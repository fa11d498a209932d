"""PyTorch reference fault campaign of ``bench/bench_campaign.py`` (torch only, never numharden).

It runs in its own process (started by :class:`TorchWorker` with the glibc malloc
thresholds of ``TORCH_ENV``, so torch's OpenMP runtime and numba's never share a
process) and replays, trial by trial, the fault lists numharden sampled, the way
PyTorch fault-injection tools do it on a fake-quantised net:

* the stored integer codes of every targeted weight are kept next to the net
  (``int8`` tensors holding sign-extended ``int4`` codes, per-channel scales);
* a trial flips the listed bits of those codes (read from the HDF5 fault-list layout of
  docs/FAULTS.md with h5py alone), re-normalises the narrow codes (keep the low ``bits``
  bits, sign-extend), decodes the changed values ``code * scale`` and writes them into
  the ``nn.Parameter`` in place (``index_put_``; only the changed elements);
* it evaluates the test images (``torch.inference_mode``, channels_last, batches of the
  same size numharden uses), takes the top-1 prediction (-1 where logits are not finite),
  counts correct and silent-data-corruption images against the clean predictions;
* it restores the codes and the float weights.

The net is the independent twin of ``tests/golden/torch_twins.py`` (LeNet-5 with the
activation fake quantiser ``round(clamp(x, 0, clip) / s) * s``).

Protocol: pickled ``(method, kwargs)`` on stdin, pickled ``("ok", value)`` or
``("error", traceback)`` on the real stdout (torch's own prints go to stderr).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


# ======================================================================================
# worker side (torch)
# ======================================================================================
class _Target:
    """One faultable weight: its stored codes and the live float parameter."""

    def __init__(self, torch, param, codes, scale, fmt):
        if not fmt.startswith("int") or codes.dtype.itemsize != 1:
            raise NotImplementedError(f"torch reference handles intN codes in int8 storage "
                                      f"only, got {fmt} in {codes.dtype}")
        bits = int(fmt[3:].split("/")[0])
        self.param = param                                   # nn.Parameter, any strides
        self.shape = tuple(param.shape)
        self.codes = torch.from_numpy(codes.reshape(-1).copy())      # int8, sign-extended
        self.raw = self.codes.view(torch.uint8)                       # same memory
        self.clean_raw = self.raw.clone()
        self.scale = torch.from_numpy(scale.reshape(-1).copy())      # float32 per element
        self.clean_w = param.detach().reshape(-1).clone()             # C order, logical
        self.low = (1 << bits) - 1
        self.high = 0xFF ^ self.low
        self.sign = 1 << (bits - 1)


class TorchCampaign:
    def __init__(self):
        import torch

        sys.path.insert(0, str(ROOT / "tests"))
        from golden.torch_twins import load_params, torch_net

        self.torch = torch
        self.load_params, self.torch_net = load_params, torch_net
        torch.set_num_interop_threads(1)

    # -- setup ---------------------------------------------------------------------------
    def setup(self, arch, shape, num_classes, abits, params, targets, x, labels, batch_size,
              faults_path):
        """Build the twin, keep the stored codes of ``targets``, load every fault list.

        targets : {name: (codes int8 array, scale broadcast to codes' shape, format spec)}
        """
        torch = self.torch
        net = self.load_params(self.torch_net(arch, tuple(shape), num_classes, abits), params)
        net = net.to(memory_format=torch.channels_last)
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        named = dict(net.named_parameters())
        self.targets = {n: _Target(torch, named[n], c, s, f) for n, (c, s, f) in targets.items()}
        xt = torch.from_numpy(x)
        self.batches = [(s, xt[s:s + batch_size].contiguous(memory_format=torch.channels_last))
                        for s in range(0, len(xt), batch_size)]
        self.labels = torch.from_numpy(labels.astype("int64"))
        self.preds = torch.empty(len(labels), dtype=torch.int64)
        self.faults = self._load_faults(faults_path)
        with torch.inference_mode():
            preds, bad = self._evaluate()
        self.clean, self.clean_bad = preds.clone(), bad
        return {"torch": torch.__version__, "clean_preds": self.clean.numpy().copy(),
                "clean_nonfinite": bad, "threads_max": torch.get_num_threads()}

    def _load_faults(self, path):
        """{(ber, trial): (tensor-name list, tensor, index, bit, new)} from docs/FAULTS.md h5."""
        import h5py
        import numpy as np

        torch = self.torch
        out = {}
        with h5py.File(path, "r") as f:
            for bkey, bgroup in f.items():
                for tkey, g in bgroup.items():
                    assert g.attrs["numharden_faultlist"] == 1
                    kinds = g["kind"][()]
                    if np.any(kinds != 0):
                        raise NotImplementedError("torch reference replays bit flips only")
                    names = [s.decode() if isinstance(s, bytes) else str(s)
                             for s in g["tensor_names"][()]]
                    # a flip list samples (value, bit) without replacement, so several flips
                    # on one value hit distinct bits: their XOR mask is the sum of 1 << bit
                    key = np.stack([g["tensor"][()].astype(np.int64), g["index"][()],
                                    g["bit"][()].astype(np.int64)])
                    assert len(np.unique(key, axis=1).T) == key.shape[1], "repeated fault"
                    out[(float(bgroup.attrs["ber"]), int(tkey))] = (
                        [self.targets[n] for n in names],
                        torch.from_numpy(g["tensor"][()].astype(np.int64)),
                        torch.from_numpy(g["index"][()]),
                        torch.from_numpy(g["bit"][()].astype(np.int32)),
                        g["new"][()])
        return out

    # -- one trial -----------------------------------------------------------------------
    def _inject(self, faults):
        """Flip the listed bits of the stored codes; rewrite the changed float weights."""
        torch = self.torch
        targets, tensor, index, bit, _ = faults
        undo = []
        for t in torch.unique(tensor).tolist():
            sel = tensor == t
            tg = targets[t]
            uniq, inv = torch.unique(index[sel], return_inverse=True)
            mask = torch.zeros(len(uniq), dtype=torch.int32).index_add_(0, inv, 1 << bit[sel])
            v = (tg.raw[uniq].to(torch.int32) ^ mask) & tg.low
            v = torch.where((v & tg.sign) != 0, v | tg.high, v)  # sign-extend the int4 code
            tg.raw[uniq] = v.to(torch.uint8)
            coords = torch.unravel_index(uniq, tg.shape)
            tg.param.index_put_(coords, tg.codes[uniq].to(torch.float32) * tg.scale[uniq])
            undo.append((tg, uniq, coords))
        return undo

    def _restore(self, undo):
        for tg, uniq, coords in undo:
            tg.raw[uniq] = tg.clean_raw[uniq]
            tg.param.index_put_(coords, tg.clean_w[uniq])

    def _evaluate(self):
        torch = self.torch
        bad_total = 0
        for s, xb in self.batches:
            logits = self.net(xb)
            bad = ~torch.isfinite(logits).all(1)
            p = logits.argmax(1)
            p[bad] = -1
            self.preds[s:s + len(p)] = p
            bad_total += int(bad.sum())
        return self.preds, bad_total

    def _result(self, preds, bad, n):
        return {"correct": int((preds == self.labels).sum()),
                "sdc": int((preds != self.clean).sum()), "nonfinite": int(bad), "n_faults": n}

    def _trial(self, faults, shortcut):
        n = len(faults[1])
        if shortcut and n == 0:  # flips always change a bit: no fault, clean outputs
            return {"correct": int((self.clean == self.labels).sum()), "sdc": 0,
                    "nonfinite": self.clean_bad, "n_faults": 0}
        undo = self._inject(faults)
        try:
            preds, bad = self._evaluate()
        finally:
            self._restore(undo)
        return self._result(preds, bad, n)

    # -- requests ------------------------------------------------------------------------
    def verify(self, keys):
        """Faulted raw codes must equal numharden's recorded ``new`` codes, and the
        restore must give back the clean codes and weights bit-exactly."""
        import numpy as np

        torch = self.torch
        bad = 0
        with torch.inference_mode():
            for key in keys:
                faults = self.faults[key]
                targets, tensor, index, _, new = faults
                undo = self._inject(faults)
                last = {}
                for i, (t, j) in enumerate(zip(tensor.tolist(), index.tolist())):
                    last[(t, j)] = i
                for (t, j), i in last.items():
                    bad += int(targets[t].raw[j]) != (int(new[i]) & 0xFF)
                    want = float(targets[t].codes[j]) * float(targets[t].scale[j])
                    got = float(targets[t].param[torch.unravel_index(torch.tensor(j),
                                                                     targets[t].shape)])
                    bad += not np.isclose(got, want, rtol=1e-6, atol=0)
                self._restore(undo)
        for tg in self.targets.values():
            bad += int(not torch.equal(tg.raw, tg.clean_raw))
            bad += int(not torch.equal(tg.param.detach().reshape(-1), tg.clean_w))
        return bad

    def run(self, keys, threads, shortcut):
        """Run the trials ``keys`` ((ber, trial) pairs); per-trial results and seconds."""
        torch = self.torch
        torch.set_num_threads(threads)
        results, times = [], []
        with torch.inference_mode():
            for key in keys:
                faults = self.faults[key]
                t0 = time.perf_counter()
                res = self._trial(faults, shortcut)
                times.append(time.perf_counter() - t0)
                results.append(res)
        return {"results": results, "times": times}

    def profile(self, keys, threads):
        """Median seconds per trial of inject / forward segments / argmax / restore."""
        import statistics

        torch = self.torch
        torch.set_num_threads(threads)
        seg, mark, handles = defaultdict(float), [0.0], []

        def hook(name):
            def done(module, inputs, output):  # must return None (keeps the output)
                now = time.perf_counter()
                seg[name] += now - mark[0]
                mark[0] = now
            return done

        for name, m in self.net.named_modules():
            if name and not list(m.children()):
                handles.append(m.register_forward_hook(hook(name)))
        rows = defaultdict(list)
        try:
            with torch.inference_mode():
                for key in keys:
                    faults = self.faults[key]
                    seg.clear()
                    t0 = time.perf_counter()
                    undo = self._inject(faults)
                    t1 = time.perf_counter()
                    head = 0.0
                    for s, xb in self.batches:
                        mark[0] = time.perf_counter()
                        logits = self.net(xb)
                        h0 = time.perf_counter()
                        bad = ~torch.isfinite(logits).all(1)
                        p = logits.argmax(1)
                        p[bad] = -1
                        self.preds[s:s + len(p)] = p
                        head += time.perf_counter() - h0
                    t2 = time.perf_counter()
                    self._result(self.preds, 0, 0)
                    t3 = time.perf_counter()
                    self._restore(undo)
                    t4 = time.perf_counter()
                    rows["inject (flip codes, decode, index_put_)"].append(t1 - t0)
                    for k, v in seg.items():
                        rows[f"forward: {k}"].append(v)
                    rows["argmax + isfinite"].append(head)
                    rows["count correct / SDC"].append(t3 - t2)
                    rows["restore codes + weights"].append(t4 - t3)
                    rows["trial total"].append(t4 - t0)
        finally:
            for h in handles:
                h.remove()
        return {k: statistics.median(v) for k, v in rows.items()}


def serve() -> None:
    """Serve pickled ``(method, kwargs)`` requests on stdin; replies on the real stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything torch prints goes to stderr, not into the protocol
    side = TorchCampaign()
    inp = sys.stdin.buffer
    while True:
        try:
            method, kwargs = pickle.load(inp)
        except EOFError:
            return
        try:
            reply = ("ok", getattr(side, method)(**kwargs))
        except Exception:  # report to the parent, which raises
            reply = ("error", traceback.format_exc())
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


# ======================================================================================
# client side (no torch import)
# ======================================================================================
class TorchWorker:
    """Client of a worker process running :func:`serve` (malloc thresholds set first)."""

    def __init__(self):
        env = dict(os.environ, **TORCH_ENV)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def __call__(self, method, **kwargs):
        pickle.dump((method, kwargs), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        status, value = pickle.load(self.proc.stdout)
        if status != "ok":
            raise RuntimeError(f"torch worker failed in {method}:\n{value}")
        return value

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    serve()

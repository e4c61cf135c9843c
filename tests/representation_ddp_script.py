"""Two real processes (CPU, gloo) running the representation metrics alone; used by
``tests/test_representation_ddp.py``, not a test itself. No Trainer: ``torch.distributed`` directly,
and torchmetrics' own sync inside ``compute()``.

``python tests/representation_ddp_script.py OUT_DIR`` starts both ranks (this file again, with
``RANK`` set), waits for them with a timeout and kills both on a hang. Each rank writes
``OUT_DIR/rank{r}.json``: for every (offset, max_components) the values of two checks and the shift
each rank used, and the streaming ``EffectiveRank``. Data: ``tests/_repr_reference.synthetic``,
centred, then offset by +offset (student) and −offset (teacher); rank r takes rows r, r+2, … (51 and
50 rows) in batches of 16, and rank 1 first sees an empty batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

TIMEOUT_S = 150
OFFSETS = (0.0, 1e3, 1e6)
MAX_COMPONENTS = (None, 3)
N, D_S, D_W = 101, 6, 4


def data(check: int, offset: float):
    import numpy as np
    from _repr_reference import synthetic

    s, w, y = synthetic(N, D_S, D_W, seed=30 + check)
    cls = (y > 0).astype(np.int64)
    cls[::3] = -1
    return s - s.mean(0) + offset, w - w.mean(0) - offset, cls


def rank_main(rank: int, out: Path) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from lightning_w2s.metrics import RepresentationGap
    from lightning_w2s.metrics.representation import EffectiveRank

    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{os.environ['PORT']}")
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    rows = np.arange(rank, N, 2)
    results = {}
    for offset in OFFSETS:
        for k in MAX_COMPONENTS:
            metric, rank_metric, checks = RepresentationGap(D_S, D_W, num_classes=2, max_components=k), EffectiveRank(), []
            for check in range(2):
                s, w, cls = data(check, offset)
                if rank == 1:
                    metric.update(t(s[:0]), t(w[:0]), torch.as_tensor(cls[:0]))
                for i in range(0, len(rows), 16):
                    r = rows[i : i + 16]
                    metric.update(t(s[r]), t(w[r]), torch.as_tensor(cls[r]))
                    rank_metric.update(t(s[r]))
                values = {key: float(v) for key, v in metric.compute().items()}
                checks.append({"values": values, "shift_s": metric.shift_s.tolist(), "shift_w": metric.shift_w.tolist(), "effective_rank": float(rank_metric.compute())})
                metric.reset()
                rank_metric.reset()
            results[f"{offset:g}/{k}"] = checks
    (out / f"rank{rank}.json").write_text(json.dumps({"world_size": dist.get_world_size(), "results": results}))
    dist.barrier()
    dist.destroy_process_group()


def launch(out: Path) -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), PORT=str(port), OMP_NUM_THREADS="1")
        log = open(out / f"rank{rank}.log", "w")
        procs.append((subprocess.Popen([sys.executable, __file__, str(out)], env=env, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        codes = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc, _ in procs]
    except subprocess.TimeoutExpired:
        codes = [124, 124]
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()
    return 0 if codes == [0, 0] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    target = Path(sys.argv[1])
    if "RANK" in os.environ:
        rank_main(int(os.environ["RANK"]), target)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # results are on disk; gloo's threads can abort a rank in its destructors at exit
    else:
        sys.exit(launch(target))

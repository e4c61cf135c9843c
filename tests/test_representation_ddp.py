"""The representation metrics under real DDP: two CPU processes over gloo.

``representation_ddp_script.py`` runs ``RepresentationGap`` and ``EffectiveRank`` in two processes
(uneven shards, an empty first batch on rank 1, two checks with a reset between) on features offset
by 0, 1e3 and 1e6. Both ranks must agree exactly, use the same data-dependent shift, and give the
one-process functional's values on the centred features: 1e-9 relative without an offset (rounding
only), 1e-7 with one (the offset input is itself rounded at ~6e-11 relative; see
``test_representation_streaming.py``). On main (d4832ca) the first check summed unshifted sums under
DDP: 7.8e-5 off in ``fro`` at an offset of 1e6 and a false "not unique" NaN with ``max_components=3``
from 1e5 on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _repr_reference import np_participation_ratio
from representation_ddp_script import MAX_COMPONENTS, OFFSETS, TIMEOUT_S, data

from lightning_w2s.metrics.functional import representation_gap

SCRIPT = Path(__file__).with_name("representation_ddp_script.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("repr_ddp")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], timeout=TIMEOUT_S + 30)
    logs = "\n".join(f"--- rank {r} ---\n" + (out / f"rank{r}.log").read_text()[-3000:] for r in range(2) if (out / f"rank{r}.log").exists())
    assert proc.returncode == 0, "the 2-process run failed or hung; logs:\n" + logs
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_both_ranks_hold_the_same_values_and_shift(ranks):
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["results"] == ranks[1]["results"]  # bit-identical after the sum reduction
    for offset in OFFSETS:
        for k in MAX_COMPONENTS:
            for check in ranks[0]["results"][f"{offset:g}/{k}"]:
                shift = np.asarray(check["shift_s"])
                assert np.all(np.abs(shift - offset) < 3.0)  # a batch mean of the data, never 0 at an offset


@pytest.mark.parametrize("k", MAX_COMPONENTS)
@pytest.mark.parametrize("offset", OFFSETS)
def test_two_processes_equal_one_process_on_centred_features(ranks, offset, k):
    rtol = 1e-9 if offset == 0 else 1e-7
    for check, got in enumerate(ranks[0]["results"][f"{offset:g}/{k}"]):
        s, w, cls = data(check, 0.0)
        ref = representation_gap(torch.as_tensor(s), torch.as_tensor(w), labels=torch.as_tensor(cls), max_components=k)
        for key in ref:
            assert np.isfinite(got["values"][key]), key
            np.testing.assert_allclose(got["values"][key], float(ref[key]), rtol=rtol, err_msg=f"{key} check {check}")
        np.testing.assert_allclose(got["values"]["effective_rank"], np_participation_ratio(s), rtol=rtol)
        np.testing.assert_allclose(got["effective_rank"], np_participation_ratio(s), rtol=rtol)

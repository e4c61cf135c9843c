"""A scoped intra-op thread count for the metrics' CPU linear algebra (pure torch).

Why (measured on 2 shared cores): torch's CPU kernels run on OpenMP threads that
*spin* while they wait for one another. When other processes keep the cores busy, a spinning
thread steals the core its partner needs: we measured a 0.1 s d×d computation at 1.5–32 s.
Setting ``OMP_WAIT_POLICY=PASSIVE`` before torch loads fixes it, but users' scripts do not set it.
With one intra-op thread there is no team to wait for, so nothing collapses; what is left is the
share of the cores the busy neighbours leave (``benchmarks/representation/run.py`` prints the
comparison: in its last run, on a host already loaded by other jobs, 2.5× for ``representation_gap``
at n = 4096, d = 384, and 2.2× for ``compute()`` at d = 4096; docs/performance.md). One thread is also what the d×d algebra gets on a loaded 2-core host.

The collapse comes from many short parallel regions (small products, QR, ``eigh``, element-wise
ops), each ending in a barrier. One large matrix product is a few long regions, and the scheduler
shares the cores per thread: in a one-off measurement while this was written (no benchmark prints
it), a 4096×4096×49 product beside two busy processes kept within 4.3× of its time alone with the
caller's 2 threads and 8.9× with one. So inside the scope, :func:`matmul` runs single large products
with the process's own count again.

The count is process-wide (``torch.set_num_threads``), so the scope is kept as short as the
algebra it protects and the previous count is restored on exit, exceptions included. Another Python
thread running torch CPU ops at the same moment would also see the lower count while the scope is
open (Lightning's training loop runs on one thread). CUDA kernels are not affected.

The monitor runs a whole check inside :func:`threads` ``(1)`` and gives the student's forward passes
the process's own count back, or, when other processes are running at the check's start, only
the cores they leave idle (:func:`fitting_threads`; beside two busy processes on 2 cores a cheap
student's probe pass took 426 ms on 2 threads and 15 ms on one, 4.7 and 8.0 ms alone, a *one-off*
measurement); the aggregator's feeding and ``compute()`` are
:func:`single_threaded`, except the representation states' second-moment products of each chunk
(single large products, :func:`process_threads`). ``benchmarks/overhead/run.py`` (busy section) prints the monitor's own work of
a cheap-student check alone and beside two busy processes: 88 and 345 ms (3.9×) in its last run,
on a host already loaded by other jobs (docs/performance.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

from lightning_w2s.metrics.validation import check_scalar

#: Intra-op threads used by the metrics' own linear algebra (see the module docstring).
ALGEBRA_THREADS = 1

_F = TypeVar("_F", bound=Callable)
_saved: list[int] = []  # the counts the open scopes replaced, innermost last ([0]: the process's own)


@contextmanager
def limited_threads(num_threads: int = ALGEBRA_THREADS) -> Iterator[None]:
    """Run the block with at most ``num_threads`` torch intra-op threads; restore the count after.

    A count already at or below ``num_threads`` is left alone (never raised).

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with limited_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    num_threads = check_scalar("num_threads", num_threads, int, min_val=1)
    previous = torch.get_num_threads()
    _saved.append(previous)
    try:
        if previous <= num_threads:
            yield
            return
        torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
    finally:
        _saved.pop()


@contextmanager
def threads(count: int) -> Iterator[int]:
    """Exactly ``count`` torch intra-op threads for the block (process-wide; the previous count is
    restored after, exceptions included); yields the count it replaced. Unlike
    :func:`limited_threads` it may raise the count: a monitor check runs on one thread and gives the
    student's own forward passes the process's count back inside it.

    >>> with threads(1) as before:
    ...     torch.get_num_threads()
    1
    """
    count = check_scalar("count", count, int, min_val=1)
    previous = torch.get_num_threads()
    _saved.append(previous)
    try:
        if count != previous:
            torch.set_num_threads(count)
        try:
            yield previous
        finally:
            if count != previous:
                torch.set_num_threads(previous)
    finally:
        _saved.pop()


@contextmanager
def process_threads() -> Iterator[None]:
    """Inside a :func:`limited_threads` or :func:`threads` scope: the block runs with the count the
    outermost scope replaced — the process's own — and the scope's count is restored after. For a
    single large product, which does not collapse under load (module docstring); the block must
    hold nothing else. Outside a scope: nothing changes.

    >>> with limited_threads(1):
    ...     with process_threads():
    ...         torch.get_num_threads() >= 1
    True
    """
    inside = torch.get_num_threads()
    if not _saved or _saved[0] <= inside:
        yield
        return
    torch.set_num_threads(_saved[0])
    try:
        yield
    finally:
        torch.set_num_threads(inside)


def running_elsewhere(proc: str = "/proc") -> int | None:
    """Threads of *other* processes running or waiting for a core right now, or ``None`` where
    that cannot be read (not Linux, or ``proc`` unreadable).

    The fourth field of Linux's ``/proc/loadavg`` is the number of runnable threads of the whole
    system at the moment of the read (``running/total``, proc(5)); unlike the load averages beside
    it, it does not lag. This process's own runnable threads (state ``R`` in
    ``/proc/self/task/<tid>/stat``: the reading thread itself, and any OpenMP worker still spinning
    after a parallel region) are subtracted. A one-moment sample: a neighbour that starts a moment
    later is not seen.

    >>> n = running_elsewhere()
    >>> n is None or n >= 0
    True
    """
    try:
        with open(os.path.join(proc, "loadavg")) as f:
            running = int(f.read().split()[3].split("/")[0])
        tasks = os.path.join(proc, "self", "task")
        own = 0
        for tid in os.listdir(tasks):
            try:
                with open(os.path.join(tasks, tid, "stat")) as f:
                    stat = f.read()
            except OSError:  # the thread ended while we looked
                continue
            end = stat.rindex(")")  # the command name, in parentheses, may hold spaces and parentheses
            own += stat[end + 2 : end + 3] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fitting_threads(own: int, elsewhere: int | None, cores: int) -> int:
    """The intra-op threads for a forward pass that fit beside the other processes' running
    threads: ``own`` (the process's count) when nothing else runs or nothing can be read
    (``elsewhere is None``), else the idle cores, at least 1 and at most ``own``.

    >>> fitting_threads(2, 0, 2), fitting_threads(2, 4, 2), fitting_threads(8, 3, 8), fitting_threads(2, None, 2)
    (2, 1, 5, 2)
    """
    if elsewhere is None:
        return own
    return max(1, min(own, cores - elsewhere))


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` inside :func:`process_threads`; plain ``a @ b`` outside a scope.

    >>> with limited_threads(1):
    ...     matmul(torch.eye(2), torch.ones(2, 1)).shape
    torch.Size([2, 1])
    """
    with process_threads():
        return a @ b


def single_threaded(fn: _F) -> _F:
    """Decorator: run ``fn`` inside :func:`limited_threads` with :data:`ALGEBRA_THREADS`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with limited_threads(ALGEBRA_THREADS):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

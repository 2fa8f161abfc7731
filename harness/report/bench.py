"""`harness bench`'s output: runs per second of each path against the plain loop, the GFLOP/s
each achieved, its operator launches, and the disk task's frameworks side by side."""

from __future__ import annotations

import pandas as pd

from harness.report.formats import Document, Paragraph, Table, records


def _micro(value: float | None, spec: str = ",.0f") -> str:
    return "–" if value is None else format(value, spec)


def timing_rows(timings, baseline: str, peak_gflops: float | None) -> pd.DataFrame:
    reference = next((t for t in timings if t.path == baseline), None)
    return pd.DataFrame([
        {
            "path": t.path,
            "runs": t.runs,
            "seconds": f"{t.seconds:.1f}",
            "runs/s": f"{t.runs_per_second:.3f}",
            f"vs {baseline}": "–" if reference is None else f"{t.runs_per_second / reference.runs_per_second:.2f}x",
            "GFLOP per run": f"{t.flops_per_run / 1e9:.3g}",
            "GFLOP/s": f"{t.gflops:.1f}",
            **({"of peak": f"{t.gflops / peak_gflops:.0%}"} if peak_gflops else {}),
            "mean test error %": f"{100 * t.test_error:.2f}",
            "peak memory MB": f"{t.peak_memory_mb:.0f}",
        }
        for t in timings
    ])


def bench_document(timings, *, machine: str, command: str, projection: tuple[str, float, int] | None,
                   peak_gflops: float | None = None, frameworks=None, launches=None) -> Document:
    """Runs per second of each path, its ratio to the plain loop, the GFLOP/s its counted work
    achieved and, given the machine's measured peak, the fraction. `frameworks`: the disk
    task's network trained by minidl and by torch.nn, a second table. `launches`: each path's
    operator launches per run (harness.bench.Launches), a third."""
    head = [f"machine: {machine}", f"command: {command}"]
    if peak_gflops:
        head.append(f"peak: {peak_gflops:.0f} GFLOP/s (float32 matrix products on every thread, measured now)")
    paths = timing_rows(timings, "plain", peak_gflops)
    blocks = [Paragraph("\n".join(head)), Table(paths)]
    plain = next((t for t in timings if t.path == "plain"), None)
    for timing in timings:
        if timing.path == "plain" or not plain or not plain.steady_seconds_per_run or not timing.steady_seconds_per_run:
            continue
        blocks.append(Paragraph(
            f"{timing.path}: the median run took {timing.steady_seconds_per_run * timing.side_by_side:.2f} s "
            f"with {timing.side_by_side} side by side, {timing.steady_seconds_per_run:.2f} s of wall time a run "
            f"against the plain loop's {plain.steady_seconds_per_run:.2f} s: "
            f"{plain.steady_seconds_per_run / timing.steady_seconds_per_run:.2f}x once started; "
            f"{timing.outside_runs:.1f} s of its {timing.seconds:.1f} s were outside any run (process start-up: "
            f"each worker imports torch; the end: waiting on the last run)"))
    if projection:
        matrix, seconds, runs = projection
        blocks.append(Paragraph(f"projected time for {matrix} ({runs} runs) on the fastest harness path: "
                                f"{seconds:.0f} s ({seconds / 60:.1f} min)"))
    launch_rows = pd.DataFrame({
        "path": [c.path for c in launches or ()],
        "launches per run": [f"{c.kernels:,.0f}" for c in launches or ()],
        "per training step": [f"{c.per_step:,.1f}" for c in launches or ()],
        "reads to the host per run": [f"{c.host_reads:,.0f}" for c in launches or ()],
        "µs per group-step": ["–" if c.step is None else f"{c.step.group_us:,.0f} ({c.members} members)"
                              for c in launches or ()],
        "fixed µs (host)": [_micro(c.step and c.step.fixed_us) for c in launches or ()],
        "µs per member": [_micro(c.step and c.step.member_us) for c in launches or ()],
        "host µs per launch": [_micro(c.host_us_per_launch, ",.1f") for c in launches or ()],
    })
    if launches:
        blocks += [Paragraph("operator launches per run (a kernel each on a GPU, where launches rather than arithmetic "
                             "bound runs this small; counted on runs of 1 and 2 epochs, a batched group's shared out "
                             "per round); a vectorised group's whole training step timed at one pair per member, where "
                             "kernels are smallest, and timed again with one round: what each member adds (its "
                             "arithmetic) and the fixed rest, the host's Python, dispatcher, vmap and autograd (on a "
                             "GPU, what the host costs each step; on a CPU an estimate, the whole step an upper bound), "
                             "and that fixed part per launch of the group-step:"),
                   Table(launch_rows)]
    framework_rows = timing_rows(frameworks, "torch.nn", peak_gflops) if frameworks else pd.DataFrame()
    if frameworks:
        blocks += [Paragraph("disk task, report 002's network (2-25-25-25-1, SGD on the summed MSE, batch 50, 50 "
                             "epochs a run), one process: the from-scratch framework against torch.nn with autograd"),
                   Table(framework_rows)]
    machine_readable = {"machine": machine, "command": command, "peak_gflops": peak_gflops, "paths": records(paths),
                        "launches": records(launch_rows), "frameworks": records(framework_rows),
                        "projection": list(projection) if projection else None}
    return Document("harness bench", blocks, table=paths, records=machine_readable, preamble=False)

"""The scripts behind the MOORE reproduction's numbers: an official log -> a reference CSV, and
curve_report's final scores, band check and --reach on constructed curves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mtrl.eval.curve import read_curve

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0")


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_official_curve_reads_the_official_log_and_leaves_out_unfinished_epochs(tmp_path):
    lines = ["noise line", "[TIMING] eval#1 task0 7.5s"]
    for epoch, rets in ((0, (0.0, 0.1, 0.2)), (1, (0.3, 0.4, 0.5)), (2, (0.6, 0.7))):  # epoch 2 is cut short
        for task, r in zip(TASKS, rets):
            lines.append(
                f"01/12/2026 15:00:23 [INFO] Epoch {epoch} | EnvName: {task} MinReturn: 0.0 MaxReturn: 0.9 "
                f"AverageReturn: {r} AverageDiscountedReturn: 0.01"
            )
    (tmp_path / "run.log").write_text("\n".join(lines))
    res = script("official_curve.py", str(tmp_path / "run.log"), str(tmp_path / "ref.csv"))
    assert res.returncode == 0, res.stderr
    assert "left out epoch(s) [2]" in res.stderr
    ref = read_curve(tmp_path / "ref.csv")
    assert list(ref["update"]) == [0, 1] and list(ref["env_steps"]) == [0, 6000]
    assert abs(ref["mean"][1] - 0.4) < 1e-9 and list(ref[TASKS[2]]) == [0.2, 0.5]
    bad = script("official_curve.py", str(tmp_path / "nope.log"), str(tmp_path / "x.csv"))
    assert bad.returncode != 0 and "no log at" in bad.stderr


def write_run(path: Path, lava: list[float]) -> None:
    """An eval_curve.csv of 11 updates whose LavaGapS7 return is `lava`, the other tasks 0.5."""
    path.mkdir(parents=True)
    head = ["iteration", "env_steps", "mean_return"] + [f"{t}/return" for t in TASKS]
    rows = [",".join(head)]
    for i, v in enumerate(lava):
        rows.append(",".join(str(x) for x in (i, i * 6000, (v + 1.0) / 3, v, 0.5, 0.5)))
    (path / "eval_curve.csv").write_text("\n".join(rows) + "\n")


def test_curve_report_final_scores_band_and_reach(tmp_path):
    ramp = [min(1.0, 0.1 * i) for i in range(11)]
    write_run(tmp_path / "m" / "s0", ramp)
    write_run(tmp_path / "m" / "s1", [0.0] * 11)  # never reaches the threshold
    ref = tmp_path / "ref.csv"
    ref.write_text("update,env_steps,mean\n" + "\n".join(f"{i},{i * 6000},0.5" for i in range(11)) + "\n")
    res = script(
        "curve_report.py",
        f"m={tmp_path}/m/s*",
        "--reference",
        f"off={ref}",
        "--every",
        "5",
        "--last",
        "2",
        "--reach",
        "0.6",
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    # final score = mean over updates 9-10: s0 (0.9+1)/2 -> mean return (0.95+1)/3, s1 1/3
    assert f"| m | 2 | {((0.95 + 1) / 3 + 1 / 3) / 2:.3f} |" in out
    assert "| off | 1 | 0.500 | | |" in out
    # at update 5 the band of [0.5, 1/3] contains 0.5; LavaGapS7 reaches 0.6 at update 6 in s0, never in s1
    assert "| 5 | 0.417 [0.333, 0.500] | 0.500 | yes |" in out
    assert "| m | 6, never | never, never | never, never |" in out and "| off | - | - | - |" in out


def test_curve_report_gradients_summarises_the_logged_diagnostics(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    a, b = "MiniGrid-LavaGapS7-v0", "MiniGrid-MemoryS11-v0"
    for seed, cosines in ((0, [0.5, -0.5, -0.1, 0.3]), (1, [-0.2, -0.2, -0.2, -0.2])):
        run = tmp_path / "agg" / f"s{seed}"
        write_run(run, [0.0] * 11)
        with SummaryWriter(str(run / "tb")) as tb:
            for step, c in enumerate(cosines, 1):
                tb.add_scalar(f"grad/cosine/{a}/{b}", c, step)
                tb.add_scalar("grad/conflicting_fraction", float(c < 0), step)
                tb.add_scalar(f"grad/norm/{a}", 3.0, step)
                tb.add_scalar(f"grad/norm/{b}", 1.0, step)
                tb.add_scalar(f"grad/weight/{a}", 0.25, step)
                tb.add_scalar(f"grad/weight/{b}", 0.75, step)
    write_run(tmp_path / "plain" / "s0", [0.0] * 11)  # no diagnostics: left out of the table
    res = script(
        "curve_report.py", f"agg={tmp_path}/agg/s*", f"plain={tmp_path}/plain/s*", "--gradients", "--last", "2"
    )
    assert res.returncode == 0, res.stderr
    # conflicting: s0 2/4, s1 1 -> 0.75; last 2: s0 1/2, s1 1 -> 0.75; cosine: s0 0.05, s1 -0.2 -> -0.075;
    # last 2: s0 0.1, s1 -0.2 -> -0.05; one pair, so the lowest is the mean
    assert (
        f"| agg | 2 | 0.75 | 0.75 | -0.075 | -0.050 | -0.075 | {a} 0.75, {b} 0.25 | {a} 0.25, {b} 0.75 |"
    ) in res.stdout
    assert "| plain |" not in res.stdout.split("Gradient diagnostics")[1]


def test_curve_report_gradients_on_unreadable_events_is_one_line(tmp_path):
    run = tmp_path / "agg" / "s0"
    write_run(run, [0.0] * 11)
    (run / "tb").mkdir()
    (run / "tb" / "events.out.tfevents.0.host").write_bytes(b"not an event file")
    res = script("curve_report.py", f"agg={tmp_path}/agg/s*", "--gradients")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("curve_report: ")


def test_success_report_trailing_success_steps_to_threshold_and_final(tmp_path):
    import json

    from torch.utils.tensorboard import SummaryWriter

    # s0: success 0 for 10 iterations then 1 (every 1000 env steps); s1: always 0.5, never reaches 0.8
    for seed, values in ((0, [0.0] * 10 + [1.0] * 20), (1, [0.5] * 30)):
        run = tmp_path / "m" / f"s{seed}"
        with SummaryWriter(str(run / "tb")) as tb:
            for i, v in enumerate(values, 1):
                tb.add_scalar("charts/mean_success", v, i * 1000)
        (run / "eval.json").write_text(json.dumps({"mean_success": 0.9 - 0.5 * seed}))
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": {"m/s0": {"minutes": 12.5}}}))
    res = script("success_report.py", f"m={tmp_path}/m/s*", "--at", "10000", "15000", "30000", "--window", "4")
    assert res.returncode == 0, res.stderr
    # s0 at 15k: the last 4 values (12k-15k) are 1 -> 1.00; the trailing mean of 4 is 0.75 at 13k
    # (10k-13k: 0, 1, 1, 1) and first reaches 0.8 at 14k; the sweep (OUT/sweep.json) counted s0 only
    assert "| m | s0 | 0.00 | 1.00 | 1.00 | 14000 | 0.90 | 12.5 |" in res.stdout
    assert "| m | s1 | 0.50 | 0.50 | 0.50 | not by 30000 | 0.40 | - |" in res.stdout
    # the median of [14000, never] counts the one that never reached as last
    assert "| m | 2 | not reached | 0.65 (0.40 - 0.90) |" in res.stdout
    # a run still training (no eval.json) shows nothing at marks past its last logged step
    (tmp_path / "m" / "s1" / "eval.json").unlink()
    res = script("success_report.py", f"m={tmp_path}/m/s1", "--at", "10000", "40000", "--window", "4")
    assert res.returncode == 0, res.stderr
    assert "| m | s1 | 0.50 | - | not by 30000 | - | - |" in res.stdout


def test_success_report_without_success_is_one_line(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "m" / "s0" / "tb")) as tb:
        tb.add_scalar("charts/mean_return", 1.0, 1000)
    res = script("success_report.py", f"m={tmp_path}/m/s*")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("success_report: ") and "charts/mean_success" in res.stderr
    (tmp_path / "m" / "s0" / "tb").rename(tmp_path / "m" / "s0" / "tb_")
    with SummaryWriter(str(tmp_path / "m" / "s0" / "tb")) as tb:
        tb.add_scalar("charts/mean_success", 1.0, 1000)
    (tmp_path / "m" / "s0" / "eval.json").write_text("{not json")
    res = script("success_report.py", f"m={tmp_path}/m/s*")
    assert res.returncode != 0 and "Traceback" not in res.stderr and "is not a run's final evaluation" in res.stderr


def test_gpu_check_runs_in_process_and_projects_the_protocol():
    """scripts/gpu_check.py times the Meta-World+ MT10 learners (here on the CPU, a tiny replay)
    and prints the projected hours of the 2e6-update protocol from its own ms per update."""
    res = script("gpu_check.py", "--device", "cpu", "--updates", "2", "--replay-per-task", "300", "--archs", "mtmhsac")
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("| mt10_mtmhsac |"))
    ms, done, hours = (float(x) for x in row.split("|")[2:5])
    assert done == 2 and abs(hours - 2e6 * ms / 1e3 / 3600) < 0.05 + 1e-3 * hours
    assert any(line.startswith("| mt10_mtmhsac, critic ensemble |") for line in res.stdout.splitlines())
    bad = script("gpu_check.py", "--device", "cpu", "--updates", "0")
    assert bad.returncode == 2 and "--updates must be >= 1, got 0" in bad.stderr


def test_rounds_report_the_median_ratio_and_its_range():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from rounds import alternate, ratio, show_ratio
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    order: list[str] = []
    times = alternate({"a": lambda: order.append("a") or 2.0, "b": lambda: order.append("b") or 1.0}, 3)
    assert order == ["a", "b"] * 3 and times == {"a": [2.0] * 3, "b": [1.0] * 3}
    assert ratio([2.0, 3.0, 10.0], [1.0, 1.0, 1.0]) == (3.0, 2.0, 10.0)
    assert show_ratio([2.0, 3.0, 10.0], [1.0, 1.0, 1.0]) == "3.00x (2.00-10.00)"

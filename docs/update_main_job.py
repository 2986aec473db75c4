"""Regenerate the README's main-job section from a finished run of the main job.

    /usr/bin/time -v python -m calamp.run data/shower.root --out RUN 2> RUN.log
    python docs/update_main_job.py RUN RUN.log

writes ``docs/main_job.json`` (the command, wall and CPU time from ``time -v``, the job's timings,
configuration and summary rows), copies the README's figures into ``docs/`` and rewrites the
summary table between the ``main-job-table`` markers of README.md. The prose around the table is
written by hand; ``tests/test_docs.py`` checks that every number in it is in the JSON.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
README = DOCS.parent / "README.md"
FIGURES = ("observable_e_total.png", "calibration_q10.png", "mean_shower.png")
BEGIN, END = "<!-- main-job-table:begin -->", "<!-- main-job-table:end -->"


def _time_v(log: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak memory (MiB) from ``/usr/bin/time -v`` output."""
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", log).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", log).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", log)
    h, m, s = (float(g) if g else 0.0 for g in wall.groups())
    peak = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log).group(1))
    return 3600 * h + 60 * m + s, user + system, peak / 1024


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def table(rows: list[dict], n_bins: int = 10) -> str:
    """Markdown table of the summary rows with ``n_bins`` bins."""
    lines = [
        f"| observable ({n_bins} quantiles, fewer where tied) | A = n'/n [interval] "
        "| A_true = n_eq/n | MAD (floor) | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["binning"].endswith(f"/q{n_bins}"):  # n_bins can be fewer (tied quantiles)
            continue
        ge = "≥ " if r["n_prime_is_bound"] else ""
        a = (f"{ge}{_fmt(r['amplification'])} ({_fmt(r['amplification_low'])}–"
             f"{_fmt(r['amplification_high'])})")
        at = ("≥ " if r["n_eq_is_bound"] else "") + _fmt(r["true_amplification"])
        mad = f"{r['mad']:.3f} ({r['mad_floor']:.3f})"
        lines.append(f"| {r['binning'].split('/')[0]} | {a} | {at} | {mad} | {r['verdict']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run, log = Path(argv[0]), Path(argv[1]).read_text()
    res = json.loads((run / "results.json").read_text())
    wall, cpu, peak = _time_v(log)
    cfg = res["config"]
    out = {
        "command": "python -m calamp.run data/shower.root",
        "wall_seconds_time_v": wall,
        "cpu_seconds_time_v": cpu,
        "peak_memory_mib": peak,
        "timings": res["timings"],
        "execution": res.get("execution"),
        "config": {k: cfg[k] for k in ("model", "method", "networks", "draws", "generated",
                                        "train_steps", "lr_schedule", "vi_init_scale",
                                        "centroid_features", "n_quantiles") if k in cfg},
        "architecture": res["networks"][0].get("architecture"),
        "n_train": res["data"]["n_train"],
        "network_seconds": [{"fit": round(n["fit"]["wall_seconds"], 1),
                             "generate": round(n["generate_seconds"], 1)}
                            for n in res["networks"]],
        "summary": res["summary"],
    }
    (DOCS / "main_job.json").write_text(json.dumps(out, indent=1) + "\n")
    for name in FIGURES:
        src = run / "figures" / name
        if src.exists():
            shutil.copyfile(src, DOCS / name)
    text = README.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + BEGIN + "\n" + table(res["summary"]) + "\n" + END + rest.split(END, 1)[1]
        README.write_text(text)
    print(f"docs/main_job.json: {wall:.0f} s wall, {cpu:.0f} CPU-s, {peak:.0f} MiB peak")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

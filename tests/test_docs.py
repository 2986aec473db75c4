"""Numbers in the README's main-job section come from the JSON the job wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return []
    return [float(obj)]


def _block_numbers_missing(marker: str, json_path: Path) -> list[str]:
    """Numbers in the README block ``<!-- marker:begin ... -->``..``<!-- marker:end -->`` that
    the JSON file does not hold (at the block's rounding)."""
    text = (ROOT / "README.md").read_text()
    assert f"<!-- {marker}:begin" in text, marker
    block = text.split(f"<!-- {marker}:begin", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    block = block.split("-->", 1)[1]
    return _numbers_missing(block, _numbers(json.loads(json_path.read_text())))


def _numbers_missing(block: str, values: list[float]) -> list[str]:
    """Numbers in a markdown text (markers, code and figure paths left out) that are not among
    ``values`` at the text's rounding."""
    block = re.sub(r"<!--.*?-->", "", block, flags=re.S)  # markers
    block = re.sub(r"```.*?```", "", block, flags=re.S)  # code blocks
    block = re.sub(r"\(docs/[^)]*\)|`[^`]*`", "", block)  # figure paths, code spans
    block = re.sub(r"(?<=\d),(?=\d{3})", "", block)  # 10,000 -> 10000
    missing = []
    for token in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?", block):
        if "e" in token:
            if not any(abs(v - float(token)) <= 0.0005 * abs(float(token)) for v in values):
                missing.append(token)
            continue
        decimals = len(token.split(".")[1]) if "." in token else 0
        if not any(round(v, decimals) == float(token) for v in values):
            missing.append(token)
    return missing


def test_readme_main_job_numbers_are_in_the_json() -> None:
    missing = _block_numbers_missing("main-job", ROOT / "docs" / "main_job.json")
    assert not missing, f"README numbers not in docs/main_job.json: {missing}"


def test_readme_generator_numbers_are_in_the_json() -> None:
    path = ROOT / "analysis" / "results" / "generator_curves.json"
    missing = _block_numbers_missing("generator-curves", path)
    assert not missing, f"README numbers not in {path.name}: {missing}"


def _layout_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]


def test_readme_layout_table_names_every_module_and_nothing_else() -> None:
    """Every module and subpackage of calamp/ is named in the Layout table; every path the
    table names exists."""
    named = " ".join(_layout_rows())
    paths = re.findall(r"`([^`]+)`", named)
    pkg = ROOT / "calamp"
    missing = []
    for path in sorted(pkg.iterdir()):
        if path.name.startswith("_") or path.name == "__pycache__":
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            if f"calamp/{path.name}/" not in paths:
                missing.append(f"calamp/{path.name}/")
        elif path.suffix == ".py" and not any(
            p in (f"calamp/{path.name}", path.name) for p in paths
        ):
            missing.append(f"calamp/{path.name}")
    assert not missing, f"README layout table lacks {missing}"
    folder = "calamp/"
    for p in paths:
        if "/" in p:
            folder = p if p.endswith("/") else p.rsplit("/", 1)[0] + "/"
            target = ROOT / p
        else:  # a file named after a path in the same cell: same folder
            target = ROOT / folder / p
        assert target.exists(), f"README layout table names {p}, which does not exist"


def _script(path: str):
    """Load a study/benchmark script by its path (they are not packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _generated_section(mod) -> str:
    """The one section between ``mod.BEGIN`` and ``mod.END`` of ``mod.DOCUMENT``, markers kept."""
    text = mod.DOCUMENT.read_text()
    assert text.count(mod.BEGIN) == 1 and text.count(mod.END) == 1
    return mod.BEGIN + text.split(mod.BEGIN, 1)[1].split(mod.END, 1)[0] + mod.END


def test_ring_adammcmc_section_is_the_rendering_of_its_json() -> None:
    mod = _script("analysis/ring_mcmc_point.py")
    point = json.loads(mod.POINT_JSON.read_text())
    assert _generated_section(mod) == mod.render(point), (
        "rerun: python analysis/ring_mcmc_point.py render")


def test_quadrature_benchmark_section_is_the_rendering_of_its_json() -> None:
    mod = _script("benchmarks/bench_quadrature.py")
    results = json.loads(mod.OUT.read_text())
    assert set(results) == {"flow", "cnf"}
    assert _generated_section(mod) == mod.render(results), (
        "rerun: python benchmarks/bench_quadrature.py --render")


@pytest.mark.parametrize(
    ("script", "rerun"),
    [
        ("benchmarks/end_to_end.py", "render"),
        ("benchmarks/bench_common_noise.py", "--render"),
        ("benchmarks/bench_batched_flow.py", "--render"),
        ("benchmarks/bench_schedule.py", "--render"),
        ("analysis/vi_widths.py", "render"),
    ],
)
def test_generated_section_is_the_rendering_of_its_json(script, rerun) -> None:
    """Sections of RESULTS.md / README.md written by a script from its JSON (``mod.OUT``)."""
    mod = _script(script)
    assert _generated_section(mod) == mod.render(json.loads(mod.OUT.read_text())), (
        f"rerun: python {script} {rerun}")


def test_vi_widths_run_differs_from_the_default_in_the_width_rate_only() -> None:
    result = json.loads(_script("analysis/vi_widths.py").OUT.read_text())
    run = result["jobs"]["runs"][0]
    assert run["vi_scale_lr"] != 1.0 and run["train_steps"] == 1500 and run["networks"] == 5


def test_study_documents_hold_only_numbers_of_their_json() -> None:
    """RING_RESULTS.md and CALO_RESULTS.md are generated from the summary JSON (``document``
    step): every number in them is a number of the JSON they are generated from."""
    res = ROOT / "analysis" / "results"
    for doc, sources in (
        ("RING_RESULTS.md", ("ring_summary.json", "ring_adammcmc_point.json")),
        ("CALO_RESULTS.md", ("calo_summary.json",)),
    ):
        values = [v for name in sources for v in _numbers(json.loads((res / name).read_text()))]
        missing = _numbers_missing((ROOT / "analysis" / doc).read_text(), values)
        assert not missing, f"analysis/{doc}: numbers not in {sources}: {missing[:20]}"


def test_study_documents_are_the_rendering_of_their_json() -> None:
    for script, name in (("analysis/ring_study.py", "ring"), ("analysis/calo_study.py", "calo")):
        mod = _script(script)
        summary = json.loads((ROOT / "analysis" / "results" / f"{name}_summary.json").read_text())
        if name == "ring":
            point = json.loads(mod.MCMC_POINT.read_text())
            expected = mod.document(summary, point)
        else:
            expected = mod.document(summary)
        assert mod.DOCUMENT.read_text() == expected.rstrip("\n") + "\n", (
            f"rerun: python {script} document")


def test_readme_gan_block_is_the_rendering_of_the_json() -> None:
    mod = _script("analysis/calo_study.py")
    summary = json.loads((ROOT / "analysis" / "results" / "calo_summary.json").read_text())
    block = mod.gan_block(summary)
    assert block is not None and block in (ROOT / "README.md").read_text(), (
        "rerun: python analysis/calo_study.py document")


def test_readme_gan_numbers_are_in_the_json() -> None:
    path = ROOT / "analysis" / "results" / "calo_summary.json"
    missing = _block_numbers_missing("gan", path)
    assert not missing, f"README numbers not in {path.name}: {missing}"

"""Small runs start fast: pandas and pyarrow load only when a run needs them, matplotlib never."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, hex_recipe, luigi_env

HEAVY = ("pandas", "pyarrow", "matplotlib")
LOADED = f"import sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
LUIGI_THEN_LOADED = f"""import atexit, json, sys
from luigi.cmdline import luigi_run
atexit.register(lambda: print("LOADED", json.dumps([m for m in {HEAVY!r} if m in sys.modules])))
luigi_run(sys.argv[1:])
"""
"""``python -c`` running Luigi's command line, then printing which heavy modules the run imported."""


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=luigi_env(), capture_output=True, text=True,
                          timeout=120)


def noop_build(recipe: Path) -> tuple[list[str], str]:
    """BuildDataset of ``recipe`` in a process of its own: the heavy modules it imported, and its log."""
    run = python(LUIGI_THEN_LOADED, "--module", "pipeline", "BuildDataset", "--recipe", str(recipe),
                 "--local-scheduler")
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.rpartition("LOADED ")[2]), run.stderr


def test_import_pipeline_loads_no_heavy_module_and_registers_every_task():
    run = python("import json, luigi, pipeline\n"
                 "print(json.dumps(sorted(set(pipeline.__all__) - {'FLOWS'} - set(luigi.task_register.Register"
                 ".task_names()))))\n" + LOADED)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()] == [[], []]  # every task known to Luigi


def test_a_ticks_task_preloads_pandas_in_the_main_process(tmp_path):
    recipe = tmp_path / "ticks.toml"
    recipe.write_text((ROOT / "samples" / "ticks.toml").read_text()
                      .replace('input_dir = "ticks"', f'input_dir = "{ROOT / "samples" / "ticks"}"')
                      .replace('output_dir = "../out/ticks-demo"', f'output_dir = "{tmp_path / "out"}"'))
    run = python(f"import json, pipeline\n{LOADED}\npipeline.BuildTicks(recipe={str(recipe)!r})\n{LOADED}")
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()] == [[], ["pandas", "pyarrow"]]


def test_a_noop_build_loads_no_heavy_module_and_the_plots_are_drawn_only_when_their_facts_change(tmp_path,
                                                                                                  shared_data):
    recipe = hex_recipe(tmp_path, shared_data / "hex")
    loaded, _ = noop_build(recipe)  # the first build: zstd batches and Parquet provenance need pyarrow only
    assert loaded == ["pyarrow"]
    report = tmp_path / "out-hex" / "report"
    drawn = {path.name: path.stat().st_mtime_ns for path in report.glob("*.svg")}
    assert {"failures.svg", "splits.svg", "memory.svg", "label_value.svg"} <= set(drawn)

    loaded, log = noop_build(recipe)
    assert "complete ones were encountered" in log and "ran successfully" not in log
    assert loaded == []

    (report / "report.md").unlink()  # the report is stale, its plots' facts are not
    (report / "splits.svg").unlink()
    loaded, _ = noop_build(recipe)
    assert loaded == []  # drawing needs no plotting library
    assert (report / "report.md").is_file() and (report / "splits.svg").is_file()
    assert {name: mtime for name, mtime in drawn.items() if name != "splits.svg"} == \
        {path.name: path.stat().st_mtime_ns for path in report.glob("*.svg") if path.name != "splits.svg"}
    assert "![Split sizes](splits.svg)" in (report / "report.md").read_text()

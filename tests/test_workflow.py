"""The GitHub Actions workflow cannot run here: check its structure so a broken edit is caught."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def load():
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


def commands(job) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_triggers_concurrency_and_timeouts():
    workflow = load()
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert all(job.get("timeout-minutes") for job in workflow["jobs"].values())


def test_test_job_runs_ruff_and_the_readme_test_command_on_two_pythons():
    job = load()["jobs"]["test"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]
    run = commands(job)
    assert "download.pytorch.org/whl/cpu" in run
    assert 'pip install -e ".[dev,ray,slurm]"' in run  # the Ray and Slurm backends' tests run in CI too
    assert ".ci/slurm/start" in run  # on a real single-node Slurm, where one can start
    assert "ruff check" in run
    assert "python -m pytest" in run and "python -m pytest" in (ROOT / "README.md").read_text()


def test_smoke_job_regenerates_and_checks_the_tables():
    job = load()["jobs"]["smoke"]
    cache = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "data/MNIST/raw"
    for digest in ("ba891046e650", "65a50cbbf4e9", "0fa7898d5092", "ff7bcfd416de"):
        assert digest in cache["with"]["key"]
    run = commands(job)
    for command in (
        "harness data",
        "harness run --matrix ablations.toml --profile smoke --device cpu --store smoke.sqlite",
        "harness table --store smoke.sqlite",
        "> smoke.md",
        "--check RESULTS.md",
        "GITHUB_STEP_SUMMARY",
    ):
        assert command in run
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact"))
    assert "smoke.md" in upload["with"]["path"]

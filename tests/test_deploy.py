"""deploy/: the Slurm batch script runs end to end (fake srun, simulated GPUs, SQLite), and the
Kubernetes Job manifest is a well-formed Indexed Job that grades every GPU of a node into the
database named by a secret."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SLURM = REPO / "deploy" / "gpuhealth-slurm.sh"
K8S = REPO / "deploy" / "gpuhealth-k8s-job.yaml"


def executable(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_slurm_script_grades_every_gpu_of_the_node_into_the_database(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # srun runs its command once, here, as one node of the allocation would
    executable(
        bin_dir / "srun", '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n"$@"\n'
    )
    # two simulated GPUs stand in for the node's cards (the script passes --gpus all)
    wrapper = executable(
        bin_dir / "gpuhealth-sim",
        f'#!/usr/bin/env bash\nexec "{sys.executable}" -m gpuhealth "$@" '
        "--sim-card h100-sxm5-80gb --sim-card h200-sxm-141gb\n",
    )
    db = tmp_path / "fleet.sqlite"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        PYTHONPATH=str(REPO),
        GPUHEALTH_DB=str(db),
        GPUHEALTH_RUNS=str(tmp_path / "runs"),
        GPUHEALTH_PRESET="quick",
        GPUHEALTH=str(wrapper),
    )
    # two jobs on one node: each writes its own folder (a second --out onto the first job's
    # records would be refused)
    for job in ("4242", "4243"):
        done = subprocess.run(
            ["bash", str(SLURM)], env={**env, "SLURM_JOB_ID": job},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        host = done.stdout.split(":")[0].strip()
        graded = tmp_path / "runs" / host / job / "grades.json"
        grades = json.loads(graded.read_text(encoding="utf-8"))["cards"]
        assert [(g["gpu"], g["grade"]) for g in grades] == [(0, "A"), (1, "A")]
    command = [sys.executable, "-m", "gpuhealth", "fleet", "summary", "--db", str(db)]
    summary = subprocess.run(
        [*command, "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    fleet = json.loads(summary.stdout)
    assert fleet["cards"] == 2 and fleet["runs"] == 4
    assert fleet["counts"] == {"NVIDIA H100 80GB HBM3": {"A": 1}, "NVIDIA H200": {"A": 1}}


def test_slurm_script_needs_the_database_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPUHEALTH_DB"}
    done = subprocess.run(
        ["bash", str(SLURM)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0 and "GPUHEALTH_DB" in done.stderr


def test_kubernetes_job_grades_all_gpus_of_each_node_into_the_database() -> None:
    job = yaml.safe_load(K8S.read_text(encoding="utf-8"))
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"  # one pod per node
    (container,) = pod["containers"]
    command = container["command"] + container["args"]
    assert command[:4] == ["gpuhealth", "grade", "--gpus", "all"]
    env = {e["name"]: e for e in container["env"]}
    assert env["GPUHEALTH_DB"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts <= {v["name"] for v in pod["volumes"]}

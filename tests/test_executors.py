"""`robust_sft.executors.run_calls`: the local process pool and Ray run the same calls to the same results.

The functions run in worker processes, so they are defined at module level (pickled by name). Ray's start-up
(a few seconds) is paid once, in the module-scoped `ray_instance` fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robust_sft.core.config_types import ConfigError
from robust_sft.executors import CallFailed, ExecutorConfig, run_calls

try:
    import ray  # an optional extra

    HAS_RAY = True
except ImportError:
    HAS_RAY = False
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install -e '.[ray]')")
SETUP_VAR = "ROBUST_SFT_TEST_SETUP"


def square(x: int) -> int:
    return x * x


def mark_setup(value: str) -> None:
    os.environ[SETUP_VAR] = value


def setup_value_and_pid(x: int) -> tuple[int, str | None, int]:
    return x, os.environ.get(SETUP_VAR), os.getpid()


def fail_on_one(x: int, marker_dir: str) -> int:
    (Path(marker_dir) / str(x)).touch()
    if x == 1:
        raise ValueError(f"bad value {x}")
    time.sleep(0.3)  # long enough that later calls are still waiting when call 1 fails
    return x


def die_on_first_attempt(x: int, marker_dir: str) -> int:
    """Call 1 SIGKILLs its own worker process the first time; a rerun finds the marker and finishes."""
    marker = Path(marker_dir) / f"{x}.started"
    if x == 1 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def torch_value(seed: int) -> float:
    import torch

    torch.manual_seed(seed)
    return (torch.randn(64, 64) @ torch.randn(64, 64)).sum().item()


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ray_instance():
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(params=["local", pytest.param("ray", marks=needs_ray)])
def config(request):
    """Two workers of each back end; the ray one uses the module's Ray instance."""
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
    return ExecutorConfig(executor=request.param, workers=2)


def test_results_in_call_order(config):
    calls = [(x,) for x in range(7)]
    assert run_calls(square, calls, config, progress=False) == [x * x for x in range(7)]
    assert run_calls(square, [], config, progress=False) == []


def test_setup_runs_in_each_worker_process(config):
    results = run_calls(setup_value_and_pid, [(x,) for x in range(6)], config, setup=mark_setup,
                        setup_args=(f"set-{config.executor}",), progress=False)
    assert [x for x, _, _ in results] == list(range(6))
    assert {value for _, value, _ in results} == {f"set-{config.executor}"}
    assert os.getpid() not in {pid for _, _, pid in results}  # the calls ran in workers, not here
    assert os.environ.get(SETUP_VAR) is None


def test_a_failed_call_is_named_and_later_calls_do_not_start(config, tmp_path):
    config.workers = 1
    calls = [(x, str(tmp_path)) for x in [1, 2, 3, 4, 5, 6]]
    with pytest.raises(CallFailed, match=r"units: call 1 fail_on_one\(1, .*\) failed: ValueError: bad value 1") as info:
        run_calls(fail_on_one, calls, config, progress=False)
    assert info.value.index == 0 and info.value.call == calls[0]
    started = {int(p.name) for p in tmp_path.iterdir()}
    # Local: the pool had already queued a call or two; ray: only one call was submitted at a time.
    assert 1 in started and 6 not in started
    if config.executor == "ray":
        assert started == {1}


@needs_ray
def test_ray_reruns_a_call_whose_worker_was_killed(ray_instance, tmp_path):
    config = ExecutorConfig(executor="ray", workers=0, max_retries=2)
    calls = [(x, str(tmp_path)) for x in range(4)]
    assert run_calls(die_on_first_attempt, calls, config, progress=False) == [0, 10, 20, 30]
    assert (tmp_path / "1.started").exists()


@needs_ray
def test_ray_without_retries_names_the_call_whose_worker_died(ray_instance, tmp_path):
    config = ExecutorConfig(executor="ray", workers=0, max_retries=0)
    with pytest.raises(CallFailed, match=r"call 2 die_on_first_attempt\(1, .*\) failed: WorkerCrashedError"):
        run_calls(die_on_first_attempt, [(x, str(tmp_path)) for x in range(3)], config, progress=False)


@needs_ray
def test_local_and_ray_give_identical_results(ray_instance):
    calls = [(seed,) for seed in range(4)]
    local = run_calls(torch_value, calls, ExecutorConfig(workers=2), setup=one_thread, progress=False)
    on_ray = run_calls(torch_value, calls, ExecutorConfig(executor="ray", workers=0), setup=one_thread,
                       progress=False)
    assert local == on_ray and len(set(local)) == 4


@needs_ray
def test_ray_starts_and_stops_its_own_instance(tmp_path):
    """No Ray connection in the process: run_calls starts an instance sized to this machine, then stops it."""
    root = Path(__file__).resolve().parents[1]
    # `tests` is importable only through the driver's sys.path (not its cwd or PYTHONPATH): the workers get it too.
    script = (
        f"import sys; sys.path.insert(0, {str(root)!r})\n"
        "import ray\n"
        "from robust_sft.executors import ExecutorConfig, run_calls\n"
        "from tests.test_executors import square\n"
        "print(run_calls(square, [(2,), (3,)], ExecutorConfig(executor='ray', workers=0), progress=False))\n"
        "print(ray.is_initialized())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(root / "src"), RAY_ADDRESS="")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["[4,", "9]", "False"]


def test_config_errors():
    with pytest.raises(ConfigError, match="executor must be one of local, ray"):
        ExecutorConfig(executor="slurm")
    with pytest.raises(ConfigError, match="at least 1 with the local executor"):
        ExecutorConfig(workers=0)
    with pytest.raises(ConfigError, match="executor is local"):
        ExecutorConfig(ray_address="auto")
    with pytest.raises(ConfigError, match="cpus_per_unit must be a positive number"):
        ExecutorConfig(executor="ray", cpus_per_unit=0)
    with pytest.raises(ConfigError, match="gpus_per_unit must be 0 or more"):
        ExecutorConfig(executor="ray", gpus_per_unit=-1)
    with pytest.raises(ConfigError, match="max_retries must be 0 or more"):
        ExecutorConfig(executor="ray", max_retries=-1)
    with pytest.raises(ConfigError, match="workers: expected an integer"):
        ExecutorConfig(workers="two")
    assert ExecutorConfig(executor="ray", workers=0, cpus_per_unit="0.5").cpus_per_unit == 0.5

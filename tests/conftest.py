"""Test set-up: W&B offline and the metrics cache in a temporary folder, quiet Lightning.

Under pytest-xdist (``-n``, the default in pyproject.toml) each worker process gets its own W&B and
metrics-cache folders (a subfolder named after the worker when the caller set one, as .ci/run does),
so no two workers write the same files, and one torch thread: two workers on two cores each running
two threads fight for the cores.
"""

import logging
import os
import tempfile
import warnings

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... in an xdist worker; "" in one process
FOLDERS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "GAN_LIGHTNING_CACHE")

_WANDB_TMP = tempfile.mkdtemp(prefix=f"gan_lightning_wandb_{WORKER}_" if WORKER else "gan_lightning_wandb_")
for key, value in {
    "WANDB_MODE": "offline",
    "WANDB_DIR": _WANDB_TMP,
    "WANDB_CACHE_DIR": os.path.join(_WANDB_TMP, "cache"),
    "WANDB_CONFIG_DIR": os.path.join(_WANDB_TMP, "config"),
    "WANDB_DATA_DIR": os.path.join(_WANDB_TMP, "data"),
    "WANDB_SILENT": "true",
    "GAN_LIGHTNING_CACHE": os.path.join(_WANDB_TMP, "metrics_cache"),
}.items():
    if WORKER and key in FOLDERS and os.environ.get(key):
        os.environ[key] = os.path.join(os.environ[key], WORKER)
    else:
        os.environ.setdefault(key, value)
if WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when torch is first imported, which is after this

warnings.filterwarnings("ignore", message=".*LeafSpec.*")
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for tiny networks: a second thread gains nothing, and on a busy 2-core machine costs 4x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def script_files(tmp_path_factory):
    """Real runs and broken files for the bad-input tests (tests/script_harness.py), made once."""
    from script_harness import make_files

    return make_files(tmp_path_factory.mktemp("bad_input"))

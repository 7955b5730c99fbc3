"""Where the data dir is, and who may use it: one process without Redis, any number with it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hooks import instance
from hooks.settings import REPO_ROOT, Settings


def test_the_data_dir_is_beside_the_config_litellm_was_started_with(tmp_path: Path) -> None:
    config = tmp_path / "deploy" / "litellm_config.yaml"
    config.parent.mkdir()
    config.write_text("model_list: []\n")
    # `litellm --config ...` hands the path to its workers as WORKER_CONFIG (JSON).
    worker = {"WORKER_CONFIG": json.dumps({"config": str(config), "model": None})}
    assert Settings.from_env(worker).data_dir == tmp_path / "deploy" / "data"
    # CONFIG_FILE_PATH wins, as it does in LiteLLM.
    other = tmp_path / "other.yaml"
    other.write_text("model_list: []\n")
    both = {**worker, "CONFIG_FILE_PATH": str(other)}
    assert Settings.from_env(both).data_dir == tmp_path / "data"
    # KEYPOOL_DATA_DIR wins over both, made absolute.
    explicit = Settings.from_env({**both, "KEYPOOL_DATA_DIR": "state"}).data_dir
    assert explicit == Path.cwd() / "state" and explicit.is_absolute()


def test_a_relative_config_path_is_taken_from_the_directory_the_proxy_started_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"WORKER_CONFIG": json.dumps({"config": "conf/litellm_config.yaml"})}
    assert Settings.from_env(env).data_dir == tmp_path / "conf" / "data"


def test_without_a_config_the_data_dir_is_the_repositorys() -> None:
    # Scripts (usage report, revalidate) then find what `make run`'s proxy wrote.
    assert Settings.from_env({}).data_dir == REPO_ROOT / "data"
    assert Settings.from_env({"WORKER_CONFIG": "not json"}).data_dir == REPO_ROOT / "data"


def test_workers_come_from_litellms_num_workers() -> None:
    assert Settings.from_env({}).workers == 1
    assert Settings.from_env({"NUM_WORKERS": "4"}).workers == 4
    with pytest.raises(ValueError, match="NUM_WORKERS"):
        Settings.from_env({"NUM_WORKERS": "many"})


def test_several_workers_need_redis() -> None:
    message = instance.workers_refusal(Settings(workers=2))
    assert message is not None and "--num_workers 2 without REDIS_URL" in message
    assert instance.workers_refusal(Settings(workers=2, redis_url="redis://h:6379")) is None
    assert instance.workers_refusal(Settings(workers=1)) is None
    with pytest.raises(instance.StartupRefused, match="REDIS_URL"):
        instance.claim(Settings(workers=3))


def test_one_process_per_data_dir_without_redis(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    lock = instance.claim(settings)
    assert lock is not None
    assert (tmp_path / "data" / "keypool.lock").read_text() == str(os.getpid())
    # flock is per open file: a second claim, even in this process, is a second instance.
    with pytest.raises(instance.StartupRefused) as refused:
        instance.claim(settings)
    message = str(refused.value)
    assert f"the data dir {tmp_path / 'data'} is in use by pid {os.getpid()}" in message
    assert "REDIS_URL" in message and "KEYPOOL_DATA_DIR" in message
    # With Redis the processes share one state: no lock at all.
    assert instance.claim(Settings(data_dir=tmp_path / "data", redis_url="redis://h:6379", workers=4)) is None
    lock.release()
    again = instance.claim(settings)  # the lock goes with its process
    assert again is not None
    again.release()


def test_holder_names_the_process_that_holds_the_data_dir(tmp_path: Path) -> None:
    holder = instance.holder
    assert holder(tmp_path) is None  # no lock file
    settings = Settings.from_env({"KEYPOOL_DATA_DIR": str(tmp_path)})
    lock = instance.claim(settings)
    assert lock is not None
    try:
        # flock is per open file: from this same process a second open sees it held.
        assert holder(tmp_path) == f"pid {os.getpid()}"
    finally:
        lock.release()
    assert holder(tmp_path) is None

"""`rsneo.model.device`: a device this machine lacks is one InputError naming the option, before loading."""

from __future__ import annotations

import pytest
import torch

from rsneo.errors import InputError
from rsneo.model import RSNeoConfig, RSNeoForCausalLM
from rsneo.model.device import available_devices, torch_device


def test_cpu_is_always_available_and_passes_through():
    assert available_devices()[0] == "cpu"
    assert torch_device("cpu") == torch.device("cpu") and torch_device(torch.device("cpu")).type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_refused_with_the_choices(name):
    with pytest.raises(
        InputError, match=rf"--device {name}: this machine has no CUDA GPU .*expected one of \['cpu'"
    ):
        torch_device(name)


@pytest.mark.parametrize("name", ["gpu0", "cuda:x", ""])
def test_a_name_that_is_no_device_is_refused(name):
    with pytest.raises(InputError, match=r"not a device name; expected one of \['cpu'"):
        torch_device(name, option="--device")


def test_the_option_named_is_the_one_the_user_typed():
    with pytest.raises(InputError, match=r"^trainer.accelerator tpu: "):
        torch_device("tpu", option="trainer.accelerator")


def test_loading_a_model_checks_the_device_first(tmp_path):
    model = RSNeoForCausalLM(RSNeoConfig.from_preset("tiny"))
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(InputError, match=r"--device gpu0: not a device name"):
        RSNeoForCausalLM.from_pretrained(tmp_path / "m", device="gpu0")

"""The device a command runs on, checked before anything is loaded onto it.

torch accepts `--device cuda` on a machine without a GPU and fails later, deep in a tensor copy, with a
driver message; here it is one `InputError` that names the option and what this machine has.
"""

from __future__ import annotations

import torch

from rsneo.errors import InputError


def available_devices() -> list[str]:
    """What this machine can run on: cpu, then each CUDA GPU, then Apple's mps."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def torch_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """`name` as a torch device this machine has, or an InputError naming `option` and the choices."""
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(str(name).strip())
        except RuntimeError:
            raise InputError(
                f"{option} {name}: not a device name; expected one of {available_devices()}"
            ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"{option} {name}: this machine has no CUDA GPU that torch {torch.__version__} can use; "
                f"expected one of {available_devices()}"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s); "
                f"expected one of {available_devices()}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            f"{option} {name}: Apple's mps is not available here; expected one of {available_devices()}"
        )
    elif device.type not in ("cpu", "cuda", "mps", "meta"):
        raise InputError(
            f"{option} {name}: rsneo runs on cpu, cuda or mps; expected one of {available_devices()}"
        )
    return device

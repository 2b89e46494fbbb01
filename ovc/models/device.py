"""One device and one precision policy for every stage that runs a model.

* :func:`resolve_device` — ``compute.device``: ``auto`` is this process's CUDA device when one is
  visible (inside a Ray Train worker the caller passes ``ray.train.torch.get_device()``, the GPU
  Ray assigned to that worker), else the CPU; anything else is taken as a torch device string.
* :func:`autocast` — mixed precision on CUDA (``compute.amp``): bf16 where the GPU supports it,
  else fp16 (then :func:`grad_scaler` returns an enabled ``GradScaler``); a no-op on CPU, so CPU
  runs stay bit-reproducible. Trainable parameters stay fp32 (:func:`fp32_trainable`) and callers
  compute the loss from ``scores.float()`` outside the autocast region.
* :func:`train_autocast` — the training step's region: :func:`autocast` on CUDA; on a CPU that
  multiplies bf16 natively (AVX512-BF16 / AMX, :func:`cpu_bf16_supported`) and with
  ``compute.cpu_amp``, bf16 autocast with the math attention kernel (CPU flash attention's bf16
  backward is slower than the math one for these short sequences). bf16 matmuls run ~5x faster than
  fp32 there; loss and gradients stay within ~1-3% of fp32 (``ovc bench train_step``,
  ``tests/train/test_train_step.py``). Elsewhere, and with ``cpu_amp=false``, CPU steps stay fp32.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

import torch

_M = TypeVar("_M", bound=torch.nn.Module)  # fp32_trainable returns the module it was given


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda:<current>`` when CUDA is visible, else ``cpu``; otherwise ``torch.device(spec)``."""
    if isinstance(spec, torch.device):
        return spec
    if spec and spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype on ``device`` (bf16 if supported, else fp16), or None (no autocast: CPU or off)."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool = True) -> Any:
    """Context manager: autocast to :func:`amp_dtype` on CUDA; ``nullcontext`` elsewhere."""
    dtype = amp_dtype(device, enabled)
    return torch.autocast(device_type="cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    cpu = torch.cpu
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)  # torch's own probes; absent in some builds -> not supported
        if fn is not None and fn():
            return True
    return False


def cpu_amp_active(device: torch.device, cpu_amp: bool) -> bool:
    """Whether :func:`train_autocast` runs CPU bf16 on ``device`` (part of a training run's fingerprint)."""
    return bool(cpu_amp) and device.type == "cpu" and cpu_bf16_supported()


def train_autocast(device: torch.device, amp: bool = True, cpu_amp: bool = False) -> Any:
    """Context manager of a training step: :func:`autocast` on CUDA; CPU bf16 autocast (math attention)
    when :func:`cpu_amp_active`; else ``nullcontext``.

    Args:
        device: the step's device.
        amp: ``compute.amp`` (CUDA mixed precision).
        cpu_amp: ``compute.cpu_amp`` (CPU bf16 where the CPU has it natively).
    """
    if not cpu_amp_active(device, cpu_amp):
        return autocast(device, amp)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    stack = contextlib.ExitStack()
    stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
    stack.enter_context(torch.autocast(device_type="cpu", dtype=torch.bfloat16))
    return stack


def grad_scaler(device: torch.device, enabled: bool = True) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 autocast (bf16 and fp32 need none)."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype(device, enabled) == torch.float16)


def fp32_trainable(module: _M) -> _M:
    """Cast every trainable parameter to fp32 in place (frozen towers keep ``clip.precision``)."""
    for p in module.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return module


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a parameterless module)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")

"""Fixtures shared by the kernel tests."""

import pytest

from stagevar_kernels.backends import triton_interpreting
from stagevar_kernels.testing import devices


def _triton_device_params():
    params = []
    for dev in devices():
        if dev == "cpu":
            params.append(pytest.param("cpu", marks=pytest.mark.interpreter, id="cpu-interpreter"))
        else:
            params.append(pytest.param(dev, marks=pytest.mark.cuda, id=dev))
    return params


@pytest.fixture(params=_triton_device_params())
def triton_device(request):
    """A device the Triton kernels run on: CPU through the interpreter, CUDA compiled."""
    if request.param == "cpu" and not triton_interpreting():
        pytest.skip("Triton kernels on CPU tensors need TRITON_INTERPRET=1 before the kernels are imported")
    return request.param

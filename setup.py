"""Build script: pure-Python packages plus the optional `stagevar_kernels._C` extension.

The extension is built as follows (torchao's rule, so a CPU build box can build the CUDA part):
- `STAGEVAR_NO_EXT=1`, or torch not importable: no extension at all; the package still works through the
  `reference` and `triton` backends.
- torch built with CUDA and a CUDA toolkit found (`CUDA_HOME`), and not `STAGEVAR_NO_CUDA=1`: a CUDAExtension
  with `csrc/ops.cpp` and `csrc/cuda/*.cu` for `TORCH_CUDA_ARCH_LIST` (default "8.0;9.0").
- otherwise: a CppExtension with `csrc/ops.cpp` only (the op schemas), so `stagevar_kernels._C` imports everywhere.

torch is not a build requirement (see pyproject.toml): install with `pip install --no-build-isolation .`.
"""

import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _extensions():
    if _flag("STAGEVAR_NO_EXT"):
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("stagevar-kernels: torch not importable at build time; building without the C++ extension")
        return [], {}

    use_cuda = bool(torch.version.cuda) and cpp_extension.CUDA_HOME is not None and not _flag("STAGEVAR_NO_CUDA")
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    sources = [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")))]
    # No -std here: torch.utils.cpp_extension adds the standard its headers need (c++17 up to 2.9, c++20 since).
    cxx_flags = ["-O3", "-DPy_LIMITED_API=0x030a0000"]
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        sources += [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))]
        ext = cpp_extension.CUDAExtension(
            "stagevar_kernels._C",
            sources,
            include_dirs=include_dirs,
            define_macros=[("STAGEVAR_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]},
            py_limited_api=True,
        )
    else:
        ext = cpp_extension.CppExtension(
            "stagevar_kernels._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            py_limited_api=True,
        )
    print(f"stagevar-kernels: building the {'CUDA' if use_cuda else 'CPU-only'} extension")
    cmdclass = {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}
    return [ext], cmdclass


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["stagevar_kernels", "stagevar_kernels.*"])
    + find_packages(where="python", include=["stagevar", "stagevar.*"]),
    package_dir={"stagevar": "python/stagevar"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)

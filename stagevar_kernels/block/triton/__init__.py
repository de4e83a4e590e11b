"""Triton kernels of the block ops, one module per op. Import a submodule only when Triton is installed.

Under ``TRITON_INTERPRET=1`` (set before these modules are imported) the kernels run on CPU tensors. Every kernel
rounds at the same points on the interpreter and on a GPU: casts to bfloat16 go through :func:`rounding.round_to`,
and launches pass ``enable_fp_fusion=False`` so that no multiply-add is contracted into an FMA on the GPU.
"""

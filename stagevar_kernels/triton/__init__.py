"""Triton kernels of the two ops. Import a submodule only when Triton is installed.

Under ``TRITON_INTERPRET=1`` (set before these modules are imported) the kernels run on CPU tensors.
"""

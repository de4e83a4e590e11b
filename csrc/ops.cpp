// Always built (CPU-only installs too): the schemas of the private C++ ops and the Python module stub.
// The kernels are registered for the CUDA dispatch key in csrc/cuda/*.cu when the extension is built with CUDA;
// stagevar_kernels/backends.py asks the dispatcher whether that happened. The public ops
// (stagevar::project_and_sample / restore_merge) are defined in Python with Library("stagevar", "FRAGMENT"),
// so this file must use TORCH_LIBRARY_FRAGMENT as well (one TORCH_LIBRARY per namespace).
#include <Python.h>

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(stagevar, m) {
  // seed_tensor: None, or a one-element int64 tensor on x's device that replaces `seed`; the kernels read it on the
  // device (no host sync), so one captured CUDA graph draws new numbers after the tensor is rewritten in place.
  m.def(
      "_project_and_sample_cuda(Tensor x, int rank, int seed, Tensor? seed_tensor) -> (Tensor, Tensor)");
  m.def(
      "_restore_merge_cuda(Tensor y, Tensor idx, Tensor cache, int[] src_hw, int[] dst_hw, str mode) -> Tensor");
}

// `from stagevar_kernels import _C` loads the shared library (running the registrations above); the module
// itself is empty. Limited-API compatible: no pybind11, no libtorch_python.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // m_name
      "stagevar_kernels C++ ops (torch.ops.stagevar._*_cuda); registrations run at import",  // m_doc
      -1,    // m_size
      nullptr,  // m_methods
      nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
}

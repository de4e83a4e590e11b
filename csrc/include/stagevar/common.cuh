// Small dtype helpers shared by the kernels, host-callable too (csrc/check/compile_kernels.cu checks the operand
// splits on the CPU). Explicit intrinsics only: torch's extension builds define
// __CUDA_NO_HALF_CONVERSIONS__ / __CUDA_NO_BFLOAT16_CONVERSIONS__, which remove the implicit float <-> half casts.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace stagevar {
namespace detail {

template <typename T>
__host__ __device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__host__ __device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__host__ __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__host__ __device__ __forceinline__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__host__ __device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace detail
}  // namespace stagevar

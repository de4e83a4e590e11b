// project_and_sample: xr[b] = Q_b^T x[b] (Gaussian random projection, Q_b = s * n_b) fused with the norm-weighted
// Gumbel-top-r row sampling. Contract: stagevar_kernels/philox.py and reference.py.
//
// Three launches on one stream, no host synchronisation, deterministic (bit-identical run to run):
//  1. project_prepare_kernel (project_prepare.cuh): Q generated ONCE per call into a workspace as split 16-bit
//     operands, the stacked copy of x the GEMM reads, and the sampling keys (squared norms in a fixed order).
//  2. the GEMM on the tensor cores with an fp32 result: cuBLAS through ATen in the launcher
//     (csrc/cuda/project_and_sample.cu); for fp32 x its result is xr itself.
//  3. select_cast_kernel below: blocks [0, B) select the rows (select_rows.cuh), the remaining blocks round the
//     fp32 GEMM result to xr's 16-bit dtype (none for fp32 x). Both only need launches 1-2, so they share one.
// Earlier fused design, for the record: Q regenerated per 128-channel tile inside the GEMM kernel made the op
// issue-bound on Philox + Box-Muller (16x redundant; ~55 us estimated at the Infinity-2B 40x40 step, B=1, against
// a 2.3 us roofline) and launched 80 CTAs at B=1 on a 132-SM H100.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "stagevar/common.cuh"
#include "stagevar/project_prepare.cuh"
#include "stagevar/select_rows.cuh"

namespace stagevar {

constexpr int kCastPerThread = 4;  // one 16-byte fp32 load per thread

struct CastParams {
  const float* src;  // (n) fp32 GEMM result, contiguous, 16-byte aligned
  void* dst;         // (n) xr, contiguous, 16-bit dtype
  int64_t n;
};

__host__ __device__ inline int64_t cast_blocks(int64_t n) {
  const int64_t per_block = static_cast<int64_t>(kSelectThreads) * kCastPerThread;
  return (n + per_block - 1) / per_block;
}

// Blocks [0, s.batch): selection of batch item blockIdx.x. Blocks above: xr = T(fp32 result), 4 per thread.
template <typename T>
__global__ void __launch_bounds__(kSelectThreads) select_cast_kernel(SelectParams s, CastParams c) {
  __shared__ SelectShared sm;
  if (static_cast<int>(blockIdx.x) < s.batch) {
    select_rows_block(s, static_cast<int>(blockIdx.x), sm);
    return;
  }
  const int64_t e = ((static_cast<int64_t>(blockIdx.x) - s.batch) * kSelectThreads + threadIdx.x) * kCastPerThread;
  if (e >= c.n) return;
  T* __restrict__ dst = static_cast<T*>(c.dst);
  if (e + kCastPerThread <= c.n) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(c.src + e));
    detail::VecOf<T, kCastPerThread> out;
    out.v[0] = detail::from_float<T>(v.x);
    out.v[1] = detail::from_float<T>(v.y);
    out.v[2] = detail::from_float<T>(v.z);
    out.v[3] = detail::from_float<T>(v.w);
    *reinterpret_cast<detail::VecOf<T, kCastPerThread>*>(dst + e) = out;  // 8-byte aligned: e % 4 == 0
  } else {
    for (int64_t k = e; k < c.n; ++k) dst[k] = detail::from_float<T>(c.src[k]);
  }
}

}  // namespace stagevar

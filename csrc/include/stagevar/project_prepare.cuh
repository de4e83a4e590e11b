// First launch of project_and_sample: everything the GEMM and the row selection need, in one pass over x and Q.
//
// xr[b] = Q_b^T x[b] runs as ONE tensor-core GEMM with an fp32 result (cuBLAS, called by the launcher) on split
// operands that carry fp32 accuracy through 16-bit multipliers. Along the reduction axis K the operands are
// stacked in `terms` blocks of M rows:
//   16-bit x (G = x's dtype, terms = 2): A = [Q0 | Q1],                    X = [x ; fin(x)]
//   fp32 x   (G = bfloat16, terms = 6):  A = [Q0 | Q0 | Q1 | Q0 | Q1 | Q2], X = [x0 ; x1 ; fin(x0) ; x2 ; x1 ; fin(x0)]
// with Q = float32(n * s) (n the contract's standard normals, s = float32(1/sqrt(r))), v0 = G(v) rounded to
// nearest, v1 = G(v - v0), v2 = G(v - v0 - v1) (the differences are exact in fp32), fin(v) = v where finite else
// 0. The products of 16-bit values are exact in fp32. 16-bit x: Q0 + Q1 carries Q to ~2^-17 relative (bf16) /
// 2^-22 (fp16), x is exact. fp32 x: the six products are every Qi xj with i + j <= 2 of three-way bf16 splits
// (~24 bits each), so only terms of relative size ~2^-27 are dropped: fp32 accuracy (two-way splits, 3 terms,
// leave ~2^-17, above the contract's 2^-20 |Q|^T|x| bound at small M). Emulated in torch at the Infinity-2B 40x40,
// 48x48 and 64x64 token counts (D=2048, N(0,1) x; tests/stagevar_kernels/test_cuda_split_numerics.py), as the
// largest |xr - xr_ref| / (|Q|^T |x|): fp32 1.1e-7 / 1.1e-7 / 1.2e-7 (the contract allows 2^-20 = 9.5e-7), bf16
// 5.3e-4 / 4.4e-4 / 3.3e-4, fp16 7.0e-5 / 5.6e-5 / 4.2e-5, with 99.6-99.8% of a 16-bit xr identical to the fp32
// reference rounded to x.dtype (a single bf16 Q gave a median relative error of 2.3e-3, reference 1.4e-3).
// Workspace (16-bit values): A is B x r x terms*M, X is B x terms*M x D: 1.8 MB + 13 MB in bf16 at 40x40 (B=1,
// r=282, D=2048), 5.4 MB + 39 MB for fp32 x; the fp32 GEMM then does 3x the bf16 work, the cost of 3xTF32 (TF32
// runs at half the bf16 rate on fp32 operands) with better accuracy and no global TF32 switch; a plain fp32 GEMM
// would run on the CUDA cores (67 against 990 dense TFLOP/s on an H100 SXM, ~5x slower still).
// Infinity: only fin(.) copies meet Q1, Q2 and x1, x2 are 0 for a non-finite x, so an inf meets Q0 alone, whose
// sign is Q's: the result is the reference's +-inf (or NaN where the reference sums opposite infinities) instead
// of the NaN that inf * (Q0 + Q1) gives when Q1 has the other sign (or is 0). A finite fp32 x whose bf16 rounding
// overflows is rounded toward zero instead.
//
// Blocks [0, q_blocks) generate A: one Philox call (4 normals) per thread, threads of a warp on consecutive i,
// so every store of a warp is a contiguous run of a row of A. Blocks [q_blocks, ...) run the x pass: one warp
// per row (b, i) reads x once (16-byte loads, several in flight), writes its rows of X, and sums the squared
// row norm in a fixed order (per lane in channel order, then a fixed xor-shuffle tree: bit-reproducible run to
// run), then lane 0 writes the row's sampling key as order-preserving uint32 bits.
#pragma once

#include <cstdint>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "stagevar/common.cuh"
#include "stagevar/philox.cuh"

namespace stagevar {

constexpr int kPrepareThreads = 256;
constexpr int kPrepareRowsPerBlock = kPrepareThreads / 32;  // x pass: one warp per row
constexpr int kPrepareUnroll = 4;                            // 16-byte loads in flight per lane

// The GEMM operand type and the number of stacked K blocks for an input dtype T.
template <typename T>
struct SplitOperand {
  using type = T;
  static constexpr int kTerms = 2;
};
template <>
struct SplitOperand<float> {
  using type = __nv_bfloat16;
  static constexpr int kTerms = 6;
};

struct PrepareParams {
  const void* x;  // (B, M, D) with the strides below (in elements)
  int64_t x_stride_b, x_stride_m, x_stride_d;
  bool x_vec16;        // channel stride 1, every row start 16-byte aligned: 16-byte loads
  void* a;             // (B, r, lda) G: row j holds the K = terms * M entries of Q^T
  int64_t a_stride_b;  // >= r * lda
  int lda;             // >= terms * M
  void* xs;            // (B, terms * M, ldx) G: the stacked x blocks
  int64_t xs_stride_b; // >= terms * M * ldx
  int ldx;             // >= D, a multiple of 16 bytes / sizeof(G) (16-byte aligned rows)
  uint32_t* keys;      // (B, M) orderable key bits
  int batch, rows, channels, rank;
  uint64_t seed;
  const int64_t* seed_ptr;  // device seed or nullptr (resolve_seed)
  float scale;              // float32(1 / sqrt(rank))
  int q_blocks;             // blocks generating A; the rest run the x pass
};

// Blocks of each role for the launcher (64-bit counts: the launcher checks they fit a grid).
__host__ __device__ inline int64_t prepare_q_blocks(int batch, int rows, int rank) {
  const int64_t items = static_cast<int64_t>(batch) * ((rank + 3) / 4) * rows;
  return (items + kPrepareThreads - 1) / kPrepareThreads;
}
__host__ __device__ inline int64_t prepare_x_blocks(int batch, int rows) {
  const int64_t items = static_cast<int64_t>(batch) * rows;
  return (items + kPrepareRowsPerBlock - 1) / kPrepareRowsPerBlock;
}

namespace detail {

// Host and device: the splits below are checked bit for bit on the CPU (csrc/check/compile_kernels.cu).
__host__ __device__ __forceinline__ bool finite_f(float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof(bits));
  return (bits & 0x7F800000u) != 0x7F800000u;
}

template <typename G>
__host__ __device__ __forceinline__ G from_float_rz(float v);
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_float_rz<__nv_bfloat16>(float v) {
  return __float2bfloat16_rz(v);
}
template <>
__host__ __device__ __forceinline__ __half from_float_rz<__half>(float v) {
  return __float2half_rz(v);
}

// An entry v = float32(n * s) of Q split into G values (Q is finite: |n| < 6, s <= 1): two-way for 16-bit x,
// three-way for fp32 x (v2 = 0 unused).
template <typename G>
__host__ __device__ __forceinline__ void split_q(float v, G& v0, G& v1, G& v2) {
  v0 = from_float<G>(v);
  const float r1 = v - to_float(v0);  // exact
  v1 = from_float<G>(r1);
  v2 = from_float<G>(r1 - to_float(v1));  // exact difference, then rounded
}

// An fp32 x split three ways in bf16 (see the file comment); fin0 is v0 where v is finite, else 0.
template <typename G>
__host__ __device__ __forceinline__ void split_x(float v, G& v0, G& v1, G& v2, G& fin0) {
  const bool fin = finite_f(v);
  G h = from_float<G>(v);
  if (fin && !finite_f(to_float(h))) h = from_float_rz<G>(v);  // rounding overflowed: truncation never does
  v0 = h;
  const float r1 = fin ? v - to_float(h) : 0.0f;  // exact
  v1 = from_float<G>(r1);
  v2 = from_float<G>(r1 - to_float(v1));  // exact difference, then rounded
  fin0 = fin ? h : from_float<G>(0.0f);
}

template <typename T, int V>
struct alignas(sizeof(T) * V) VecOf {
  T v[V];
};

// Writes the x-pass values of V consecutive channels (d, d+1, ...) of row i into the stacked X blocks.
template <typename T, int V, bool kFull>
__device__ __forceinline__ void store_x_blocks(const PrepareParams& p, typename SplitOperand<T>::type* xs_row0,
                                               int64_t block_stride, int d, const float (&f)[V]) {
  using G = typename SplitOperand<T>::type;
  constexpr int kTerms = SplitOperand<T>::kTerms;
  VecOf<G, V> out[kTerms];
#pragma unroll
  for (int q = 0; q < V; ++q) {
    if constexpr (kTerms == 6) {  // blocks x0, x1, fin(x0), x2, x1, fin(x0)
      split_x<G>(f[q], out[0].v[q], out[1].v[q], out[3].v[q], out[2].v[q]);
      out[4].v[q] = out[1].v[q];
      out[5].v[q] = out[2].v[q];
    } else {
      out[0].v[q] = from_float<G>(f[q]);  // exact: G is x's dtype
      out[1].v[q] = from_float<G>(finite_f(f[q]) ? f[q] : 0.0f);
    }
  }
#pragma unroll
  for (int t = 0; t < kTerms; ++t) {
    G* dst = xs_row0 + t * block_stride + d;
    if (kFull) {
      *reinterpret_cast<VecOf<G, V>*>(dst) = out[t];
    } else {
#pragma unroll
      for (int q = 0; q < V; ++q)
        if (d + q < p.channels) dst[q] = out[t].v[q];
    }
  }
}

// Role 1: Q^T into A.
template <typename T>
__device__ __forceinline__ void prepare_q(const PrepareParams& p, uint64_t seed, int64_t block) {
  using G = typename SplitOperand<T>::type;
  constexpr int kTerms = SplitOperand<T>::kTerms;
  const int groups = (p.rank + 3) / 4;
  const int64_t e = block * kPrepareThreads + threadIdx.x;
  const int64_t total = static_cast<int64_t>(p.batch) * groups * p.rows;
  if (e >= total) return;
  const int i = static_cast<int>(e % p.rows);
  const int64_t rest = e / p.rows;
  const int g = static_cast<int>(rest % groups);
  const int b = static_cast<int>(rest / groups);
  float n[4];
  projection_normals4(seed, static_cast<uint32_t>(i), static_cast<uint32_t>(g), static_cast<uint32_t>(b), n);
  G* a = static_cast<G*>(p.a) + b * p.a_stride_b;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int j = 4 * g + q;
    if (j >= p.rank) break;
    G q0, q1, q2;
    split_q<G>(__fmul_rn(n[q], p.scale), q0, q1, q2);
    G* row = a + static_cast<int64_t>(j) * p.lda + i;
    row[0] = q0;
    if constexpr (kTerms == 6) {  // blocks Q0, Q0, Q1, Q0, Q1, Q2
      row[p.rows] = q0;
      row[2 * p.rows] = q1;
      row[3 * p.rows] = q0;
      row[4 * p.rows] = q1;
      row[5 * p.rows] = q2;
    } else {
      row[p.rows] = q1;
    }
  }
}

// Role 2: one warp per row of x: the stacked X rows, the squared norm, the sampling key.
template <typename T>
__device__ __forceinline__ void prepare_x(const PrepareParams& p, uint64_t seed, int64_t block) {
  using G = typename SplitOperand<T>::type;
  constexpr int V = 16 / static_cast<int>(sizeof(T));
  const int lane = threadIdx.x % 32;
  const int64_t row = block * kPrepareRowsPerBlock + threadIdx.x / 32;
  if (row >= static_cast<int64_t>(p.batch) * p.rows) return;  // whole warp: the shuffles below stay converged
  const int b = static_cast<int>(row / p.rows);
  const int i = static_cast<int>(row % p.rows);
  const T* __restrict__ src = static_cast<const T*>(p.x) + b * p.x_stride_b + i * p.x_stride_m;
  G* xs_row0 = static_cast<G*>(p.xs) + b * p.xs_stride_b + static_cast<int64_t>(i) * p.ldx;
  const int64_t block_stride = static_cast<int64_t>(p.rows) * p.ldx;
  float acc = 0.0f;
  if (p.x_vec16) {
    constexpr int kStep = 32 * V * kPrepareUnroll;
    for (int d0 = lane * V; d0 < p.channels; d0 += kStep) {
      VecOf<T, V> raw[kPrepareUnroll];
#pragma unroll
      for (int u = 0; u < kPrepareUnroll; ++u) {  // all loads first: kPrepareUnroll 16-byte loads in flight
        const int d = d0 + u * 32 * V;
        if (d + V <= p.channels) {
          const uint4 w = __ldg(reinterpret_cast<const uint4*>(src + d));
          memcpy(&raw[u], &w, sizeof(w));
        } else {
#pragma unroll
          for (int q = 0; q < V; ++q) raw[u].v[q] = (d + q < p.channels) ? src[d + q] : from_float<T>(0.0f);
        }
      }
#pragma unroll
      for (int u = 0; u < kPrepareUnroll; ++u) {
        const int d = d0 + u * 32 * V;
        if (d >= p.channels) break;
        float f[V];
#pragma unroll
        for (int q = 0; q < V; ++q) {
          f[q] = to_float(raw[u].v[q]);
          acc = __fadd_rn(acc, __fmul_rn(f[q], f[q]));  // zero padding adds +0: the sum is unchanged
        }
        if (d + V <= p.channels) {
          store_x_blocks<T, V, true>(p, xs_row0, block_stride, d, f);
        } else {
          store_x_blocks<T, V, false>(p, xs_row0, block_stride, d, f);
        }
      }
    }
  } else {
    for (int d = lane; d < p.channels; d += 32) {
      const float f[1] = {to_float(src[d * p.x_stride_d])};
      acc = __fadd_rn(acc, __fmul_rn(f[0], f[0]));
      store_x_blocks<T, 1, true>(p, xs_row0, block_stride, d, f);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(0xFFFFFFFFu, acc, off));
  if (lane == 0) {
    const float key = sampling_key(acc, gumbel_noise(seed, static_cast<uint32_t>(i), static_cast<uint32_t>(b)));
    p.keys[static_cast<int64_t>(b) * p.rows + i] = orderable_key_bits(key);
  }
}

}  // namespace detail

template <typename T>
__global__ void __launch_bounds__(kPrepareThreads) project_prepare_kernel(PrepareParams p) {
  const uint64_t seed = resolve_seed(p.seed, p.seed_ptr);
  const int64_t block = blockIdx.x;
  if (block < p.q_blocks) {
    detail::prepare_q<T>(p, seed, block);
  } else {
    detail::prepare_x<T>(p, seed, block - p.q_blocks);
  }
}

}  // namespace stagevar

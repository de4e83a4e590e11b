// project_and_sample: xr[b] = s * N_b^T x[b] (Gaussian random projection) fused with the squared row norms that
// drive the norm-weighted Gumbel-top-r row sampling. Contract: stagevar_kernels/philox.py and reference.py.
//
// Kernels (all launched on one stream, no host synchronisation, deterministic):
//  1. project_*_kernel, grid (ceil(D/TD), ceil(r/64), B): one 64 x TD tile of xr (TD = 128 on the tensor cores,
//     64 on the CUDA cores). N is generated tile by tile inside the kernel from the Philox stream (it never
//     touches global memory) and multiplied with the x tile:
//       - fp16/bf16 (sm_80+): WMMA m16n16k16 on the tensor cores, fp32 accumulation. Each normal is split into
//         hi + lo in x's dtype and both are multiplied (2 MMAs), so N enters at ~fp32 accuracy (bf16 alone
//         would give ~2e-3 relative error; the MMAs are cheap next to generating N).
//       - fp32 (and any dtype below sm_80): a CUDA-core 64x64x16 tile, 4x4 outputs per thread.
//     The blocks of the first rank tile (blockIdx.y == 0) together see every element of x once, so they also
//     write the partial squared norms of their TD columns: partial[b, blockIdx.x, i] (fixed summation order:
//     the norms, hence idx, are bit-reproducible run to run).
//  2. select_rows_kernel, one block per batch item, any M: keys from the partial norms and the Gumbel stream,
//     stored as order-preserving uint32 (keys[b, i]); an MSB radix select (4 passes of 8 bits, shared-memory
//     histogram) finds the r-th largest key K and how many of the rows equal to K are taken; a last pass over
//     i ascending takes key > K, or key == K among the lowest indices (the total order of
//     philox.orderable_keys: key desc, index asc), and compacts them with warp-ballot prefix sums, so idx comes
//     out sorted ascending with no sort at all. It streams keys from global memory (L2-resident: 4 bytes per
//     row), so there is no bound on M and no fallback path is needed.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "stagevar/common.cuh"
#include "stagevar/philox.cuh"

namespace stagevar {

// Tile sizes. The partial-norm workspace has one slice per channel tile: ceil(D / tile) = gridDim.x slices.
// N is regenerated for every channel tile (Philox + Box-Muller cost ~250 instructions per 4 normals, far more
// than the MMAs), so the tensor-core tile is wide in D: 128 channels halve that work compared with 64.
constexpr int kProjTileR = 64;         // rows of xr (projection index j), both kernels
constexpr int kProjTileDMma = 128;     // channels, tensor-core kernel
constexpr int kProjThreadsMma = 256;   // 8 warps: 2 (rank) x 4 (channels), 32x32 each
constexpr int kProjTileKMma = 32;      // rows of x (i) per step, tensor-core kernel
constexpr int kProjTileDSimt = 64;     // channels, CUDA-core kernel
constexpr int kProjThreadsSimt = 256;  // 16 x 16 threads, 4x4 outputs each
constexpr int kProjTileKSimt = 16;
constexpr int kSelectThreads = 512;

struct ProjectParams {
  const void* x;     // (B, M, D) with the strides below (in elements)
  int64_t x_stride_b, x_stride_m, x_stride_d;
  bool x_vec16;      // channel stride 1 and every row start 16-byte aligned: 16-byte loads
  void* xr;          // (B, rank, D) contiguous, x's dtype
  float* partial;    // (B, ceil(D / channel tile), M) fp32 partial squared norms
  int batch, rows, channels, rank;
  uint64_t seed;
  const int64_t* seed_ptr;  // device seed (one int64) or nullptr: see resolve_seed
  float scale;       // float32(1 / sqrt(rank))
};

struct SelectParams {
  const float* partial;  // (B, num_slices, M)
  uint32_t* keys;        // (B, M) workspace: orderable key bits
  int64_t* idx;          // (B, rank) output
  int batch, rows, rank, num_slices;
  uint64_t seed;
  const int64_t* seed_ptr;  // device seed (one int64) or nullptr: see resolve_seed
};

// Slices of the partial-norm workspace (= gridDim.x of the projection kernel) for the chosen kernel.
__host__ __device__ inline int project_num_slices(int channels, bool tensor_cores) {
  const int tile = tensor_cores ? kProjTileDMma : kProjTileDSimt;
  return (channels + tile - 1) / tile;
}

namespace detail {

// Squared norm contributions of `count` consecutive smem values: products rounded, then summed left to right
// (__fmul_rn/__fadd_rn: no FMA contraction, as the reference's (x*x).sum()).
template <typename T>
__device__ __forceinline__ float sum_squares(const T* v, int count) {
  float acc = 0.0f;
  for (int k = 0; k < count; ++k) {
    const float f = to_float(v[k]);
    acc = __fadd_rn(acc, __fmul_rn(f, f));
  }
  return acc;
}

// Loads the (TK x TD) tile of x at rows [i0, i0+TK), channels [d0, d0+TD) into smem (zero outside),
// converted to S. With p.x_vec16 (unit channel stride, 16-byte aligned rows; decided by the launcher) each thread
// reads 16-byte vectors (a 2-byte element per load would make the tile load issue-bound); the channel tail and
// every other layout use coalesced element loads through the strides.
template <typename T, typename S, int TK, int TD, int LD, int NT>
__device__ __forceinline__ void load_x_tile(const ProjectParams& p, const T* xb, int i0, int d0, S (*tile)[LD]) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  if (p.x_vec16) {
    constexpr int kVecPerRow = TD / kVec;
    for (int e = threadIdx.x; e < TK * kVecPerRow; e += NT) {
      const int kk = e / kVecPerRow;
      const int dd = (e % kVecPerRow) * kVec;
      const int i = i0 + kk;
      const int d = d0 + dd;
      const T* src = xb + i * p.x_stride_m + d;
      if (i < p.rows && d + kVec <= p.channels) {
        const uint4 raw = *reinterpret_cast<const uint4*>(src);
        const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int q = 0; q < kVec; ++q) tile[kk][dd + q] = from_float<S>(to_float(v[q]));
      } else {
#pragma unroll
        for (int q = 0; q < kVec; ++q) {
          const float f = (i < p.rows && d + q < p.channels) ? to_float(src[q]) : 0.0f;
          tile[kk][dd + q] = from_float<S>(f);
        }
      }
    }
    return;
  }
  for (int e = threadIdx.x; e < TK * TD; e += NT) {
    const int kk = e / TD;
    const int dd = e % TD;
    const int i = i0 + kk;
    const int d = d0 + dd;
    T v = from_float<T>(0.0f);
    if (i < p.rows && d < p.channels) v = xb[i * p.x_stride_m + d * p.x_stride_d];
    tile[kk][dd] = from_float<S>(to_float(v));
  }
}

// The partial squared norms of the TK rows of the tile just loaded (blockIdx.y == 0 only). NT / TK threads per
// row, each summing a contiguous run of channels, then a fixed-order shuffle reduction.
template <typename S, int TK, int TD, int LD, int NT>
__device__ __forceinline__ void write_partial_norms(const ProjectParams& p, int b, int i0, const S (*tile)[LD]) {
  constexpr int kPerRow = NT / TK;  // threads per row: a power of two <= 32
  constexpr int kRun = TD / kPerRow;
  static_assert(kPerRow >= 1 && kPerRow <= 32 && (kPerRow & (kPerRow - 1)) == 0, "bad norm split");
  const int row = threadIdx.x / kPerRow;
  const int part = threadIdx.x % kPerRow;
  float acc = sum_squares(&tile[row][part * kRun], kRun);
#pragma unroll
  for (int off = kPerRow / 2; off > 0; off >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(0xFFFFFFFFu, acc, off));
  const int i = i0 + row;
  if (part == 0 && i < p.rows) {
    p.partial[(static_cast<int64_t>(b) * gridDim.x + blockIdx.x) * p.rows + i] = acc;
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------------
// CUDA-core projection (fp32, and the fallback for every dtype). 256 threads, a 64x64 output tile, 4x4 per thread.
template <typename T>
__global__ void __launch_bounds__(kProjThreadsSimt) project_simt_kernel(ProjectParams p) {
  constexpr int TK = kProjTileKSimt;
  __shared__ float n_tile[TK][kProjTileR + 4];  // n[i0 + kk, j0 + jj]
  __shared__ float x_tile[TK][kProjTileDSimt + 4];
  const int d0 = blockIdx.x * kProjTileDSimt;
  const int j0 = blockIdx.y * kProjTileR;
  const uint64_t seed = resolve_seed(p.seed, p.seed_ptr);
  const int tx = threadIdx.x % 16;  // channel lane: d = d0 + tx + 16 * c
  const int ty = threadIdx.x / 16;  // rank lane:    j = j0 + ty + 16 * r
  for (int b = blockIdx.z; b < p.batch; b += gridDim.z) {
    const T* xb = static_cast<const T*>(p.x) + b * p.x_stride_b;
    float acc[4][4] = {};
    for (int i0 = 0; i0 < p.rows; i0 += TK) {
      detail::load_x_tile<T, float, TK, kProjTileDSimt, kProjTileDSimt + 4, kProjThreadsSimt>(p, xb, i0, d0, x_tile);
      // TK x 16 Philox calls (4 normals each) for the tile: exactly 256, one per thread.
      {
        const int kk = threadIdx.x / (kProjTileR / 4);
        const int g = threadIdx.x % (kProjTileR / 4);
        const int i = i0 + kk;
        const int j = j0 + 4 * g;
        float n[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (i < p.rows && j < p.rank) projection_normals4(seed, i, j / 4, b, n);
#pragma unroll
        for (int q = 0; q < 4; ++q) n_tile[kk][4 * g + q] = (j + q < p.rank) ? n[q] : 0.0f;
      }
      __syncthreads();
      if (blockIdx.y == 0)
        detail::write_partial_norms<float, TK, kProjTileDSimt, kProjTileDSimt + 4, kProjThreadsSimt>(p, b, i0, x_tile);
#pragma unroll
      for (int kk = 0; kk < TK; ++kk) {
        float a[4], v[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) a[r] = n_tile[kk][ty + 16 * r];
#pragma unroll
        for (int c = 0; c < 4; ++c) v[c] = x_tile[kk][tx + 16 * c];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(a[r], v[c], acc[r][c]);
      }
      __syncthreads();
    }
    T* out = static_cast<T*>(p.xr) + static_cast<int64_t>(b) * p.rank * p.channels;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int j = j0 + ty + 16 * r;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int d = d0 + tx + 16 * c;
        if (j < p.rank && d < p.channels)
          out[static_cast<int64_t>(j) * p.channels + d] = detail::from_float<T>(acc[r][c] * p.scale);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-core projection for fp16/bf16 (sm_80+): 8 warps in 2 (rank) x 4 (channels), each a 32x32 block of 2x2
// WMMA fragments; results leave through a per-warp 16x16 fp32 staging tile.
template <typename T>
__global__ void __launch_bounds__(kProjThreadsMma) project_mma_kernel(ProjectParams p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  constexpr int TK = kProjTileKMma;
  constexpr int TD = kProjTileDMma;
  constexpr int kWarps = kProjThreadsMma / 32;
  constexpr int kWarpsD = TD / 32;
  static_assert(kWarps * 32 * 32 == kProjTileR * TD, "warps must tile the block");
  constexpr int LDA = TK + 8;  // 16-bit elements; multiple of 8 as WMMA requires, skews banks
  constexpr int LDB = TD + 8;
  // WMMA needs 256-bit aligned fragment pointers: every fragment offset below is a multiple of 32 bytes.
  __shared__ __align__(32) T a_hi[kProjTileR][LDA];  // n[i0 + kk, j0 + jj] stored as A[jj][kk] (row-major r x k)
  __shared__ __align__(32) T a_lo[kProjTileR][LDA];  // n - float(a_hi)
  __shared__ __align__(32) T x_tile[TK][LDB];
  __shared__ __align__(32) float stage[kWarps][16][16];
  const int d0 = blockIdx.x * TD;
  const int j0 = blockIdx.y * kProjTileR;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int wm = warp / kWarpsD;  // rows [32 wm, 32 wm + 32) of the tile
  const int wn = warp % kWarpsD;  // cols [32 wn, 32 wn + 32)
  const uint64_t seed = resolve_seed(p.seed, p.seed_ptr);
  for (int b = blockIdx.z; b < p.batch; b += gridDim.z) {
    const T* xb = static_cast<const T*>(p.x) + b * p.x_stride_b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int fm = 0; fm < 2; ++fm)
#pragma unroll
      for (int fn = 0; fn < 2; ++fn) wmma::fill_fragment(acc[fm][fn], 0.0f);
    for (int i0 = 0; i0 < p.rows; i0 += TK) {
      detail::load_x_tile<T, T, TK, TD, LDB, kProjThreadsMma>(p, xb, i0, d0, x_tile);
      // TK x 16 = 512 Philox calls (4 normals each) for the tile, 2 per thread.
      for (int e = threadIdx.x; e < TK * (kProjTileR / 4); e += kProjThreadsMma) {
        const int kk = e / (kProjTileR / 4);
        const int g = e % (kProjTileR / 4);
        const int i = i0 + kk;
        const int j = j0 + 4 * g;
        float n[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (i < p.rows && j < p.rank) projection_normals4(seed, i, j / 4, b, n);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float v = (j + q < p.rank) ? n[q] : 0.0f;
          const T hi = detail::from_float<T>(v);
          a_hi[4 * g + q][kk] = hi;
          a_lo[4 * g + q][kk] = detail::from_float<T>(v - detail::to_float(hi));
        }
      }
      __syncthreads();
      if (blockIdx.y == 0) detail::write_partial_norms<T, TK, TD, LDB, kProjThreadsMma>(p, b, i0, x_tile);
#pragma unroll
      for (int kk = 0; kk < TK; kk += 16) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
        for (int fn = 0; fn < 2; ++fn) wmma::load_matrix_sync(fb[fn], &x_tile[kk][32 * wn + 16 * fn], LDB);
#pragma unroll
        for (int fm = 0; fm < 2; ++fm) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa_hi, fa_lo;
          wmma::load_matrix_sync(fa_hi, &a_hi[32 * wm + 16 * fm][kk], LDA);
          wmma::load_matrix_sync(fa_lo, &a_lo[32 * wm + 16 * fm][kk], LDA);
#pragma unroll
          for (int fn = 0; fn < 2; ++fn) {
            wmma::mma_sync(acc[fm][fn], fa_lo, fb[fn], acc[fm][fn]);
            wmma::mma_sync(acc[fm][fn], fa_hi, fb[fn], acc[fm][fn]);
          }
        }
      }
      __syncthreads();
    }
    T* out = static_cast<T*>(p.xr) + static_cast<int64_t>(b) * p.rank * p.channels;
#pragma unroll
    for (int fm = 0; fm < 2; ++fm)
#pragma unroll
      for (int fn = 0; fn < 2; ++fn) {
        wmma::store_matrix_sync(&stage[warp][0][0], acc[fm][fn], 16, wmma::mem_row_major);
        __syncwarp();
        const int r = lane / 2;         // fragment row
        const int c0 = (lane % 2) * 8;  // 8 consecutive fragment columns
        const int j = j0 + 32 * wm + 16 * fm + r;
        const int dbase = d0 + 32 * wn + 16 * fn + c0;
        if (j < p.rank) {
#pragma unroll
          for (int c = 0; c < 8; ++c)
            if (dbase + c < p.channels)
              out[static_cast<int64_t>(j) * p.channels + dbase + c] = detail::from_float<T>(stage[warp][r][c0 + c] * p.scale);
        }
        __syncwarp();  // the staging tile is rewritten by the next fragment
      }
  }
#else
  __trap();  // the launcher only picks this kernel on sm_80+
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Row selection: one block per batch item (grid-stride over B), kSelectThreads threads, any M.
namespace detail {

// Exclusive prefix count of a 0/1 flag over the block (threads in order), plus the block total.
__device__ __forceinline__ int block_exclusive_count(bool flag, int* warp_sums, int& total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  constexpr int kWarps = kSelectThreads / 32;
  const unsigned ballot = __ballot_sync(0xFFFFFFFFu, flag);
  const int in_warp = __popc(ballot & ((1u << lane) - 1u));
  if (lane == 0) warp_sums[warp] = __popc(ballot);
  __syncthreads();
  int before = 0;
  total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int s = warp_sums[w];
    before += (w < warp) ? s : 0;
    total += s;
  }
  __syncthreads();  // warp_sums is reused by the next call
  return before + in_warp;
}

}  // namespace detail

__global__ void __launch_bounds__(kSelectThreads) select_rows_kernel(SelectParams p) {
  static_assert(kSelectThreads % 32 == 0 && kSelectThreads / 32 <= 32, "block size");
  __shared__ int hist[256];
  __shared__ int warp_sums[kSelectThreads / 32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_need;
  const uint64_t seed = resolve_seed(p.seed, p.seed_ptr);
  for (int b = blockIdx.x; b < p.batch; b += gridDim.x) {
    uint32_t* keys = p.keys + static_cast<int64_t>(b) * p.rows;
    // 1. keys: sum the partial norms in slice order (deterministic), add the Gumbel draw.
    for (int i = threadIdx.x; i < p.rows; i += kSelectThreads) {
      const float* part = p.partial + static_cast<int64_t>(b) * p.num_slices * p.rows + i;
      float w = 0.0f;
      for (int s = 0; s < p.num_slices; ++s) w = __fadd_rn(w, part[static_cast<int64_t>(s) * p.rows]);
      keys[i] = orderable_key_bits(sampling_key(w, gumbel_noise(seed, i, b)));
    }
    // 2. MSB radix select of the rank-th largest key (need: how many of the keys equal to it are taken).
    uint32_t prefix = 0, mask = 0;
    int need = p.rank;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int t = threadIdx.x; t < 256; t += kSelectThreads) hist[t] = 0;
      __syncthreads();  // also publishes the keys written above to the whole block
      for (int i = threadIdx.x; i < p.rows; i += kSelectThreads) {
        const uint32_t k = keys[i];
        if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 0xFFu], 1);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int above = 0, digit = 255;
        for (; digit > 0; --digit) {
          if (above + hist[digit] >= need) break;
          above += hist[digit];
        }
        s_prefix = prefix | (static_cast<uint32_t>(digit) << shift);
        s_need = need - above;
      }
      __syncthreads();
      prefix = s_prefix;
      need = s_need;
      mask |= 0xFFu << shift;
      __syncthreads();  // s_prefix / s_need / hist are rewritten by the next pass
    }
    // 3. take key > K, or key == K among the `need` lowest indices; compact in ascending index order.
    int64_t* idx = p.idx + static_cast<int64_t>(b) * p.rank;
    int taken = 0, equal_seen = 0;
    for (int base = 0; base < p.rows; base += kSelectThreads) {
      const int i = base + threadIdx.x;
      const uint32_t k = (i < p.rows) ? keys[i] : 0u;
      const bool eq = i < p.rows && k == prefix;
      int eq_total;
      const int eq_rank = equal_seen + detail::block_exclusive_count(eq, warp_sums, eq_total);
      const bool take = i < p.rows && (k > prefix || (eq && eq_rank < need));
      int take_total;
      const int pos = taken + detail::block_exclusive_count(take, warp_sums, take_total);
      if (take && pos < p.rank) idx[pos] = i;
      taken += take_total;
      equal_seen += eq_total;
    }
    __syncthreads();
  }
}

}  // namespace stagevar

// restore_merge: out[b, idx[b, j]] = y[b, j]; every other row p is F.interpolate(cache grid (h0, w0) -> (h, w),
// mode, align_corners=False)[p], per channel. Contract: stagevar_kernels/reference.py (source_rows).
//
// One launch, no host synchronisation, no workspace: restore_merge_kernel runs one warp per output row p, each
// row written exactly once.
//  1. Source: the largest j with idx[b, j] == p, or none. The warp scans idx[b] from the top, 32 * kSourceUnroll
//     entries per step (coalesced, L1-resident: 8 bytes per entry), a ballot per 32 and the highest hit lane wins,
//     so duplicates resolve to the largest j (what the reference's sequential scatter and every other backend
//     give) and idx may come in any order (project_and_sample emits it sorted; nothing here relies on that).
//     Entries outside [0, h*w) match no row: they never address memory. The scan costs r / 32 loads per row (9 at
//     the Infinity-2B 40x40 step) against the D * sizeof(T) bytes of the row itself.
//  2. A copy of y[b, j] when there is a source, else the interpolation of the cache rows computed in fp32 with
//     PyTorch's index/weight formulas (aten/src/ATen/native/UpSample.h, AdaptiveAveragePooling.cu): nearest,
//     bilinear, bicubic (A = -0.75, clamped taps), area (= adaptive average pooling, windows
//     [floor(o*in/out), ceil((o+1)*in/out))). Equal grids are a plain copy, as in PyTorch.
//     Channels are processed VEC at a time with 16-byte loads/stores when the launcher found every row
//     16-byte aligned (VEC = 16 / sizeof(T)), else one at a time; copies keep kCopyUnroll loads in flight per lane.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "stagevar/common.cuh"

namespace stagevar {

enum class RestoreMode : int { kNearest = 0, kBilinear = 1, kBicubic = 2, kArea = 3 };

constexpr int kRestoreWarps = 8;  // rows per block
constexpr int kCopyUnroll = 4;    // 16-byte loads in flight per lane in the row copies
constexpr int kSourceUnroll = 4;  // idx loads in flight per lane in the source scan

struct RestoreParams {
  const void* y;      // (B, r, D): strides in elements, channel stride 1
  int64_t y_stride_b, y_stride_r;
  const int64_t* idx; // (B, r) with the strides below
  int64_t idx_stride_b, idx_stride_r;
  const void* cache;  // (B, h0*w0, D): channel stride 1
  int64_t cache_stride_b, cache_stride_r;
  void* out;          // (B, h*w, D) contiguous
  int batch, rank, channels;
  int src_h, src_w, dst_h, dst_w;
};

namespace detail {

// Raw 16-byte / element loads converted to fp32 and back. VEC == 1 is the unaligned path.
template <typename T, int VEC>
__device__ __forceinline__ void load_f32(const T* ptr, float (&f)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    const uint4 raw = *reinterpret_cast<const uint4*>(ptr);
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC; ++k) f[k] = to_float(v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) f[k] = to_float(ptr[k]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store_f32(T* ptr, const float (&f)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    uint4 raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = from_float<T>(f[k]);
    *reinterpret_cast<uint4*>(ptr) = raw;
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) ptr[k] = from_float<T>(f[k]);
  }
}

// out[c] = src[c] for c in [0, channels), lanes striding VEC channels at a time; kCopyUnroll loads are issued
// before the first store (channels is a multiple of VEC on the vector path).
template <typename T, int VEC>
__device__ __forceinline__ void copy_row(T* __restrict__ out, const T* __restrict__ src, int channels, int lane) {
  struct alignas(sizeof(T) * VEC) Vec {
    T v[VEC];
  };
  constexpr int kStep = 32 * VEC;
  for (int c0 = lane * VEC; c0 < channels; c0 += kStep * kCopyUnroll) {
    Vec v[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int c = c0 + u * kStep;
      if (c < channels) v[u] = *reinterpret_cast<const Vec*>(src + c);
    }
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int c = c0 + u * kStep;
      if (c < channels) *reinterpret_cast<Vec*>(out + c) = v[u];
    }
  }
}

// The largest j < rank with idx[j] == pos, or -1 (warp-uniform). Scans from the top, 32 * kSourceUnroll entries
// per step: loads first, then one ballot per 32 entries, highest first.
__device__ __forceinline__ int find_source_row(const int64_t* __restrict__ idx, int64_t stride, int rank, int pos,
                                               int lane) {
  constexpr int kChunk = 32 * kSourceUnroll;
  for (int top = ((rank - 1) / kChunk) * kChunk; top >= 0; top -= kChunk) {
    bool hit[kSourceUnroll];
#pragma unroll
    for (int u = 0; u < kSourceUnroll; ++u) {
      const int j = top + u * 32 + lane;
      hit[u] = j < rank && __ldg(idx + j * stride) == pos;
    }
#pragma unroll
    for (int u = kSourceUnroll - 1; u >= 0; --u) {
      const unsigned mask = __ballot_sync(0xFFFFFFFFu, hit[u]);
      if (mask != 0u) return top + u * 32 + (31 - __clz(mask));
    }
  }
  return -1;
}

// PyTorch's area_pixel_compute_source_index (align_corners=False) with scale = float(in) / out.
__device__ __forceinline__ float source_index(float scale, int dst, bool cubic) {
  const float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  return (!cubic && src < 0.0f) ? 0.0f : src;
}

__device__ __forceinline__ float cubic_convolution1(float x, float a) {
  return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
}
__device__ __forceinline__ float cubic_convolution2(float x, float a) {
  return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
}
__device__ __forceinline__ void cubic_coefficients(float t, float (&c)[4]) {
  constexpr float kA = -0.75f;
  c[0] = cubic_convolution2(t + 1.0f, kA);
  c[1] = cubic_convolution1(t, kA);
  c[2] = cubic_convolution1(1.0f - t, kA);
  c[3] = cubic_convolution2((1.0f - t) + 1.0f, kA);
}

__device__ __forceinline__ int clamp_index(int v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

// Nearest: min(floor(dst * scale), in - 1), with PyTorch's exact shortcuts for equal and doubled sizes.
__device__ __forceinline__ int nearest_index(int dst, int in, int out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int src = static_cast<int>(floorf(static_cast<float>(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

// Bilinear taps: index0, index1 and lambda1 (PyTorch's guard_index_and_lambda).
__device__ __forceinline__ void linear_taps(int dst, int in, int out, int& i0, int& i1, float& l1) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float real = source_index(scale, dst, false);
  const int fl = static_cast<int>(floorf(real));
  i0 = fl < in - 1 ? fl : in - 1;
  l1 = fminf(fmaxf(real - static_cast<float>(i0), 0.0f), 1.0f);
  i1 = i0 + (i0 < in - 1 ? 1 : 0);
}

}  // namespace detail

// One warp per output row; lanes stride over the channels VEC at a time.
template <typename T, int VEC>
__global__ void __launch_bounds__(kRestoreWarps * 32) restore_merge_kernel(RestoreParams p, RestoreMode mode) {
  const int lane = threadIdx.x % 32;
  const int64_t dst_rows = static_cast<int64_t>(p.dst_h) * p.dst_w;
  const int64_t total = static_cast<int64_t>(p.batch) * dst_rows;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRestoreWarps + threadIdx.x / 32;
  if (row >= total) return;  // whole warp: the ballots below stay converged
  const int64_t b = row / dst_rows;
  const int pos = static_cast<int>(row % dst_rows);
  T* __restrict__ out = static_cast<T*>(p.out) + row * p.channels;
  const int src_row = detail::find_source_row(p.idx + b * p.idx_stride_b, p.idx_stride_r, p.rank, pos, lane);
  if (src_row >= 0) {
    const T* y = static_cast<const T*>(p.y) + b * p.y_stride_b + src_row * p.y_stride_r;
    detail::copy_row<T, VEC>(out, y, p.channels, lane);
    return;
  }
  const T* __restrict__ cache = static_cast<const T*>(p.cache) + b * p.cache_stride_b;
  const int oy = pos / p.dst_w;
  const int ox = pos % p.dst_w;
  auto cache_row = [&](int yy, int xx) { return cache + static_cast<int64_t>(yy * p.src_w + xx) * p.cache_stride_r; };
  if (p.src_h == p.dst_h && p.src_w == p.dst_w) {  // F.interpolate to the same size is a copy in every mode
    detail::copy_row<T, VEC>(out, cache_row(oy, ox), p.channels, lane);
    return;
  }
  switch (mode) {
    case RestoreMode::kNearest: {
      const int sy = detail::nearest_index(oy, p.src_h, p.dst_h);
      const T* src = cache_row(sy, detail::nearest_index(ox, p.src_w, p.dst_w));
      detail::copy_row<T, VEC>(out, src, p.channels, lane);
      break;
    }
    case RestoreMode::kBilinear: {
      int y0, y1, x0, x1;
      float ly1, lx1;
      detail::linear_taps(oy, p.src_h, p.dst_h, y0, y1, ly1);
      detail::linear_taps(ox, p.src_w, p.dst_w, x0, x1, lx1);
      const float ly0 = 1.0f - ly1, lx0 = 1.0f - lx1;
      const T* r00 = cache_row(y0, x0);
      const T* r01 = cache_row(y0, x1);
      const T* r10 = cache_row(y1, x0);
      const T* r11 = cache_row(y1, x1);
      for (int c = lane * VEC; c < p.channels; c += 32 * VEC) {
        float v00[VEC], v01[VEC], v10[VEC], v11[VEC], o[VEC];
        detail::load_f32<T, VEC>(r00 + c, v00);
        detail::load_f32<T, VEC>(r01 + c, v01);
        detail::load_f32<T, VEC>(r10 + c, v10);
        detail::load_f32<T, VEC>(r11 + c, v11);
#pragma unroll
        for (int k = 0; k < VEC; ++k)
          o[k] = ly0 * (lx0 * v00[k] + lx1 * v01[k]) + ly1 * (lx0 * v10[k] + lx1 * v11[k]);
        detail::store_f32<T, VEC>(out + c, o);
      }
      break;
    }
    case RestoreMode::kBicubic: {
      const float sy = static_cast<float>(p.src_h) / static_cast<float>(p.dst_h);
      const float sx = static_cast<float>(p.src_w) / static_cast<float>(p.dst_w);
      const float ry = detail::source_index(sy, oy, true);
      const float rx = detail::source_index(sx, ox, true);
      const int iy = static_cast<int>(floorf(ry));
      const int ix = static_cast<int>(floorf(rx));
      float wy[4], wx[4];
      detail::cubic_coefficients(ry - static_cast<float>(iy), wy);
      detail::cubic_coefficients(rx - static_cast<float>(ix), wx);
      int ys[4], xs[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        ys[k] = detail::clamp_index(iy - 1 + k, p.src_h);
        xs[k] = detail::clamp_index(ix - 1 + k, p.src_w);
      }
      for (int c = lane * VEC; c < p.channels; c += 32 * VEC) {
        float o[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) o[k] = 0.0f;
#pragma unroll
        for (int ky = 0; ky < 4; ++ky) {
          float coef[VEC];
#pragma unroll
          for (int k = 0; k < VEC; ++k) coef[k] = 0.0f;
#pragma unroll
          for (int kx = 0; kx < 4; ++kx) {
            float v[VEC];
            detail::load_f32<T, VEC>(cache_row(ys[ky], xs[kx]) + c, v);
#pragma unroll
            for (int k = 0; k < VEC; ++k) coef[k] += v[k] * wx[kx];
          }
#pragma unroll
          for (int k = 0; k < VEC; ++k) o[k] += coef[k] * wy[ky];
        }
        detail::store_f32<T, VEC>(out + c, o);
      }
      break;
    }
    case RestoreMode::kArea: {
      // Adaptive average pooling windows, integer formulas as AdaptiveAveragePooling.cu.
      const int y_begin = static_cast<int>((static_cast<int64_t>(oy) * p.src_h) / p.dst_h);
      const int y_end = static_cast<int>(((static_cast<int64_t>(oy) + 1) * p.src_h + p.dst_h - 1) / p.dst_h);
      const int x_begin = static_cast<int>((static_cast<int64_t>(ox) * p.src_w) / p.dst_w);
      const int x_end = static_cast<int>(((static_cast<int64_t>(ox) + 1) * p.src_w + p.dst_w - 1) / p.dst_w);
      const float count = static_cast<float>((y_end - y_begin) * (x_end - x_begin));
      for (int c = lane * VEC; c < p.channels; c += 32 * VEC) {
        float o[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) o[k] = 0.0f;
        for (int yy = y_begin; yy < y_end; ++yy)
          for (int xx = x_begin; xx < x_end; ++xx) {
            float v[VEC];
            detail::load_f32<T, VEC>(cache_row(yy, xx) + c, v);
#pragma unroll
            for (int k = 0; k < VEC; ++k) o[k] += v[k];
          }
#pragma unroll
        for (int k = 0; k < VEC; ++k) o[k] /= count;
        detail::store_f32<T, VEC>(out + c, o);
      }
      break;
    }
  }
}

}  // namespace stagevar

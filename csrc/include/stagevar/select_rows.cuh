// Row selection of project_and_sample: from the order-preserving uint32 keys (B, M) to the sorted idx (B, r).
//
// The r chosen rows are the r largest keys in the total order (key descending, index ascending) of
// stagevar_kernels.philox.orderable_keys. One CTA per batch item (kSelectThreads threads, any M):
//  1. MSB radix select, 4 passes of 8-bit digits: a shared-memory histogram of the keys that match the prefix
//     found so far, then ONE warp finds the digit holding the need-th largest key (each lane owns 8 digits, a
//     warp inclusive scan over the lanes, a ballot picks the lane where the count crosses `need`, that lane walks
//     its 8 digits). Result: the r-th largest key K and `need`, how many of the keys equal to K are taken.
//  2. Compaction in index order: thread t owns the contiguous run of rows [t * run, (t + 1) * run); a block
//     exclusive scan of the per-thread counts of keys == K gives each thread how many equal keys lie below its run
//     (the lowest-index equal keys win); a second scan of the per-thread counts of taken rows gives each thread
//     its output offset; each thread then writes its taken rows in ascending order. idx comes out sorted with no
//     sort, in 2 scans, whatever M.
// Keys are cached in shared memory when M <= kSelectCacheKeys (every Infinity/STAR scale: 64x64 = 4096 rows),
// else read from global memory (L2-resident, 4 bytes per row) in every pass.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace stagevar {

constexpr int kSelectThreads = 512;
constexpr int kSelectWarps = kSelectThreads / 32;
constexpr int kSelectCacheKeys = 4096;

struct SelectParams {
  const uint32_t* keys;  // (B, M) contiguous orderable key bits
  int64_t* idx;          // (B, rank) contiguous output
  int batch, rows, rank;
};

struct SelectShared {
  uint32_t cache[kSelectCacheKeys];
  int hist[256];
  int warp_sums[kSelectWarps];
  uint32_t prefix;
  int need;
};

namespace detail {

// Exclusive prefix sum of `v` over the threads of the block in thread order, plus the block total.
__device__ __forceinline__ int block_exclusive_sum(int v, int* warp_sums, int& total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int incl = v;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int t = __shfl_up_sync(0xFFFFFFFFu, incl, off);
    if (lane >= off) incl += t;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
#pragma unroll
  for (int w = 0; w < kSelectWarps; ++w) {
    const int s = warp_sums[w];
    before += (w < warp) ? s : 0;
    total += s;
  }
  __syncthreads();  // warp_sums is reused by the next call
  return before + incl - v;
}

// The steps of the selection shared by the kernel and its host check (csrc/check/compile_kernels.cu), which
// replays the block algorithm serially with them.
// Digit search: lane `lane` owns the 8 digits 255 - 8 lane - k (k = 0..7, largest first).
__host__ __device__ __forceinline__ int lane_digit(int lane, int k) { return 255 - 8 * lane - k; }

// The lane where the running count crosses `need` walks its digits: `above` counts the keys in the bins of the
// lanes before it. Returns the digit holding the need-th largest key; need_left = need - keys in higher bins.
__host__ __device__ __forceinline__ int lane_pick_digit(const int (&h)[8], int lane, int above, int need,
                                                        int& need_left) {
  int digit = lane_digit(lane, 7);
  bool found = false;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    if (!found && above + h[k] >= need) {
      digit = lane_digit(lane, k);
      found = true;
    } else if (!found) {
      above += h[k];
    }
  }
  need_left = need - above;
  return digit;
}

// Compaction: the rows of thread t are [t * run, min((t + 1) * run, rows)).
__host__ __device__ __forceinline__ int select_run(int rows) { return (rows + kSelectThreads - 1) / kSelectThreads; }

// Whether a row with key k is taken, given kth (the rank-th largest key), need (how many keys equal to kth are
// taken) and equal_seen (keys equal to kth at lower indices; advanced here).
__host__ __device__ __forceinline__ bool take_row(uint32_t k, uint32_t kth, int need, int& equal_seen) {
  if (k > kth) return true;
  if (k != kth) return false;
  return equal_seen++ < need;
}

// Warp 0: the digit of the need-th largest key among the histogram's bins, written to sm.prefix / sm.need:
// per-lane sums of 8 bins, a warp inclusive scan, a ballot for the first lane whose running count reaches need,
// which walks its 8 bins. The other warps return at once.
__device__ __forceinline__ void pick_digit(SelectShared& sm, uint32_t prefix, int shift, int need) {
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  int h[8];
  int sum = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    h[k] = sm.hist[lane_digit(lane, k)];
    sum += h[k];
  }
  int incl = sum;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int t = __shfl_up_sync(0xFFFFFFFFu, incl, off);
    if (lane >= off) incl += t;
  }
  // The bins together hold every key matching the prefix (>= need), so some lane reaches need.
  const unsigned hit = __ballot_sync(0xFFFFFFFFu, incl >= need);
  if (lane == __ffs(hit) - 1) {
    int need_left;
    const int digit = lane_pick_digit(h, lane, incl - sum, need, need_left);
    sm.prefix = prefix | (static_cast<uint32_t>(digit) << shift);
    sm.need = need_left;
  }
}

}  // namespace detail

// The selection of batch item b by the whole block (every thread must call it).
__device__ __forceinline__ void select_rows_block(const SelectParams& p, int b, SelectShared& sm) {
  const uint32_t* gkeys = p.keys + static_cast<int64_t>(b) * p.rows;
  const bool cached = p.rows <= kSelectCacheKeys;
  if (cached)
    for (int i = threadIdx.x; i < p.rows; i += kSelectThreads) sm.cache[i] = gkeys[i];
  const uint32_t* keys = cached ? sm.cache : gkeys;

  uint32_t prefix = 0, mask = 0;
  int need = p.rank;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int t = threadIdx.x; t < 256; t += kSelectThreads) sm.hist[t] = 0;
    __syncthreads();  // also publishes the cached keys
    for (int i = threadIdx.x; i < p.rows; i += kSelectThreads) {
      const uint32_t k = keys[i];
      if ((k & mask) == prefix) atomicAdd(&sm.hist[(k >> shift) & 0xFFu], 1);
    }
    __syncthreads();
    detail::pick_digit(sm, prefix, shift, need);
    __syncthreads();
    prefix = sm.prefix;
    need = sm.need;
    mask |= 0xFFu << shift;
  }
  const uint32_t kth = prefix;  // the r-th largest key; `need` of the keys equal to it are taken

  const int run = detail::select_run(p.rows);
  const int begin = min(static_cast<int>(threadIdx.x) * run, p.rows);
  const int end = min(begin + run, p.rows);
  int equal = 0;
  for (int i = begin; i < end; ++i) equal += keys[i] == kth ? 1 : 0;
  int total;
  const int equal_below = detail::block_exclusive_sum(equal, sm.warp_sums, total);
  int taken = 0;
  for (int i = begin, e = equal_below; i < end; ++i) taken += detail::take_row(keys[i], kth, need, e) ? 1 : 0;
  int pos = detail::block_exclusive_sum(taken, sm.warp_sums, total);
  int64_t* idx = p.idx + static_cast<int64_t>(b) * p.rank;
  for (int i = begin, e = equal_below; i < end; ++i) {
    if (detail::take_row(keys[i], kth, need, e)) {
      if (pos < p.rank) idx[pos] = i;  // always true (exactly rank rows are taken); keeps stores in bounds
      ++pos;
    }
  }
  __syncthreads();  // the shared state is reused by the caller's next batch item
}

}  // namespace stagevar

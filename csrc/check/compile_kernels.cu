// Torch-free translation unit for CI without a GPU: instantiates every kernel template of
// csrc/include/stagevar/*.cuh for every dtype, so `nvcc -c` proves the headers compile for each target arch.
// Built by scripts/check_cuda_headers.sh (with torch's __CUDA_NO_HALF_* defines, as an extension build has).
#include "stagevar/philox.cuh"
#include "stagevar/project_and_sample.cuh"
#include "stagevar/project_prepare.cuh"
#include "stagevar/select_rows.cuh"
#include "stagevar/restore_merge.cuh"

namespace stagevar {

// Explicit instantiations: every dtype x every kernel (x every vector width for restore_merge).
template __global__ void project_prepare_kernel<float>(PrepareParams);
template __global__ void project_prepare_kernel<__half>(PrepareParams);
template __global__ void project_prepare_kernel<__nv_bfloat16>(PrepareParams);
template __global__ void select_cast_kernel<float>(SelectParams, CastParams);
template __global__ void select_cast_kernel<__half>(SelectParams, CastParams);
template __global__ void select_cast_kernel<__nv_bfloat16>(SelectParams, CastParams);

#define STAGEVAR_INSTANTIATE_RESTORE(T, VEC) \
  template __global__ void restore_merge_kernel<T, VEC>(RestoreParams, RestoreMode);

STAGEVAR_INSTANTIATE_RESTORE(float, 1)
STAGEVAR_INSTANTIATE_RESTORE(float, 4)
STAGEVAR_INSTANTIATE_RESTORE(__half, 1)
STAGEVAR_INSTANTIATE_RESTORE(__half, 8)
STAGEVAR_INSTANTIATE_RESTORE(__nv_bfloat16, 1)
STAGEVAR_INSTANTIATE_RESTORE(__nv_bfloat16, 8)

// Host-side Philox: the same function compiles for host and device (used by the self-check below).
static_assert(sizeof(PhiloxOut) == 16, "PhiloxOut layout");

}  // namespace stagevar

#ifdef STAGEVAR_CHECK_MAIN
// Host self-checks (no GPU needed), compared with the Python contract by tests/stagevar_kernels/
// test_cuda_headers_compile.py:
//   check SEED    prints the Philox words of 8 counters (stagevar_kernels.philox.philox4x32).
//   check split   reads N then N float32 bit patterns from stdin; prints per value the uint16 bits of the fp32-x
//                 split (x0, x1, x2, fin(x0) in bf16) and of the Q split in bf16 (q0, q1, q2) and fp16 (q0, q1).
//   check select  reads M, r, then M uint32 keys from stdin; prints the r chosen rows, replaying the selection
//                 kernel's block algorithm serially with its own helpers (digit search per lane, runs, take_row).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

template <typename G>
unsigned bits16(G v) {
  uint16_t b;
  memcpy(&b, &v, sizeof(b));
  return b;
}

int run_split() {
  int n = 0;
  if (std::scanf("%d", &n) != 1) return 2;
  for (int e = 0; e < n; ++e) {
    unsigned raw = 0;
    if (std::scanf("%u", &raw) != 1) return 2;
    float v;
    const uint32_t raw32 = raw;
    memcpy(&v, &raw32, sizeof(v));
    __nv_bfloat16 x0, x1, x2, fin0, q0, q1, q2;
    __half h0, h1, h2;
    stagevar::detail::split_x<__nv_bfloat16>(v, x0, x1, x2, fin0);
    stagevar::detail::split_q<__nv_bfloat16>(v, q0, q1, q2);
    stagevar::detail::split_q<__half>(v, h0, h1, h2);
    std::printf("%u %u %u %u %u %u %u %u %u\n", bits16(x0), bits16(x1), bits16(x2), bits16(fin0), bits16(q0),
                bits16(q1), bits16(q2), bits16(h0), bits16(h1));
  }
  return 0;
}

// The block algorithm of select_rows_block, one "thread" at a time.
int run_select() {
  using namespace stagevar;
  int rows = 0, rank = 0;
  if (std::scanf("%d %d", &rows, &rank) != 2 || rows < 1 || rank < 1 || rank > rows) return 2;
  std::vector<uint32_t> keys(rows);
  for (int i = 0; i < rows; ++i) {
    unsigned k = 0;
    if (std::scanf("%u", &k) != 1) return 2;
    keys[i] = k;
  }
  uint32_t prefix = 0, mask = 0;
  int need = rank;
  for (int shift = 24; shift >= 0; shift -= 8) {
    int hist[256] = {};
    for (int i = 0; i < rows; ++i)
      if ((keys[i] & mask) == prefix) ++hist[(keys[i] >> shift) & 0xFFu];
    int incl = 0, lane = 0;
    int h[8];
    for (; lane < 32; ++lane) {  // the warp scan and ballot: the first lane whose running count reaches need
      int sum = 0;
      for (int k = 0; k < 8; ++k) sum += (h[k] = hist[detail::lane_digit(lane, k)]);
      incl += sum;
      if (incl >= need) {
        int need_left;
        const int digit = detail::lane_pick_digit(h, lane, incl - sum, need, need_left);
        prefix |= static_cast<uint32_t>(digit) << shift;
        need = need_left;
        break;
      }
    }
    if (lane == 32) return 3;  // cannot happen: the bins hold >= need keys
    mask |= 0xFFu << shift;
  }
  const int run = detail::select_run(rows);
  std::vector<int> equal_below(kSelectThreads), pos(kSelectThreads);
  int equal_total = 0, taken_total = 0;
  for (int t = 0; t < kSelectThreads; ++t) {  // first exclusive scan: keys equal to kth below each run
    equal_below[t] = equal_total;
    for (int i = std::min(t * run, rows); i < std::min(t * run + run, rows); ++i) equal_total += keys[i] == prefix;
  }
  for (int t = 0; t < kSelectThreads; ++t) {  // second scan: output offsets
    pos[t] = taken_total;
    int e = equal_below[t];
    for (int i = std::min(t * run, rows); i < std::min(t * run + run, rows); ++i)
      taken_total += detail::take_row(keys[i], prefix, need, e);
  }
  if (taken_total != rank) return 4;
  std::vector<long long> idx(rank, -1);
  for (int t = 0; t < kSelectThreads; ++t) {
    int e = equal_below[t], q = pos[t];
    for (int i = std::min(t * run, rows); i < std::min(t * run + run, rows); ++i)
      if (detail::take_row(keys[i], prefix, need, e)) idx[q++] = i;
  }
  for (int j = 0; j < rank; ++j) std::printf(j + 1 < rank ? "%lld " : "%lld\n", idx[j]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "split") == 0) return run_split();
  if (argc > 1 && std::strcmp(argv[1], "select") == 0) return run_select();
  const unsigned long long seed = argc > 1 ? strtoull(argv[1], nullptr, 10) : 0ull;
  for (unsigned i = 0; i < 8; ++i) {
    const stagevar::PhiloxOut w = stagevar::philox4x32_10(seed, i * 7u + 3u, (i * 13u) ^ 0xF0F0F0F0u, i + 5u, 1u);
    std::printf("%u %u %u %u\n", w.w0, w.w1, w.w2, w.w3);
  }
  return 0;
}
#endif

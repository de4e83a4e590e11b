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
// Optional host self-check (no GPU needed): nvcc -DSTAGEVAR_CHECK_MAIN ... -o check && ./check prints the words of
// a few counters, which tests compare with stagevar_kernels.philox.philox4x32.
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
  const unsigned long long seed = argc > 1 ? strtoull(argv[1], nullptr, 10) : 0ull;
  for (unsigned i = 0; i < 8; ++i) {
    const stagevar::PhiloxOut w = stagevar::philox4x32_10(seed, i * 7u + 3u, (i * 13u) ^ 0xF0F0F0F0u, i + 5u, 1u);
    std::printf("%u %u %u %u\n", w.w0, w.w1, w.w2, w.w3);
  }
  return 0;
}
#endif

// Launcher of the project_and_sample kernels (csrc/include/stagevar/project_and_sample.cuh) as
// torch.ops.stagevar._project_and_sample_cuda(Tensor x, int rank, int seed, Tensor? seed_tensor)
//     -> (Tensor xr, Tensor idx).
// seed_tensor (int64, one element, on x's device), when given, replaces `seed`: the kernels read it from device
// memory, so a captured CUDA graph draws new numbers once the tensor is overwritten between replays.
// Only c10/cuda headers (no ATen/cuda/CUDAContext.h, which drags in cuBLAS/cuSPARSE headers).
// Thin: argument checks, dtype dispatch, workspaces from the caching allocator, the current stream. No host sync.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>

#include "stagevar/project_and_sample.cuh"

namespace stagevar {
namespace {

// Cached per device, so no CUDA API call happens inside a CUDA-graph capture after the first use.
int compute_capability_major(int device) {
  static std::array<std::atomic<int>, 64> cache{};  // 0 = not queried yet
  if (device < 0 || device >= static_cast<int>(cache.size())) device = 0;
  int major = cache[device].load(std::memory_order_relaxed);
  if (major == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    cache[device].store(major, std::memory_order_relaxed);
  }
  return major;
}

// use_mma: fp16/bf16 on sm_80+ (never for fp32); it also fixes the channel tile, hence the workspace slices.
template <typename T>
void launch_projection(const ProjectParams& p, bool use_mma, cudaStream_t stream) {
  const dim3 grid(project_num_slices(p.channels, use_mma), (p.rank + kProjTileR - 1) / kProjTileR,
                  std::min(p.batch, 65535));
  if constexpr (!std::is_same_v<T, float>) {
    if (use_mma) {
      project_mma_kernel<T><<<grid, kProjThreadsMma, 0, stream>>>(p);
      return;
    }
  }
  project_simt_kernel<T><<<grid, kProjThreadsSimt, 0, stream>>>(p);
}

std::tuple<at::Tensor, at::Tensor> project_and_sample_cuda(const at::Tensor& x, int64_t rank, int64_t seed,
                                                            const std::optional<at::Tensor>& seed_tensor) {
  TORCH_CHECK(x.is_cuda(), "_project_and_sample_cuda: x must be a CUDA tensor, got ", x.device());
  TORCH_CHECK(x.dim() == 3, "_project_and_sample_cuda: x must be (B, M, D), got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16,
              "_project_and_sample_cuda: x must be float32, float16 or bfloat16, got ", x.scalar_type());
  const int64_t batch = x.size(0), rows = x.size(1), channels = x.size(2);
  TORCH_CHECK(rows >= 1 && channels >= 1, "_project_and_sample_cuda: x needs M >= 1 and D >= 1, got ", x.sizes());
  TORCH_CHECK(1 <= rank && rank <= rows, "_project_and_sample_cuda: rank must satisfy 1 <= rank <= M = ", rows,
              ", got ", rank);
  TORCH_CHECK(seed >= 0, "_project_and_sample_cuda: seed must lie in [0, 2**63), got ", seed);
  const int64_t* seed_ptr = nullptr;
  if (seed_tensor.has_value()) {
    const at::Tensor& st = *seed_tensor;
    TORCH_CHECK(st.scalar_type() == at::kLong && st.numel() == 1,
                "_project_and_sample_cuda: seed_tensor must be an int64 tensor with one element, got ",
                st.scalar_type(), " of shape ", st.sizes());
    TORCH_CHECK(st.device() == x.device(), "_project_and_sample_cuda: seed_tensor must be on x's device ",
                x.device(), ", got ", st.device());
    seed_ptr = st.data_ptr<int64_t>();
  }
  // Philox counters are uint32 and the kernels index rows/channels with int.
  TORCH_CHECK(rows <= INT32_MAX && channels <= INT32_MAX && batch <= INT32_MAX,
              "_project_and_sample_cuda: sizes must fit in int32, got ", x.sizes());

  const c10::cuda::CUDAGuard guard(x.device());
  auto xr = at::empty({batch, rank, channels}, x.options());
  auto idx = at::empty({batch, rank}, x.options().dtype(at::kLong));
  if (batch == 0) return {xr, idx};

  const bool use_mma = x.scalar_type() != at::kFloat && compute_capability_major(x.device().index()) >= 8;
  const int num_slices = project_num_slices(static_cast<int>(channels), use_mma);
  auto partial = at::empty({batch, num_slices, rows}, x.options().dtype(at::kFloat));
  auto keys = at::empty({batch, rows}, x.options().dtype(at::kInt));  // uint32 key bits

  ProjectParams p;
  p.x = x.data_ptr();
  p.x_stride_b = x.stride(0);
  p.x_stride_m = x.stride(1);
  p.x_stride_d = x.stride(2);
  {
    const int64_t vec = 16 / static_cast<int64_t>(x.element_size());
    p.x_vec16 = x.stride(2) == 1 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0 && x.stride(1) % vec == 0 &&
                (batch == 1 || x.stride(0) % vec == 0);
  }
  p.xr = xr.data_ptr();
  p.partial = partial.data_ptr<float>();
  p.batch = static_cast<int>(batch);
  p.rows = static_cast<int>(rows);
  p.channels = static_cast<int>(channels);
  p.rank = static_cast<int>(rank);
  p.seed = static_cast<uint64_t>(seed);
  p.seed_ptr = seed_ptr;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(rank)));  // float32(1/sqrt(rank)), as philox.py

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (x.scalar_type()) {
    case at::kFloat:
      launch_projection<float>(p, false, stream);
      break;
    case at::kHalf:
      launch_projection<__half>(p, use_mma, stream);
      break;
    case at::kBFloat16:
      launch_projection<__nv_bfloat16>(p, use_mma, stream);
      break;
    default:
      TORCH_CHECK(false, "unreachable");
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  SelectParams s;
  s.partial = partial.data_ptr<float>();
  s.keys = reinterpret_cast<uint32_t*>(keys.data_ptr<int32_t>());
  s.idx = idx.data_ptr<int64_t>();
  s.batch = p.batch;
  s.rows = p.rows;
  s.rank = p.rank;
  s.num_slices = num_slices;
  s.seed = p.seed;
  s.seed_ptr = seed_ptr;
  select_rows_kernel<<<std::min(p.batch, 65535), kSelectThreads, 0, stream>>>(s);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {xr, idx};
}

}  // namespace
}  // namespace stagevar

TORCH_LIBRARY_IMPL(stagevar, CUDA, m) { m.impl("_project_and_sample_cuda", &stagevar::project_and_sample_cuda); }

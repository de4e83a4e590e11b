// Launcher of project_and_sample (csrc/include/stagevar/project_and_sample.cuh) as
// torch.ops.stagevar._project_and_sample_cuda(Tensor x, int rank, int seed, Tensor? seed_tensor)
//     -> (Tensor xr, Tensor idx).
// seed_tensor (int64, one element, on x's device), when given, replaces `seed`: the kernels read it from device
// memory, so a captured CUDA graph draws new numbers once the tensor is overwritten between replays.
// Thin: argument checks, workspaces from the caching allocator, dtype dispatch, the current stream. No host sync.
// The GEMM is at::bmm_out with an fp32 result (cuBLAS, tensor cores, fp32 accumulation and split-K reductions:
// a 16-bit result would let cuBLAS reduce split-K partials in 16 bits under torch's default
// allow_{fp16,bf16}_reduced_precision_reduction).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>

#include "stagevar/project_and_sample.cuh"

namespace stagevar {
namespace {

constexpr int64_t kMaxGrid = 2147483647;  // gridDim.x limit

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <typename T>
void run(const at::Tensor& x, const at::Tensor& xr, const at::Tensor& idx, int64_t seed, const int64_t* seed_ptr) {
  using G = typename SplitOperand<T>::type;
  constexpr int kTerms = SplitOperand<T>::kTerms;
  const int64_t batch = x.size(0), rows = x.size(1), channels = x.size(2), rank = xr.size(1);
  const at::ScalarType g_type = std::is_same_v<T, float> ? at::kBFloat16 : x.scalar_type();
  const int64_t k_len = kTerms * rows;
  // 16-byte aligned rows in both operands (cuBLAS's fast tensor-core paths want 16-byte leading dimensions).
  const int64_t lda = round_up(k_len, 8), ldx = round_up(channels, 8);
  auto a_buf = at::empty({batch, rank, lda}, x.options().dtype(g_type));
  auto xs_buf = at::empty({batch, k_len, ldx}, x.options().dtype(g_type));
  auto keys = at::empty({batch, rows}, x.options().dtype(at::kInt));  // uint32 key bits

  PrepareParams p;
  p.x = x.data_ptr();
  p.x_stride_b = x.stride(0);
  p.x_stride_m = x.stride(1);
  p.x_stride_d = x.stride(2);
  {
    const int64_t vec = 16 / static_cast<int64_t>(x.element_size());
    p.x_vec16 = x.stride(2) == 1 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0 && x.stride(1) % vec == 0 &&
                (batch == 1 || x.stride(0) % vec == 0);
  }
  p.a = a_buf.data_ptr();
  p.a_stride_b = a_buf.stride(0);
  p.lda = static_cast<int>(lda);
  p.xs = xs_buf.data_ptr();
  p.xs_stride_b = xs_buf.stride(0);
  p.ldx = static_cast<int>(ldx);
  p.keys = reinterpret_cast<uint32_t*>(keys.data_ptr<int32_t>());
  p.batch = static_cast<int>(batch);
  p.rows = static_cast<int>(rows);
  p.channels = static_cast<int>(channels);
  p.rank = static_cast<int>(rank);
  p.seed = static_cast<uint64_t>(seed);
  p.seed_ptr = seed_ptr;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(rank)));  // float32(1/sqrt(rank)), as philox.py
  const int64_t q_blocks = prepare_q_blocks(p.batch, p.rows, p.rank);
  const int64_t grid = q_blocks + prepare_x_blocks(p.batch, p.rows);
  TORCH_CHECK(grid <= kMaxGrid, "_project_and_sample_cuda: x is too large (", x.sizes(), ")");
  p.q_blocks = static_cast<int>(q_blocks);

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  project_prepare_kernel<T><<<static_cast<unsigned>(grid), kPrepareThreads, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // xr_f32[b] = A[b] (r x K) @ X[b] (K x D), fp32 result: xr itself for fp32 x, else a workspace.
  const at::Tensor a = a_buf.narrow(2, 0, k_len);
  const at::Tensor xs = xs_buf.narrow(2, 0, channels);
  at::Tensor result = std::is_same_v<T, float> ? xr : at::empty({batch, rank, channels}, x.options().dtype(at::kFloat));
  at::bmm_out(result, a, xs, at::kFloat);

  SelectParams s;
  s.keys = p.keys;
  s.idx = idx.data_ptr<int64_t>();
  s.batch = p.batch;
  s.rows = p.rows;
  s.rank = p.rank;
  CastParams c;
  c.src = result.data_ptr<float>();
  c.dst = xr.data_ptr();
  c.n = std::is_same_v<T, float> ? 0 : xr.numel();
  const int64_t finish = batch + cast_blocks(c.n);
  TORCH_CHECK(finish <= kMaxGrid, "_project_and_sample_cuda: x is too large (", x.sizes(), ")");
  select_cast_kernel<T><<<static_cast<unsigned>(finish), kSelectThreads, 0, stream>>>(s, c);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  // Philox counters are uint32; the kernels index rows, channels and the stacked K axis (up to 6 M) with int.
  TORCH_CHECK(6 * rows + 8 <= INT32_MAX && channels + 8 <= INT32_MAX && batch <= INT32_MAX,
              "_project_and_sample_cuda: sizes must fit in int32, got ", x.sizes());
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

  const c10::cuda::CUDAGuard guard(x.device());
  auto xr = at::empty({batch, rank, channels}, x.options());
  auto idx = at::empty({batch, rank}, x.options().dtype(at::kLong));
  if (batch == 0) return {xr, idx};
  switch (x.scalar_type()) {
    case at::kFloat:
      run<float>(x, xr, idx, seed, seed_ptr);
      break;
    case at::kHalf:
      run<__half>(x, xr, idx, seed, seed_ptr);
      break;
    case at::kBFloat16:
      run<__nv_bfloat16>(x, xr, idx, seed, seed_ptr);
      break;
    default:
      TORCH_CHECK(false, "unreachable");
  }
  return {xr, idx};
}

}  // namespace
}  // namespace stagevar

TORCH_LIBRARY_IMPL(stagevar, CUDA, m) { m.impl("_project_and_sample_cuda", &stagevar::project_and_sample_cuda); }

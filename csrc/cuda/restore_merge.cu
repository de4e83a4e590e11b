// Launcher of the restore_merge kernels (csrc/include/stagevar/restore_merge.cuh) as
// torch.ops.stagevar._restore_merge_cuda(y, idx, cache, src_hw, dst_hw, mode) -> Tensor.
// Thin: argument checks, dtype dispatch, the current stream; one kernel launch, no workspace. No host sync (idx
// values are never read on the host).
// y and cache are read through their batch/row strides; a channel stride other than 1 costs one contiguous copy.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <string>

#include "stagevar/restore_merge.cuh"

namespace stagevar {
namespace {

RestoreMode parse_mode(const std::string& mode) {
  if (mode == "nearest") return RestoreMode::kNearest;
  if (mode == "bilinear") return RestoreMode::kBilinear;
  if (mode == "bicubic") return RestoreMode::kBicubic;
  if (mode == "area") return RestoreMode::kArea;
  TORCH_CHECK(false, "_restore_merge_cuda: mode must be nearest, bilinear, bicubic or area, got '", mode, "'");
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T>
void launch_merge(const RestoreParams& p, RestoreMode mode, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  // 16-byte vectors need every row start aligned: base pointers, row/batch strides and D multiples of kVec.
  const bool vec = aligned16(p.y) && aligned16(p.cache) && aligned16(p.out) && p.channels % kVec == 0 &&
                   p.y_stride_b % kVec == 0 && p.y_stride_r % kVec == 0 && p.cache_stride_b % kVec == 0 &&
                   p.cache_stride_r % kVec == 0;
  const int64_t rows = static_cast<int64_t>(p.batch) * p.dst_h * p.dst_w;
  const int64_t blocks = (rows + kRestoreWarps - 1) / kRestoreWarps;
  TORCH_CHECK(blocks <= INT32_MAX, "_restore_merge_cuda: too many output rows (", rows, ")");
  if (vec) {
    restore_merge_kernel<T, kVec><<<static_cast<unsigned>(blocks), kRestoreWarps * 32, 0, stream>>>(p, mode);
  } else {
    restore_merge_kernel<T, 1><<<static_cast<unsigned>(blocks), kRestoreWarps * 32, 0, stream>>>(p, mode);
  }
}

at::Tensor restore_merge_cuda(const at::Tensor& y_in, const at::Tensor& idx, const at::Tensor& cache_in,
                              at::IntArrayRef src_hw, at::IntArrayRef dst_hw, c10::string_view mode_name) {
  const RestoreMode mode = parse_mode(std::string(mode_name));
  TORCH_CHECK(y_in.is_cuda() && idx.is_cuda() && cache_in.is_cuda(),
              "_restore_merge_cuda: y, idx and cache must be CUDA tensors, got ", y_in.device(), ", ", idx.device(),
              ", ", cache_in.device());
  TORCH_CHECK(idx.device() == y_in.device() && cache_in.device() == y_in.device(),
              "_restore_merge_cuda: y, idx and cache must be on the same device");
  TORCH_CHECK(y_in.dim() == 3, "_restore_merge_cuda: y must be (B, r, D), got shape ", y_in.sizes());
  TORCH_CHECK(idx.dim() == 2, "_restore_merge_cuda: idx must be (B, r), got shape ", idx.sizes());
  TORCH_CHECK(cache_in.dim() == 3, "_restore_merge_cuda: cache must be (B, h0*w0, D), got shape ", cache_in.sizes());
  TORCH_CHECK(y_in.scalar_type() == at::kFloat || y_in.scalar_type() == at::kHalf ||
                  y_in.scalar_type() == at::kBFloat16,
              "_restore_merge_cuda: y must be float32, float16 or bfloat16, got ", y_in.scalar_type());
  TORCH_CHECK(cache_in.scalar_type() == y_in.scalar_type(), "_restore_merge_cuda: cache dtype ",
              cache_in.scalar_type(), " differs from y's ", y_in.scalar_type());
  TORCH_CHECK(idx.scalar_type() == at::kLong, "_restore_merge_cuda: idx must be int64, got ", idx.scalar_type());
  TORCH_CHECK(src_hw.size() == 2 && dst_hw.size() == 2, "_restore_merge_cuda: src_hw and dst_hw must be (h, w)");
  TORCH_CHECK(src_hw[0] >= 1 && src_hw[1] >= 1 && dst_hw[0] >= 1 && dst_hw[1] >= 1,
              "_restore_merge_cuda: sizes must be positive, got src_hw=", src_hw, " dst_hw=", dst_hw);
  const int64_t batch = y_in.size(0), rank = y_in.size(1), channels = y_in.size(2);
  TORCH_CHECK(idx.size(0) == batch && cache_in.size(0) == batch, "_restore_merge_cuda: batch sizes differ: y ",
              batch, ", idx ", idx.size(0), ", cache ", cache_in.size(0));
  TORCH_CHECK(idx.size(1) == rank, "_restore_merge_cuda: idx has ", idx.size(1), " columns but y has ", rank,
              " rows");
  TORCH_CHECK(cache_in.size(2) == channels, "_restore_merge_cuda: cache has ", cache_in.size(2),
              " channels but y has ", channels);
  TORCH_CHECK(cache_in.size(1) == src_hw[0] * src_hw[1], "_restore_merge_cuda: src_hw ", src_hw, " holds ",
              src_hw[0] * src_hw[1], " rows but cache has ", cache_in.size(1));
  const int64_t dst_rows = dst_hw[0] * dst_hw[1];
  TORCH_CHECK(rank <= dst_rows, "_restore_merge_cuda: dst_hw ", dst_hw, " holds fewer than the ", rank,
              " rows of y");
  TORCH_CHECK(src_hw[0] * src_hw[1] <= INT32_MAX && dst_rows <= INT32_MAX && rank <= INT32_MAX &&
                  channels <= INT32_MAX && batch <= INT32_MAX,
              "_restore_merge_cuda: sizes must fit in int32");

  const c10::cuda::CUDAGuard guard(y_in.device());
  auto out = at::empty({batch, dst_rows, channels}, y_in.options());
  if (out.numel() == 0) return out;
  // The kernels need a unit channel stride; batch/row strides are passed through.
  const at::Tensor y = y_in.stride(2) == 1 ? y_in : y_in.contiguous();
  const at::Tensor cache = cache_in.stride(2) == 1 ? cache_in : cache_in.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  RestoreParams p;
  p.y = y.data_ptr();
  p.y_stride_b = y.stride(0);
  p.y_stride_r = y.stride(1);
  p.cache = cache.data_ptr();
  p.cache_stride_b = cache.stride(0);
  p.cache_stride_r = cache.stride(1);
  p.idx = idx.data_ptr<int64_t>();
  p.idx_stride_b = idx.stride(0);
  p.idx_stride_r = idx.stride(1);
  p.out = out.data_ptr();
  p.batch = static_cast<int>(batch);
  p.rank = static_cast<int>(rank);
  p.channels = static_cast<int>(channels);
  p.src_h = static_cast<int>(src_hw[0]);
  p.src_w = static_cast<int>(src_hw[1]);
  p.dst_h = static_cast<int>(dst_hw[0]);
  p.dst_w = static_cast<int>(dst_hw[1]);
  switch (y.scalar_type()) {
    case at::kFloat:
      launch_merge<float>(p, mode, stream);
      break;
    case at::kHalf:
      launch_merge<__half>(p, mode, stream);
      break;
    case at::kBFloat16:
      launch_merge<__nv_bfloat16>(p, mode, stream);
      break;
    default:
      TORCH_CHECK(false, "unreachable");
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace stagevar

TORCH_LIBRARY_IMPL(stagevar, CUDA, m) { m.impl("_restore_merge_cuda", &stagevar::restore_merge_cuda); }

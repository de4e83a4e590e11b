// The random stream of the ops (Philox4x32-10, uniforms, Box-Muller normals, Gumbel keys) in CUDA C++.
// It is the C++ twin of stagevar_kernels/philox.py, which is the contract: the uint32 words are bit-identical,
// the floats agree to fp32 rounding (precise logf/sqrtf/cosf/sinf; this header must NOT be built with
// --use_fast_math, and the products below are written with __fmul_rn so nvcc cannot contract them into FMAs).
// No torch headers: compilable by nvcc anywhere (csrc/check/compile_kernels.cu).
#pragma once

#include <cstdint>
#include <cstring>

#include <cuda_runtime.h>

namespace stagevar {

constexpr uint32_t kPhiloxRoundA = 0xD2511F53u;
constexpr uint32_t kPhiloxRoundB = 0xCD9E8D57u;
constexpr uint32_t kPhiloxKeyA = 0x9E3779B9u;
constexpr uint32_t kPhiloxKeyB = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;
constexpr float kTwoPiF32 = 6.2831855f;  // float32(2*pi), as philox.TWO_PI_F32
constexpr uint32_t kStreamProjection = 0;
constexpr uint32_t kStreamGumbel = 1;

struct PhiloxOut {
  uint32_t w0, w1, w2, w3;
};

// Philox4x32-10 of the counter (c0, c1, c2, c3) under the 64-bit seed; Triton's tl.philox, word for word.
__host__ __device__ __forceinline__ PhiloxOut philox4x32_10(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2,
                                                            uint32_t c3) {
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
#pragma unroll
  for (int r = 0; r < kPhiloxRounds; ++r) {
    const uint64_t pb = static_cast<uint64_t>(kPhiloxRoundB) * c2;
    const uint64_t pa = static_cast<uint64_t>(kPhiloxRoundA) * c0;
    const uint32_t n0 = static_cast<uint32_t>(pb >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(pa >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(pb);
    c3 = static_cast<uint32_t>(pa);
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxKeyA;
    k1 += kPhiloxKeyB;
  }
  return {c0, c1, c2, c3};
}

// The 64-bit Philox key of a call: the int64 at seed_ptr when the caller passed a device seed tensor (read on the
// device, so a captured CUDA graph draws new numbers after the tensor is overwritten between replays), else the
// seed passed by value. The int64's two's-complement bits are the key: words (seed & 0xFFFFFFFF, seed >> 32).
__device__ __forceinline__ uint64_t resolve_seed(uint64_t seed, const int64_t* seed_ptr) {
  return seed_ptr != nullptr ? static_cast<uint64_t>(__ldg(seed_ptr)) : seed;
}

// (2 * (bits >> 9) + 1) * 2**-24: exact in fp32 (the odd integer is < 2**24), in (0, 1).
__host__ __device__ __forceinline__ float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(((bits >> 9) << 1) | 1u) * 5.9604644775390625e-08f;
}

// The four standard normals n[i, 4g .. 4g+3] of the projection stream, counter (i, g, b, 0).
__device__ __forceinline__ void projection_normals4(uint64_t seed, uint32_t i, uint32_t g, uint32_t b, float (&n)[4]) {
  const PhiloxOut w = philox4x32_10(seed, i, g, b, kStreamProjection);
  const float rad_a = sqrtf(__fmul_rn(-2.0f, logf(uniform_from_bits(w.w0))));
  const float rad_b = sqrtf(__fmul_rn(-2.0f, logf(uniform_from_bits(w.w2))));
  const float theta_a = __fmul_rn(kTwoPiF32, uniform_from_bits(w.w1));
  const float theta_b = __fmul_rn(kTwoPiF32, uniform_from_bits(w.w3));
  n[0] = __fmul_rn(rad_a, cosf(theta_a));
  n[1] = __fmul_rn(rad_a, sinf(theta_a));
  n[2] = __fmul_rn(rad_b, cosf(theta_b));
  n[3] = __fmul_rn(rad_b, sinf(theta_b));
}

// Standard Gumbel draw -log(-log(u)) of row i of batch b: word 0 of the counter (i, 0, b, 1).
__device__ __forceinline__ float gumbel_noise(uint64_t seed, uint32_t i, uint32_t b) {
  const PhiloxOut w = philox4x32_10(seed, i, 0u, b, kStreamGumbel);
  return -logf(-logf(uniform_from_bits(w.w0)));
}

// log(w) + g for finite positive w, -inf otherwise (philox.sampling_keys).
__device__ __forceinline__ float sampling_key(float sq_norm, float gumbel) {
  const bool ok = isfinite(sq_norm) && sq_norm > 0.0f;
  return ok ? __fadd_rn(logf(sq_norm), gumbel) : -INFINITY;
}

// uint32 whose unsigned order is the float order of `key` (keys are never NaN); -0.0 sorts below +0.0, exactly
// as philox.orderable_keys (which maps to a signed int32; this is that value with the sign bit flipped).
__host__ __device__ __forceinline__ uint32_t orderable_key_bits(float key) {
  uint32_t bits;
  memcpy(&bits, &key, sizeof(bits));
  const uint32_t ordered = (bits & 0x80000000u) ? (bits ^ 0x7FFFFFFFu) : bits;
  return ordered ^ 0x80000000u;
}

}  // namespace stagevar

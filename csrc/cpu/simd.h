// Vector kernels for the two hottest loops of the CPU engine, with scalar fallbacks that compute
// exactly the same values (the tests run whichever the build selects against the reference).
#pragma once

#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define HANAMI_AVX512 1
#endif

#include "../rules.h"

namespace hanami {

// Number of leading slots a walk passes on its fast path: reached (remaining potential above the
// cut), holding a synapse, and covered in full. The walk's slower cases all start at this slot.
inline int fast_prefix(const float* upper, const uint8_t* target, int len, float p_above,
                       bool whole_likely) {
  // Most walks of bright inputs cover the whole section. Without reduction an empty slot can only
  // be the last one, so a reached, full, non-empty last slot means every slot is (remaining
  // potentials fall along the section and every earlier slot ends below the last one's start).
  // The caller asks for this shortcut only without reduction and where it usually pays.
  if (len > 0 && whole_likely && target[len - 1] != kEmptyTarget) {
    const float lower = len > 1 ? upper[len - 2] : 0.0f;
    const float r = remaining(p_above, lower);
    if (reached(r) && !(r < upper[len - 1] - lower)) return len;
  }
#ifdef HANAMI_AVX512
  const __m512 p = _mm512_set1_ps(p_above);
  const __m512 cut = _mm512_set1_ps(kReachCut);
  const __m128i empty = _mm_set1_epi8(static_cast<char>(kEmptyTarget));
  for (int k = 0; k < len; k += 16) {
    const int lanes = len - k < 16 ? len - k : 16;
    const __mmask16 valid = static_cast<__mmask16>((1u << lanes) - 1u);
    const __m512 u = _mm512_maskz_loadu_ps(valid, upper + k);
    // lower_k = upper_{k-1}; lane 0 of the first chunk reads nothing and stays 0
    const __mmask16 has_lower = k == 0 ? static_cast<__mmask16>(valid & ~1u) : valid;
    const __m512 lower = _mm512_maskz_loadu_ps(has_lower, upper + k - 1);
    const __m512 r = _mm512_sub_ps(p, lower);
    const __m512 border = _mm512_sub_ps(u, lower);
    const __m128i t = _mm_maskz_loadu_epi8(valid, target + k);
    __mmask16 ok = _mm512_mask_cmp_ps_mask(valid, r, cut, _CMP_GT_OQ);
    ok &= _mm512_cmp_ps_mask(r, border, _CMP_NLT_UQ);
    ok &= _mm_cmpneq_epi8_mask(t, empty);
    if (ok != 0xFFFF) return k + static_cast<int>(__builtin_ctz(~static_cast<unsigned>(ok)));
  }
  return len;
#else
  float lower = 0.0f;
  for (int k = 0; k < len; ++k) {
    const float r = remaining(p_above, lower);
    if (!reached(r) || target[k] == kEmptyTarget || r < upper[k] - lower) return k;
    lower = upper[k];
  }
  return len;
#endif
}

// w[k] -= lr * delta[target[k]] for the first `count` slots. `delta` has 256 entries, so the empty
// marker reads a zero and leaves the weight as it is.
inline void sgd_step(float* weight, const uint8_t* target, const float* delta, int count, float lr) {
#ifdef HANAMI_AVX512
  const __m512 rate = _mm512_set1_ps(lr);
  for (int k = 0; k < count; k += 16) {
    const int lanes = count - k < 16 ? count - k : 16;
    const __mmask16 valid = static_cast<__mmask16>((1u << lanes) - 1u);
    const __m512i index = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, target + k));
    const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, delta, 4);
    const __m512 w = _mm512_maskz_loadu_ps(valid, weight + k);
    _mm512_mask_storeu_ps(weight + k, valid, _mm512_sub_ps(w, _mm512_mul_ps(rate, d)));
  }
#else
  for (int k = 0; k < count; ++k) weight[k] = updated_weight(weight[k], delta[target[k]], lr);
#endif
}

// Like sgd_step, and also returns the section's backward sum of delta * weight (weights before
// the step) in the lane order of lane_total.
inline float sgd_step_with_sum(float* weight, const uint8_t* target, const float* delta, int count,
                               float lr) {
  alignas(64) float lanes[kSumLanes];
#ifdef HANAMI_AVX512
  const __m512 rate = _mm512_set1_ps(lr);
  __m512 acc = _mm512_setzero_ps();
  for (int k = 0; k < count; k += 16) {
    const int n = count - k < 16 ? count - k : 16;
    const __mmask16 valid = static_cast<__mmask16>((1u << n) - 1u);
    const __m512i index = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, target + k));
    const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, delta, 4);
    const __m512 w = _mm512_maskz_loadu_ps(valid, weight + k);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(d, w));
    _mm512_mask_storeu_ps(weight + k, valid, _mm512_sub_ps(w, _mm512_mul_ps(rate, d)));
  }
  _mm512_store_ps(lanes, acc);
#else
  for (int i = 0; i < kSumLanes; ++i) lanes[i] = 0.0f;
  for (int k = 0; k < count; ++k) {
    const float d = delta[target[k]];
    lanes[k % kSumLanes] = lanes[k % kSumLanes] + d * weight[k];
    weight[k] = updated_weight(weight[k], d, lr);
  }
#endif
  return lane_total(lanes);
}

// block_input[target[j]] += weight[j] for j < count, in order. For a block of at most 16 neurons
// (an output brick, say) the targets repeat within a few slots, and every load-add-store would
// wait for the store before it; a register holding the 16 sums avoids that. Each lane still adds
// its own contributions one by one in slot order, so the sums are bit-identical.
inline void scatter_full(float* block_input, const uint8_t* target, const float* weight, int count,
                         int32_t block_neurons) {
#ifdef HANAMI_AVX512
  if (block_neurons <= 16) {
    __m512 sums = _mm512_loadu_ps(block_input);
    for (int j = 0; j < count; ++j) {
      const unsigned t = target[j];
      const __mmask16 lane = static_cast<__mmask16>(t < 16 ? 1u << t : 0u);  // others: padding
      sums = _mm512_mask_add_ps(sums, lane, sums, _mm512_set1_ps(weight[j]));
    }
    _mm512_storeu_ps(block_input, sums);
    return;
  }
#endif
  (void)block_neurons;
  for (int j = 0; j < count; ++j) block_input[target[j]] += weight[j];
}

// The Adagrad variant of sgd_step_with_sum: accum[k] += d^2, w[k] -= lr d / (sqrt(accum[k]) + eps).
inline float adagrad_step_with_sum(float* weight, float* accum, const uint8_t* target,
                                   const float* delta, int count, float lr) {
  alignas(64) float lanes[kSumLanes];
#ifdef HANAMI_AVX512
  const __m512 rate = _mm512_set1_ps(lr);
  const __m512 epsilon = _mm512_set1_ps(kAdagradEpsilon);
  __m512 acc = _mm512_setzero_ps();
  for (int k = 0; k < count; k += 16) {
    const int n = count - k < 16 ? count - k : 16;
    const __mmask16 valid = static_cast<__mmask16>((1u << n) - 1u);
    const __m512i index = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, target + k));
    const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, delta, 4);
    const __m512 w = _mm512_maskz_loadu_ps(valid, weight + k);
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(valid, accum + k), _mm512_mul_ps(d, d));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(d, w));
    const __m512 step = _mm512_div_ps(_mm512_mul_ps(rate, d), _mm512_add_ps(_mm512_sqrt_ps(sum), epsilon));
    _mm512_mask_storeu_ps(accum + k, valid, sum);
    _mm512_mask_storeu_ps(weight + k, valid, _mm512_sub_ps(w, step));
  }
  _mm512_store_ps(lanes, acc);
#else
  for (int i = 0; i < kSumLanes; ++i) lanes[i] = 0.0f;
  for (int k = 0; k < count; ++k) {
    const float d = delta[target[k]];
    lanes[k % kSumLanes] = lanes[k % kSumLanes] + d * weight[k];
    weight[k] = adagrad_weight(weight[k], accum + k, d, lr);
  }
#endif
  return lane_total(lanes);
}

}  // namespace hanami

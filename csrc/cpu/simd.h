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
                       bool no_holes) {
  // Most walks of bright inputs cover the whole section. Without reduction an empty slot can only
  // be the last one, so a reached, full, non-empty last slot means every slot is (remaining
  // potentials fall along the section and every earlier slot ends below the last one's start).
  if (len > 0 && no_holes && target[len - 1] != kEmptyTarget) {
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

// A section's inference walk (no growth): adds every reached slot's contribution to its target's
// sum in `block_sum`. `vector_prefix` finds the fully covered leading slots with vectors first
// (worth it for long walks, such as pixels'); the slots after it go one by one.
inline void infer_walk(const float* __restrict upper, const uint8_t* __restrict target,
                       const float* __restrict weight, int len, float p_above, bool vector_prefix,
                       bool no_holes, float* block_sum) {
  int k = vector_prefix ? fast_prefix(upper, target, len, p_above, no_holes) : 0;
  for (int j = 0; j < k; ++j) block_sum[target[j]] += weight[j];
  float lower = k > 0 ? upper[k - 1] : 0.0f;
  for (; k < len; ++k) {
    const float r = remaining(p_above, lower);
    if (!reached(r)) break;
    const float u = upper[k];
    const uint8_t t = target[k];
    const float border = u - lower;
    if (r < border) {  // partly covered: the last reached slot
      if (t != kEmptyTarget) block_sum[t] += contribution(weight[k], r, border);
      break;
    }
    if (t != kEmptyTarget) block_sum[t] += weight[k];
    lower = u;
  }
}

#ifdef HANAMI_AVX512
// Up to 16 reached slots from slot k on: which lanes are real, each slot's target delta (gathered
// by the target byte) and its weight.
struct SlotChunk {
  __mmask16 valid;
  __m512 delta;
  __m512 weight;
};

inline SlotChunk load_chunk(const float* weight, const uint8_t* target, const float* delta, int k,
                            int count) {
  const int lanes = count - k < 16 ? count - k : 16;
  const __mmask16 valid = static_cast<__mmask16>((1u << lanes) - 1u);
  const __m512i index = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, target + k));
  return {valid, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, delta, 4),
          _mm512_maskz_loadu_ps(valid, weight + k)};
}
#endif

// w[k] -= lr * delta[target[k]] for the first `count` slots. `delta` has 256 entries, so the empty
// marker reads a zero and leaves the weight as it is.
inline void sgd_step(float* weight, const uint8_t* target, const float* delta, int count, float lr) {
#ifdef HANAMI_AVX512
  const __m512 rate = _mm512_set1_ps(lr);
  for (int k = 0; k < count; k += 16) {
    const SlotChunk chunk = load_chunk(weight, target, delta, k, count);
    const __mmask16 valid = chunk.valid;
    const __m512 d = chunk.delta, w = chunk.weight;
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
    const SlotChunk chunk = load_chunk(weight, target, delta, k, count);
    const __mmask16 valid = chunk.valid;
    const __m512 d = chunk.delta, w = chunk.weight;
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

// The Adagrad variant of sgd_step_with_sum: accum[k] += d^2, w[k] -= lr d / (sqrt(accum[k]) + eps).
inline float adagrad_step_with_sum(float* weight, float* accum, const uint8_t* target,
                                   const float* delta, int count, float lr) {
  alignas(64) float lanes[kSumLanes];
#ifdef HANAMI_AVX512
  const __m512 rate = _mm512_set1_ps(lr);
  const __m512 epsilon = _mm512_set1_ps(kAdagradEpsilon);
  __m512 acc = _mm512_setzero_ps();
  for (int k = 0; k < count; k += 16) {
    const SlotChunk chunk = load_chunk(weight, target, delta, k, count);
    const __mmask16 valid = chunk.valid;
    const __m512 d = chunk.delta, w = chunk.weight;
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

// Batches: pending[k] += delta[target[k]] for the first `count` slots; the weights stay.
inline void batch_accumulate(float* pending, const uint8_t* target, const float* delta, int count) {
#ifdef HANAMI_AVX512
  for (int k = 0; k < count; k += 16) {
    const int lanes = count - k < 16 ? count - k : 16;
    const __mmask16 valid = static_cast<__mmask16>((1u << lanes) - 1u);
    const __m512i index = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, target + k));
    const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, delta, 4);
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(valid, pending + k), d);
    _mm512_mask_storeu_ps(pending + k, valid, sum);
  }
#else
  for (int k = 0; k < count; ++k) pending[k] = pending[k] + delta[target[k]];
#endif
}

// Like batch_accumulate, and also returns the section's backward sum of delta * weight in the
// lane order of lane_total (the same value sgd_step_with_sum returns for these weights).
inline float batch_accumulate_with_sum(float* pending, const float* weight, const uint8_t* target,
                                       const float* delta, int count) {
  alignas(64) float lanes[kSumLanes];
#ifdef HANAMI_AVX512
  __m512 acc = _mm512_setzero_ps();
  for (int k = 0; k < count; k += 16) {
    const SlotChunk chunk = load_chunk(weight, target, delta, k, count);
    const __mmask16 valid = chunk.valid;
    acc = _mm512_add_ps(acc, _mm512_mul_ps(chunk.delta, chunk.weight));
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(valid, pending + k), chunk.delta);
    _mm512_mask_storeu_ps(pending + k, valid, sum);
  }
  _mm512_store_ps(lanes, acc);
#else
  for (int i = 0; i < kSumLanes; ++i) lanes[i] = 0.0f;
  for (int k = 0; k < count; ++k) {
    const float d = delta[target[k]];
    lanes[k % kSumLanes] = lanes[k % kSumLanes] + d * weight[k];
    pending[k] = pending[k] + d;
  }
#endif
  return lane_total(lanes);
}

// End of a batch: every slot moves once by its summed delta, which becomes 0 (accum: Adagrad's
// sums, null for SGD).
inline void batch_apply(float* weight, float* accum, float* pending, int count, float lr) {
  if (accum) {
    for (int k = 0; k < count; ++k) weight[k] = adagrad_weight(weight[k], accum + k, pending[k], lr);
  } else {
    for (int k = 0; k < count; ++k) weight[k] = updated_weight(weight[k], pending[k], lr);
  }
  for (int k = 0; k < count; ++k) pending[k] = 0.0f;
}

// hidden_activation (log2(1 + v)) for n values at once: the same double operations as the scalar
// rules, eight lanes at a time (getmant/getexp are frexp, exactly).
inline void hidden_activation_batch(const float* v, float* out, int n) {
  int i = 0;
#ifdef HANAMI_AVX512
  const __m512d one = _mm512_set1_pd(1.0), two = _mm512_set1_pd(2.0);
  for (; i + 8 <= n; i += 8) {
    const __m512d a = _mm512_add_pd(_mm512_cvtps_pd(_mm256_loadu_ps(v + i)), one);
    __m512d m = _mm512_getmant_pd(a, _MM_MANT_NORM_p5_1, _MM_MANT_SIGN_src);
    __m512d e = _mm512_add_pd(_mm512_getexp_pd(a), one);
    const __mmask8 low = _mm512_cmp_pd_mask(m, _mm512_set1_pd(0.7071067811865476), _CMP_LT_OQ);
    m = _mm512_mask_mul_pd(m, low, m, two);
    e = _mm512_mask_sub_pd(e, low, e, one);
    const __m512d s = _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one));
    const __m512d s2 = _mm512_mul_pd(s, s);
    __m512d series = _mm512_set1_pd(1.0 / 17.0);
    const double odd[7] = {1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0};
    for (double c : odd) series = _mm512_add_pd(_mm512_set1_pd(c), _mm512_mul_pd(s2, series));
    series = _mm512_add_pd(one, _mm512_mul_pd(s2, series));
    const __m512d ln = _mm512_mul_pd(_mm512_mul_pd(two, s), series);
    const __m512d result = _mm512_add_pd(e, _mm512_mul_pd(ln, _mm512_set1_pd(1.4426950408889634)));
    _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(result));
  }
#endif
  for (; i < n; ++i) out[i] = hidden_activation(v[i]);
}

// 2^-y (exp2_negative) rounded to float, for n values at once; see hidden_activation_batch.
inline void exp2_negative_batch(const float* y, float* out, int n) {
  int i = 0;
#ifdef HANAMI_AVX512
  const double inverse_factorials[12] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                         1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                         1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                         1.0 / 6.0,         1.0 / 2.0,        1.0};
  for (; i + 8 <= n; i += 8) {
    const __m512d value = _mm512_cvtps_pd(_mm256_loadu_ps(y + i));
    const __m512d whole = _mm512_roundscale_pd(value, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512d fraction = _mm512_sub_pd(value, whole);
    const __m512i sign = _mm512_set1_epi64(static_cast<long long>(0x8000000000000000ull));
    const __m512d negated = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(fraction), sign));
    const __m512d x = _mm512_mul_pd(negated, _mm512_set1_pd(0.6931471805599453));
    __m512d series = _mm512_set1_pd(1.0 / 6227020800.0);
    for (double c : inverse_factorials) series = _mm512_add_pd(_mm512_set1_pd(c), _mm512_mul_pd(x, series));
    series = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(x, series));
    const __m512d down = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(whole), sign));
    const __m512d result = _mm512_scalef_pd(series, down);  // exact: a power-of-two scale
    _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(result));
  }
#endif
  for (; i < n; ++i) out[i] = static_cast<float>(exp2_negative(static_cast<double>(y[i])));
}

}  // namespace hanami

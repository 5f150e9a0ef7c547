// Per-synapse, per-section and per-neuron rules of the Hanami cycle.
//
// Every function here is small, branch-light and free of allocation so that the CPU kernels and the
// CUDA kernels call the very same code: the CPU tests then already exercise what the GPU runs.
// The pure-Python reference (hanami_torch/reference.py) spells out the same arithmetic with numpy
// float32 scalars, operation by operation; the build uses -ffp-contract=off so that no multiply-add
// is fused behind our back and both give bit-identical results.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define HANAMI_HD __host__ __device__ __forceinline__
#else
#define HANAMI_HD inline
#endif

namespace hanami {

// ---- constants (spec §2.1) -------------------------------------------------------------------
constexpr int kSynapsesPerSection = 63;
constexpr int kSectionsPerNeuron = 8;
constexpr int kNeuronsPerBlock = 64;
constexpr int kTargetBricks = 64;
constexpr int kLastSplitSlot = 61;        // slots 61 and 62 never split
constexpr float kReachCut = 0.01f;         // a walk goes on while the remaining potential is above this
constexpr float kLog2Slope = 1.4427f;      // Hanami's 1/ln 2 in the log2 derivative
constexpr uint8_t kEmptyTarget = 0xFF;     // an empty synapse slot
constexpr uint8_t kCounterStart = 5;       // reduction counter of a new synapse
constexpr uint8_t kCounterPersistent = 10; // counters never decay from here on
constexpr int kReductionInterval = 100;    // training steps between reductions

// brick kinds, as stored in brick_info[:, 2]
constexpr int kHidden = 0;
constexpr int kInput = 1;
constexpr int kOutput = 2;

// random streams (mirrors hanami_torch/rng.py)
constexpr uint32_t kStreamTargetBricks = 1;
constexpr uint32_t kStreamSynapse = 2;
constexpr uint32_t kStreamSection = 3;

// ---- counter-based randomness ------------------------------------------------------------------

// Hanami's pcg_hash (spec §4.4).
HANAMI_HD uint32_t pcg_hash(uint32_t x) {
  uint32_t state = x * 747796405u + 2891336453u;
  uint32_t word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// One 32-bit draw for the key (seed, stream, a, b, c): a pure function, so growth does not depend on
// the order in which threads or kernels happen to run.
HANAMI_HD uint32_t draw(uint64_t seed, uint32_t stream, uint64_t a, uint32_t b, uint32_t c) {
  uint32_t h = 0x2545F491u;
  h = pcg_hash(h ^ static_cast<uint32_t>(seed));
  h = pcg_hash(h ^ static_cast<uint32_t>(seed >> 32));
  h = pcg_hash(h ^ stream);
  h = pcg_hash(h ^ static_cast<uint32_t>(a));
  h = pcg_hash(h ^ static_cast<uint32_t>(a >> 32));
  h = pcg_hash(h ^ b);
  h = pcg_hash(h ^ c);
  return h;
}

// Magnitude of a new synapse's weight: Hanami draws u32 / RAND_MAX / 10, i.e. [0, 0.2) for the
// default init_scale of 0.2 (computed in double, rounded once).
HANAMI_HD float initial_weight(uint32_t magnitude_draw, uint32_t sign_draw, double init_scale) {
  const float magnitude =
      static_cast<float>(static_cast<double>(magnitude_draw) / 2147483647.0 * (init_scale * 0.5));
  return (sign_draw % 1000u < 500u) ? -magnitude : magnitude;
}

// ---- section walk rules (spec §4.3; borders stored as cumulative upper ends) ------------------
//
// A section's slot k covers the source-value interval [lower_k, upper_k) above the section's
// offset, with lower_k = upper_{k-1} (0 for k = 0); its border is upper_k - lower_k. Storing the
// upper ends instead of the borders makes every slot's remaining potential R_k = P' - lower_k
// independent of the slots before it: no serial float chain through the section.

// Remaining potential at a slot.
HANAMI_HD float remaining(float potential_above_offset, float lower) {
  return potential_above_offset - lower;
}

// A slot is reached while the remaining potential is above the 0.01 cut.
HANAMI_HD bool reached(float remaining_potential) { return remaining_potential > kReachCut; }

// What a reached synapse adds to its target: the full weight, or the covered fraction of it.
HANAMI_HD float contribution(float weight, float remaining_potential, float border) {
  return (remaining_potential < border) ? weight * (remaining_potential / border) : weight;
}

// Split rule: a synapse much wider than what reaches it gives its upper half to the next slot.
HANAMI_HD bool should_split(float border, float remaining_potential, int slot) {
  return slot < kLastSplitSlot && border > 2.0f * remaining_potential;
}

// New upper end of a split slot (the lower half stays with it).
HANAMI_HD float split_upper(float lower, float upper) {
  const float half = (upper - lower) * 0.5f;
  return upper - half;
}

// Offset of the section appended to a chain whose last section survived. Hanami's bug B2 counts
// the old offset twice (2o + sum of borders); compat mode keeps it, the default fixes it.
HANAMI_HD float chain_offset(float offset, float last_upper, bool compat) {
  return compat ? offset + (offset + last_upper) : offset + last_upper;
}

// ---- receptive fields (an option beyond Hanami) ---------------------------------------------
//
// The neurons of an input brick are the pixels of a rows x cols image (row-major), and the n
// blocks of a target brick lie row by row on a grid of ceil(sqrt(n)) columns over that image.
// Block (i, j) of a grid with R rows and C columns is the centre of a square field at
// ((i + 1/2) rows / R, (j + 1/2) cols / C); pixel (r, c), centred at (r + 1/2, c + 1/2), lies in
// the field when it is at most `radius` pixels from the centre in both directions. The tests
// work in whole numbers, scaled by 2R (2C), so that no rounding enters:
// |(2r + 1) R - (2i + 1) rows| <= 2 radius R.
HANAMI_HD int field_grid_cols(int32_t n_blocks) {
  int g = 1;
  while (g * g < n_blocks) ++g;
  return g;
}

HANAMI_HD bool field_holds(int64_t pixel_twice_scaled, int64_t centre_twice_scaled, double limit) {
  const int64_t d = pixel_twice_scaled - centre_twice_scaled;
  return static_cast<double>(d < 0 ? -d : d) <= limit;
}

// Target block (0..n_blocks-1) of a new section of input pixel `pixel`: the k-th of the blocks
// whose field holds the pixel, k = pick % their number; any block (pick % n_blocks) when none does.
HANAMI_HD int32_t field_block(int32_t pixel, int32_t n_blocks, int rows, int cols, float radius,
                              uint32_t pick) {
  const int grid_cols = field_grid_cols(n_blocks);
  const int grid_rows = (n_blocks + grid_cols - 1) / grid_cols;
  const int64_t r2 = int64_t(2 * (pixel / cols) + 1) * grid_rows;
  const int64_t c2 = int64_t(2 * (pixel % cols) + 1) * grid_cols;
  const double row_limit = 2.0 * static_cast<double>(radius) * static_cast<double>(grid_rows);
  const double col_limit = 2.0 * static_cast<double>(radius) * static_cast<double>(grid_cols);
  uint32_t count = 0;
  for (int32_t g = 0; g < n_blocks; ++g)
    count += field_holds(r2, int64_t(2 * (g / grid_cols) + 1) * rows, row_limit) &&
             field_holds(c2, int64_t(2 * (g % grid_cols) + 1) * cols, col_limit);
  if (count == 0) return int32_t(pick % uint32_t(n_blocks));
  uint32_t k = pick % count;
  for (int32_t g = 0; g < n_blocks; ++g) {
    if (field_holds(r2, int64_t(2 * (g / grid_cols) + 1) * rows, row_limit) &&
        field_holds(c2, int64_t(2 * (g % grid_cols) + 1) * cols, col_limit)) {
      if (k == 0) return g;
      --k;
    }
  }
  return 0;  // not reached
}

// ---- neuron rules (spec §4.5, §4.6, §5) -----------------------------------------------------------

// log2 and 2^-y in plain double arithmetic (range reduction + series), used instead of libm so
// that the C++, the CUDA and the pure-Python code compute bit-identical values, and fast (no call).
// Both are accurate to about 1e-15, far below the float32 the results are rounded to.
// frexp for positive normal doubles by reading the exponent bits (exact, no library call).
HANAMI_HD double mantissa_exponent(double a, int* exponent) {
  uint64_t bits;
  memcpy(&bits, &a, sizeof(bits));
  *exponent = static_cast<int>((bits >> 52) & 0x7FF) - 1022;
  bits = (bits & 0x800FFFFFFFFFFFFFull) | (uint64_t(1022) << 52);  // m in [0.5, 1)
  double m;
  memcpy(&m, &bits, sizeof(m));
  return m;
}

HANAMI_HD double log2_of(double a) {  // a >= 1 here (a = 1 + v, v >= 0)
  int exponent;
  double m = mantissa_exponent(a, &exponent);  // a = m * 2^exponent, m in [0.5, 1)
  if (m < 0.7071067811865476) {
    m = m * 2.0;
    exponent = exponent - 1;
  }
  const double s = (m - 1.0) / (m + 1.0);  // |s| <= 0.1716: ln m = 2 atanh(s)
  const double s2 = s * s;
  double series = 1.0 / 17.0;
  series = 1.0 / 15.0 + s2 * series;
  series = 1.0 / 13.0 + s2 * series;
  series = 1.0 / 11.0 + s2 * series;
  series = 1.0 / 9.0 + s2 * series;
  series = 1.0 / 7.0 + s2 * series;
  series = 1.0 / 5.0 + s2 * series;
  series = 1.0 / 3.0 + s2 * series;
  series = 1.0 + s2 * series;
  return static_cast<double>(exponent) + (2.0 * s * series) * 1.4426950408889634;
}

HANAMI_HD double exp2_negative(double y) {  // 2^-y for y >= 0
  const double whole = floor(y);
  const double x = -(y - whole) * 0.6931471805599453;  // 2^-f = e^x, x in (-0.694, 0]
  double series = 1.0 / 6227020800.0;                    // 1/13!
  const double inverse_factorials[12] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                         1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                         1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                         1.0 / 6.0,         1.0 / 2.0,        1.0};
  for (int i = 0; i < 12; ++i) series = inverse_factorials[i] + x * series;
  series = 1.0 + x * series;
  return ldexp(series, -static_cast<int>(whole));
}

// Hidden activation log2(1 + v), computed in double and rounded once.
HANAMI_HD float hidden_activation(float v) {
  return static_cast<float>(log2_of(static_cast<double>(v) + 1.0));
}

// Hidden neuron step (spec §4.5): the previous activation decays by the cooldown, input is let in
// only when the right-shifted refractory counter reaches zero, threshold 0, then log2(1 + v).
struct HiddenState {
  float potential;
  uint8_t refractory;
  bool active;
};

HANAMI_HD HiddenState hidden_step(float potential, uint8_t refractory, float input, float cooldown,
                                  uint8_t refractory_setting) {
  float p = potential / cooldown;
  uint8_t r = static_cast<uint8_t>(refractory >> 1);
  if (r == 0) {
    p = p + input;
    r = refractory_setting;
  }
  const bool active = p > 0.0f;
  return {active ? hidden_activation(p) : 0.0f, r, active};
}

// Output activation: sigmoid, except exactly 0 for an output that received nothing (spec §4.6).
HANAMI_HD float output_activation(float z) {
  return (z != 0.0f) ? static_cast<float>(1.0 / (1.0 + exp(-static_cast<double>(z)))) : 0.0f;
}

// Output delta of 0.5*(o - t)^2 through the sigmoid.
HANAMI_HD float output_delta(float o, float target) { return ((o - target) * o) * (1.0f - o); }

// Hidden delta: sum of the section slots times Hanami's log2 derivative 1.4427 * 0.5^y.
HANAMI_HD float hidden_delta(float slot_sum, float y) {
  const float derivative = static_cast<float>(exp2_negative(static_cast<double>(y)));
  return (slot_sum * kLog2Slope) * derivative;
}

// Sum of delta_target * weight over a section's reached synapses, in 16 interleaved partial sums
// (slot k goes to sum k % 16) added up pairwise at the end. The fixed order makes the value
// independent of the hardware; the interleaving lets it run as one vector add per 16 slots.
constexpr int kSumLanes = 16;

HANAMI_HD float lane_total(const float* lanes) {
  float half[8], quarter[4], pair[2];
  for (int i = 0; i < 8; ++i) half[i] = lanes[i] + lanes[i + 8];
  for (int i = 0; i < 4; ++i) quarter[i] = half[i] + half[i + 4];
  for (int i = 0; i < 2; ++i) pair[i] = quarter[i] + quarter[i + 2];
  return pair[0] + pair[1];
}

// Surrogate SGD step of Hanami: every reached synapse moves by lr * delta of its target.
HANAMI_HD float updated_weight(float weight, float target_delta, float learning_rate) {
  return weight - learning_rate * target_delta;
}

// Per-synapse Adagrad (an option beyond Hanami): the step shrinks with the synapse's own history
// of squared surrogate gradients, which acts as a learning-rate schedule for online learning.
constexpr float kAdagradEpsilon = 1e-8f;

HANAMI_HD float adagrad_weight(float weight, float* accum, float target_delta, float learning_rate) {
  const float sum = *accum + target_delta * target_delta;
  *accum = sum;
  return weight - (learning_rate * target_delta) / (sqrtf(sum) + kAdagradEpsilon);
}

// Reduction bookkeeping: a synapse is "useful" when its sign agrees with its target's activity.
HANAMI_HD uint8_t counted(uint8_t counter, float target_potential, float weight) {
  const bool useful = (target_potential > 0.0f) == (weight > 0.0f);
  return (counter < kCounterPersistent && useful) ? static_cast<uint8_t>(counter + 1) : counter;
}

// ---- value codes: raw readings in, network inputs out (docs/streams.md) -----------------------
//
// An input neuron of an `encoding: adaptive` brick does not take the raw reading as its
// potential. It keeps a range [lo, hi] that follows the 5 % and 95 % quantiles of the readings
// it has learned from, and codes a reading x as a position in that range:
//
//   u = (x - lo) / (hi - lo),   code = (clamp(u, -0.5, 1.5) + 0.75) * 10     in [2.5, 22.5]
//
// so every sensor, whatever its units, offset and sign, reaches the section walk on the same
// scale, and a broken reading a million times too large codes like a reading at the edge of the
// range. A reading of exactly 0 means "no reading": its neuron stays silent and its range does not
// move (this keeps MNIST's background pixels silent, as with raw values).
//
// The quantiles are tracked with bounded steps (stochastic quantile descent): each learned reading
// moves lo by step * (0.05 - [x < lo]) and hi by step * ([x > hi] - 0.05), with
// step = max(1/(n + 1), 0.01) * (hi - lo) after n readings. The first readings move the range
// fast (1/(n+1): a running mean of the early readings), later ones by at most 1 % of its width,
// so one reading, however large, can never move it by more than that. The first reading x opens
// the range at x -+ |x| / 16. Only + - * / and comparisons appear, each rounded once in float32,
// so the CPU, the GPU and the Python reference agree bit for bit.
//
// An output neuron of an `encoding: adaptive` brick tracks its targets the same way (zero is a
// target like any other there), learns 0.2 + 0.6 * clamp(u, -0.25, 1.25) in (0, 1), and its
// output is read back in the target's units (decode_output).
constexpr float kCodeQuantile = 0.05f;      // lo and hi follow the 5 % and 95 % quantiles
constexpr float kCodeRateFloor = 0.01f;     // a step is at least 1 % of the range width
constexpr float kCodeCountCap = 1024.0f;    // the count stops here (1/(n+1) is below the floor)
constexpr float kCodeOpening = 0.0625f;     // the first reading opens [x - |x|/16, x + |x|/16]
constexpr float kCodeLowClip = -0.5f;       // positions beyond half a range width are clipped
constexpr float kCodeHighClip = 1.5f;
constexpr float kCodeShift = 0.75f;         // (u + 0.75) * 10: the code of a reading is >= 2.5
constexpr float kCodeGain = 10.0f;
constexpr float kCodeMinWidth = 1e-30f;     // a range never collapses to zero width...
constexpr float kCodeRelativeWidth = 9.5367431640625e-07f;  // ...nor below 2^-20 of its magnitude
constexpr float kTargetLow = 0.2f;          // target code: 0.2 + 0.6 u, u clipped to [-0.25, 1.25]
constexpr float kTargetGain = 0.6f;
constexpr float kTargetLowClip = -0.25f;
constexpr float kTargetHighClip = 1.25f;
constexpr float kFloatMax = 3.40282347e+38f;

// encoding modes of a brick's neurons (input_encoding / target_encoding tensors)
constexpr uint8_t kEncodingRaw = 0;
constexpr uint8_t kEncodingAdaptive = 1;

// The tracked range of one neuron: how many readings it learned from (capped), lo and hi.
struct ValueRange {
  float count;
  float lo;
  float hi;
};

HANAMI_HD float clamp_float(float v, float low, float high) { return v < low ? low : (v > high ? high : v); }

// Width used for coding and steps: hi - lo, kept finite and away from zero.
HANAMI_HD float range_width(ValueRange r) {
  const float magnitude = fabsf(r.lo) > fabsf(r.hi) ? fabsf(r.lo) : fabsf(r.hi);
  float width = r.hi - r.lo;
  if (!(width <= kFloatMax)) width = kFloatMax;  // also catches an overflow to infinity
  const float floor_width = magnitude * kCodeRelativeWidth;
  if (width < floor_width) width = floor_width;
  return width < kCodeMinWidth ? kCodeMinWidth : width;
}

// Position of x in the range (0 at lo, 1 at hi), clipped to [low, high].
HANAMI_HD float range_position(ValueRange r, float x, float low, float high) {
  const float u = (x - r.lo) / range_width(r);
  return clamp_float(u, low, high);  // an infinite u (x - lo overflowed) clips too
}

// A range that has seen nothing opens around its first value.
HANAMI_HD ValueRange opened_range(ValueRange r, float x) {
  if (r.count > 0.0f) return r;
  const float half = fabsf(x) * kCodeOpening;
  return {0.0f, x - half, x + half};
}

// One learned value: the quantile steps described above.
HANAMI_HD ValueRange learned_range(ValueRange r, float x) {
  const float rate = 1.0f / (r.count + 1.0f);
  const float step = (rate > kCodeRateFloor ? rate : kCodeRateFloor) * range_width(r);
  const float lo = r.lo + step * (x < r.lo ? kCodeQuantile - 1.0f : kCodeQuantile);
  const float hi = r.hi + step * (x > r.hi ? 1.0f - kCodeQuantile : -kCodeQuantile);
  const float count = r.count < kCodeCountCap ? r.count + 1.0f : r.count;
  return {count, clamp_float(lo, -kFloatMax, kFloatMax), clamp_float(hi, -kFloatMax, kFloatMax)};
}

// Input code of a reading (0 for "no reading").
HANAMI_HD float input_code(ValueRange r, float x) {
  if (x == 0.0f) return 0.0f;
  return (range_position(r, x, kCodeLowClip, kCodeHighClip) + kCodeShift) * kCodeGain;
}

// What an adaptive output neuron learns for a target in the target's own units.
HANAMI_HD float target_code(ValueRange r, float target) {
  return kTargetLow + kTargetGain * range_position(r, target, kTargetLowClip, kTargetHighClip);
}

// An output read back in the target's units. An output that nothing reached (exactly 0) reads as
// the middle of the range: the network has no information, so it answers the typical value.
HANAMI_HD float decode_output(ValueRange r, float output) {
  if (output == 0.0f) return r.lo + 0.5f * (r.hi - r.lo);
  return r.lo + ((output - kTargetLow) / kTargetGain) * range_width(r);
}

// d code / d x of an input reading with the range left as it is (the true gradient of inference
// through the code): gain / width inside the clip, 0 outside, for "no reading" and for a range
// that has learned nothing yet (its code is the same 12.5 for every reading).
HANAMI_HD float input_code_slope(ValueRange r, float x) {
  if (x == 0.0f || r.count == 0.0f) return 0.0f;
  const float width = range_width(r);
  const float u = (x - r.lo) / width;
  return (u > kCodeLowClip && u < kCodeHighClip) ? kCodeGain / width : 0.0f;
}

// d decoded / d output (0 for an output that nothing reached, whose value is fixed).
HANAMI_HD float decode_slope(ValueRange r, float output) {
  return output == 0.0f ? 0.0f : range_width(r) / kTargetGain;
}

// One value through an encoding: the code the network sees, and the range after learning it
// (only when `learn`; raw neurons pass the value through). `is_target`: zero is a value, not
// "no reading", and the target code is used.
HANAMI_HD float encode_value(uint8_t mode, ValueRange* r, float x, bool learn, bool is_target) {
  if (mode != kEncodingAdaptive) return x;
  if (!is_target && x == 0.0f) return 0.0f;
  const ValueRange current = opened_range(*r, x);
  const float code = is_target ? target_code(current, x) : input_code(current, x);
  if (learn) *r = learned_range(current, x);
  return code;
}

}  // namespace hanami

// The value codes of adaptive input and output bricks (rules in rules.h), as loops that the CPU
// kernels (csrc/cpu/encode_cpu.cpp) and the CUDA kernels (csrc/cuda/encode_cuda.cu) both run.
//
// Every neuron's range depends only on its own column of values, learned in row order, so the
// columns are independent: the CPU splits them among threads, the GPU gives each its own thread.
// Neither changes any result.
#pragma once

#include <cstdint>

#include "rules.h"

namespace hanami {

HANAMI_HD ValueRange range_of(const float* ranges, int64_t c) {
  return {ranges[3 * c], ranges[3 * c + 1], ranges[3 * c + 2]};
}

// Codes of row `row`, columns [first, last): values, codes and slopes are row-major [rows, n];
// ranges is [n, 3] (count, lo, hi) and is updated in place when `learn`. `slopes` (may be null,
// never with `learn`) receives d code / d value of input codes. `trail` (may be null) is
// [rows, n, 3] and receives each column's range as it was before this row: what the network knew
// of the value's range when it computed the row's outputs, so that they are decoded with it.
HANAMI_HD void encode_row(int64_t row, int64_t first, int64_t last, int64_t n, const uint8_t* modes,
                          float* ranges, const float* values, float* codes, float* slopes, float* trail,
                          bool learn, bool targets) {
  for (int64_t c = first; c < last; ++c) {
    ValueRange r = range_of(ranges, c);
    if (trail != nullptr) {
      float* before = trail + 3 * (row * n + c);
      before[0] = r.count;
      before[1] = r.lo;
      before[2] = r.hi;
    }
    const float x = values[row * n + c];
    codes[row * n + c] = encode_value(modes[c], &r, x, learn, targets);
    if (slopes != nullptr)
      slopes[row * n + c] = modes[c] == kEncodingAdaptive ? input_code_slope(r, x) : 1.0f;
    if (learn) {
      ranges[3 * c] = r.count;
      ranges[3 * c + 1] = r.lo;
      ranges[3 * c + 2] = r.hi;
    }
  }
}

// Outputs of row `row`, columns [first, last), read back in the targets' units (raw columns as
// they are), with d decoded / d output in `slopes`. `ranges` is [n, 3] for every row, or
// [rows, n, 3] (a trail of encode_row) when `per_row`.
HANAMI_HD void decode_row(int64_t row, int64_t first, int64_t last, int64_t n, const uint8_t* modes,
                          const float* ranges, bool per_row, const float* outputs, float* decoded, float* slopes) {
  if (per_row) ranges += 3 * row * n;
  for (int64_t c = first; c < last; ++c) {
    const float o = outputs[row * n + c];
    const bool adaptive = modes[c] == kEncodingAdaptive;
    decoded[row * n + c] = adaptive ? decode_output(range_of(ranges, c), o) : o;
    slopes[row * n + c] = adaptive ? decode_slope(range_of(ranges, c), o) : 1.0f;
  }
}

}  // namespace hanami

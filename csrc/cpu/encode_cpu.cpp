// CPU kernels of encode_, encode and decode: threads take disjoint ranges of columns (neurons),
// each walks the rows in order, so the result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "../encode.h"
#include "../encode_args.h"

namespace hanami {
namespace {

// Columns per task: a task's ranges stay in L1 while it walks the rows.
constexpr int64_t kColumnGrain = 64;

void run_encode(const at::Tensor& modes, const at::Tensor& ranges, const at::Tensor& values, const at::Tensor& codes,
                float* slopes, float* trail, bool learn, bool targets) {
  const int64_t n = check_encode_arguments(modes, ranges, values, codes);
  HANAMI_CHECK(values.device().is_cpu(), "hanami: values must be on the CPU, got ", values.device());
  const int64_t rows = values.size(0);
  const uint8_t* mode = modes.data_ptr<uint8_t>();
  float* range = ranges.data_ptr<float>();
  const float* in = values.data_ptr<float>();
  float* out = codes.data_ptr<float>();
  // a few values are not worth waking the thread pool (learn_one, predict_one)
  const int64_t grain = rows * n < 4096 ? n : kColumnGrain;
  at::parallel_for(0, n, grain, [&](int64_t first, int64_t last) {
    for (int64_t row = 0; row < rows; ++row)
      encode_row(row, first, last, n, mode, range, in, out, slopes, trail, learn, targets);
  });
}

void encode_learn_cpu(const at::Tensor& modes, const at::Tensor& ranges, const at::Tensor& values,
                      const at::Tensor& codes, const at::Tensor& trail, bool learn, bool targets) {
  float* before = check_trail(trail, values) ? trail.data_ptr<float>() : nullptr;
  run_encode(modes, ranges, values, codes, nullptr, before, learn, targets);
}

std::tuple<at::Tensor, at::Tensor> encode_cpu(const at::Tensor& modes, const at::Tensor& ranges,
                                              const at::Tensor& values) {
  at::Tensor codes = at::empty_like(values), slopes = at::empty_like(values);
  run_encode(modes, ranges, values, codes, slopes.data_ptr<float>(), nullptr, false, false);
  return {codes, slopes};
}

std::tuple<at::Tensor, at::Tensor> decode_cpu(const at::Tensor& modes, const at::Tensor& ranges,
                                              const at::Tensor& outputs) {
  at::Tensor decoded = at::empty_like(outputs), slopes = at::empty_like(outputs);
  const bool per_row = ranges.dim() == 3;
  const int64_t n = check_encode_arguments(modes, ranges, outputs, decoded, per_row);
  HANAMI_CHECK(outputs.device().is_cpu(), "hanami: outputs must be on the CPU, got ", outputs.device());
  const uint8_t* mode = modes.data_ptr<uint8_t>();
  const float* range = ranges.data_ptr<float>();
  for (int64_t row = 0; row < outputs.size(0); ++row)
    decode_row(row, 0, n, n, mode, range, per_row, outputs.data_ptr<float>(), decoded.data_ptr<float>(),
               slopes.data_ptr<float>());
  return {decoded, slopes};
}

}  // namespace

TORCH_LIBRARY_IMPL(hanami, CPU, m) {
  m.impl("encode_", &encode_learn_cpu);
  m.impl("encode", &encode_cpu);
  m.impl("decode", &decode_cpu);
}

}  // namespace hanami

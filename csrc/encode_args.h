// Argument checks of the encode_ and decode ops, shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include "check.h"

namespace hanami {

// modes uint8 [n], ranges float32 [n, 3] (or [rows, n, 3] with `per_row`: decode with a trail),
// values float32 [rows, n], all on one device and contiguous. Returns n.
inline int64_t check_encode_arguments(const at::Tensor& modes, const at::Tensor& ranges, const at::Tensor& values,
                                      const at::Tensor& codes, bool per_row = false) {
  const c10::Device device = values.device();
  const at::Tensor* all[] = {&modes, &ranges, &values, &codes};
  const char* names[] = {"modes", "ranges", "values", "codes"};
  for (int i = 0; i < 4; ++i) {
    HANAMI_CHECK(all[i]->device() == device, "hanami: ", names[i], " is on ", all[i]->device(),
                 " but the values are on ", device);
    HANAMI_CHECK(all[i]->is_contiguous(), "hanami: ", names[i], " must be contiguous");
  }
  HANAMI_CHECK(modes.scalar_type() == at::kByte && modes.dim() == 1, "hanami: modes must be a uint8 [n] tensor");
  const int64_t n = modes.size(0);
  HANAMI_CHECK(values.scalar_type() == at::kFloat && values.dim() == 2 && values.size(1) == n,
               "hanami: values must be a float32 [rows, ", n, "] tensor, got ", values.sizes());
  if (per_row)
    HANAMI_CHECK(ranges.scalar_type() == at::kFloat && ranges.dim() == 3 && ranges.size(0) == values.size(0) &&
                     ranges.size(1) == n && ranges.size(2) == 3,
                 "hanami: ranges must be a float32 [", n, ", 3] tensor or one [", n, ", 3] per row");
  else
    HANAMI_CHECK(ranges.scalar_type() == at::kFloat && ranges.dim() == 2 && ranges.size(0) == n && ranges.size(1) == 3,
                 "hanami: ranges must be a float32 [", n, ", 3] tensor");
  HANAMI_CHECK(codes.scalar_type() == at::kFloat && codes.sizes() == values.sizes(),
               "hanami: codes must be a float32 tensor shaped like the values");
  return n;
}

// trail: empty (no trail) or float32 [rows, n, 3] beside the values. Returns whether there is one.
inline bool check_trail(const at::Tensor& trail, const at::Tensor& values) {
  if (trail.numel() == 0) return false;
  HANAMI_CHECK(trail.device() == values.device() && trail.is_contiguous() && trail.scalar_type() == at::kFloat &&
                   trail.dim() == 3 && trail.size(0) == values.size(0) && trail.size(1) == values.size(1) &&
                   trail.size(2) == 3,
               "hanami: trail must be empty or a contiguous float32 [rows, n, 3] tensor beside the values");
  return true;
}

}  // namespace hanami

// Checked raw views of the op arguments, shared by every CPU kernel file: the layout/state tensor
// lists become a ClusterView (cluster_state.h describes them), the config vector a Config.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "../check.h"
#include "../cluster_state.h"
#include "engine.h"

namespace hanami {

inline void check_tensor(const at::Tensor& t, at::ScalarType dtype, const char* name) {
  HANAMI_CHECK(t.device().is_cpu(), "hanami: ", name, " must be on the CPU, got ", t.device());
  HANAMI_CHECK(t.scalar_type() == dtype, "hanami: ", name, " must be ", dtype, ", got ",
              t.scalar_type());
  HANAMI_CHECK(t.is_contiguous(), "hanami: ", name, " must be contiguous");
}

template <typename T>
inline T* ptr(const at::Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

inline ClusterView make_view(const std::vector<at::Tensor>& layout, const std::vector<at::Tensor>& state) {
  HANAMI_CHECK(int(layout.size()) == kLayoutSize, "hanami: expected ", int(kLayoutSize),
              " layout tensors, got ", layout.size());
  HANAMI_CHECK(int(state.size()) == kStateSize, "hanami: expected ", int(kStateSize),
              " state tensors, got ", state.size());
  check_tensor(layout[kBrickInfo], at::kInt, "brick_info");
  check_tensor(layout[kBrickTargets], at::kInt, "brick_targets");
  check_tensor(layout[kBlockInfo], at::kInt, "block_info");
  const at::ScalarType types[kStateSize] = {
      at::kInt,  at::kFloat, at::kByte,  at::kByte, at::kFloat, at::kInt,
      at::kFloat, at::kByte, at::kInt,   at::kInt,  at::kByte,  at::kByte,
      at::kFloat, at::kFloat, at::kByte, at::kByte, at::kFloat, at::kLong};
  const char* names[kStateSize] = {"brick_grid", "potential", "active",     "refractory",
                                   "request",    "sec_block", "sec_offset", "sec_has_next",
                                   "sec_conn",   "sec_start", "sec_len",    "sec_cap",
                                   "syn_weight", "syn_upper", "syn_target", "syn_counter",
                                   "syn_accum",  "counters"};
  for (int i = 0; i < kStateSize; ++i) check_tensor(state[i], types[i], names[i]);

  ClusterView v;
  v.n_bricks = int(layout[kBrickInfo].size(0));
  v.n_blocks = int(layout[kBlockInfo].size(0));
  v.n_neurons = int(state[kPotential].numel());
  const int64_t n_sections = int64_t(v.n_neurons) * kSectionsPerNeuron;
  HANAMI_CHECK(layout[kBrickTargets].numel() == int64_t(v.n_bricks) * kTargetBricks,
              "hanami: brick_targets must be [bricks, 64]");
  for (int i : {kActive, kRefractory, kRequest})
    HANAMI_CHECK(state[i].numel() == v.n_neurons, "hanami: ", names[i], " must have one entry per neuron");
  for (int i : {kSecBlock, kSecOffset, kSecHasNext, kSecStart, kSecLen, kSecCap})
    HANAMI_CHECK(state[i].numel() == n_sections, "hanami: ", names[i],
                " must have 8 entries per neuron");
  v.capacity = state[kSynWeight].numel();
  for (int i : {kSynUpper, kSynTarget})
    HANAMI_CHECK(state[i].numel() == v.capacity, "hanami: synapse arena tensors differ in size");
  HANAMI_CHECK(state[kSynCounter].numel() == 0 || state[kSynCounter].numel() == v.capacity,
              "hanami: syn_counter must be empty or as large as the arena");
  HANAMI_CHECK(state[kSynAccum].numel() == 0 || state[kSynAccum].numel() == v.capacity,
              "hanami: syn_accum must be empty or as large as the arena");
  HANAMI_CHECK(state[kCounters].numel() >= kCountersSize, "hanami: counters too short");

  v.brick_info = ptr<int32_t>(layout[kBrickInfo]);
  v.brick_targets = ptr<int32_t>(layout[kBrickTargets]);
  v.block_info = ptr<int32_t>(layout[kBlockInfo]);
  v.brick_grid = ptr<int32_t>(state[kBrickGrid]);
  v.potential = ptr<float>(state[kPotential]);
  v.active = ptr<uint8_t>(state[kActive]);
  v.refractory = ptr<uint8_t>(state[kRefractory]);
  v.request = ptr<float>(state[kRequest]);
  v.sec_block = ptr<int32_t>(state[kSecBlock]);
  v.sec_offset = ptr<float>(state[kSecOffset]);
  v.sec_has_next = ptr<uint8_t>(state[kSecHasNext]);
  v.sec_conn = ptr<int32_t>(state[kSecConn]);
  v.sec_start = ptr<int32_t>(state[kSecStart]);
  v.sec_len = ptr<uint8_t>(state[kSecLen]);
  v.sec_cap = ptr<uint8_t>(state[kSecCap]);
  v.syn_weight = ptr<float>(state[kSynWeight]);
  v.syn_upper = ptr<float>(state[kSynUpper]);
  v.syn_target = ptr<uint8_t>(state[kSynTarget]);
  v.syn_counter = ptr<uint8_t>(state[kSynCounter]);
  v.syn_accum = ptr<float>(state[kSynAccum]);
  v.counters = ptr<int64_t>(state[kCounters]);
  return v;
}

inline Config make_config(const at::Tensor& config) {
  check_tensor(config, at::kDouble, "config");
  HANAMI_CHECK(config.numel() >= kConfigSize, "hanami: config too short");
  const double* c = config.data_ptr<double>();
  Config cfg;
  cfg.seed = uint64_t(c[kSeed]);
  cfg.compat = c[kCompat] != 0.0;
  cfg.cooldown = float(c[kCooldown]);
  cfg.refractory_time = uint8_t(c[kRefractoryTime]);
  cfg.reduction = c[kReduction] != 0.0;
  cfg.learning_rate = float(c[kLearningRate]);
  cfg.init_scale = c[kInitScale];
  cfg.threads = std::max(1, int(c[kThreads]));
  cfg.adagrad = c[kOptimizer] == 1.0;
  cfg.input_fan_in = std::clamp(int(c[kInputFanIn]), 1, kSectionsPerNeuron);
  cfg.field_rows = std::max(0, int(c[kFieldRows]));
  cfg.field_cols = std::max(0, int(c[kFieldCols]));
  cfg.field_radius = float(c[kFieldRadius]);
  cfg.gradient_rule = c[kLearningRule] == 1.0;
  return cfg;
}

inline void check_samples(const at::Tensor& t, at::ScalarType dtype, int64_t rows, int64_t cols,
                   const char* name) {
  check_tensor(t, dtype, name);
  HANAMI_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, "hanami: ", name,
              " must be [", rows, ", ", cols, "], got ", t.sizes());
}

inline int64_t io_width(const ClusterView& v, int kind) {
  int64_t n = 0;
  for (int b = 0; b < v.n_bricks; ++b)
    if (v.brick_kind(b) == kind) n += v.brick_count(b);
  return n;
}

// Widths of the input and output bricks and the number of samples of a call.
struct SampleShape {
  int64_t n_in, n_out, count;
};

// Checks `inputs` ([samples, n_inputs] float32) against the network.
inline SampleShape check_inputs(const ClusterView& view, const at::Tensor& inputs) {
  const int64_t n_in = io_width(view, kInput), n_out = io_width(view, kOutput);
  HANAMI_CHECK(inputs.dim() == 2, "hanami: inputs must be [samples, ", n_in, "]");
  const int64_t count = inputs.size(0);
  check_samples(inputs, at::kFloat, count, n_in, "inputs");
  return {n_in, n_out, count};
}

// The checks train_ and its portable twin make on their sample arguments; sets view.syn_pending.
inline SampleShape check_train_arguments(ClusterView& view, const at::Tensor& inputs,
                                        const at::Tensor& targets, const at::Tensor& outputs,
                                        int64_t start, const at::Tensor& pending,
                                        int64_t batch_size) {
  const SampleShape shape = check_inputs(view, inputs);
  const int64_t n_out = shape.n_out, count = shape.count;
  check_samples(targets, at::kFloat, count, n_out, "targets");
  check_samples(outputs, at::kFloat, count, n_out, "outputs");
  HANAMI_CHECK(start >= 0 && start <= count, "hanami: start out of range");
  HANAMI_CHECK(batch_size >= 1, "hanami: batch_size must be at least 1, got ", batch_size);
  check_tensor(pending, at::kFloat, "pending");
  HANAMI_CHECK(pending.dim() == 1 && (pending.numel() == 0 || pending.numel() == view.capacity),
              "hanami: pending must be empty (online learning) or as large as the arena (",
              view.capacity, " slots), got ", pending.sizes());
  HANAMI_CHECK(batch_size == 1 || pending.numel() > 0,
              "hanami: batch_size > 1 needs a pending tensor as large as the arena");
  view.syn_pending = ptr<float>(pending);
  return shape;
}

}  // namespace hanami

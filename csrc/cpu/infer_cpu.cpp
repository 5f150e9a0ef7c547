// CPU kernels of the pure ops: batched inference from rest (`infer`) and its true gradient
// (`infer_backward`). Nothing here grows or changes the network, so samples run in parallel.
//
// Per sample, the order of work is the engine's (engine.cpp): input bricks first, then the other
// bricks in template order; inside a brick its blocks in order, inside a block its sections in
// processing order, inside a section its slots in order. The outputs therefore equal, bit for bit,
// what the engine's request mode computes for the same sample from a network at rest.
//
// A source neuron feeds a brick only if its value was known when the brick was computed: input
// neurons always, other neurons only from bricks earlier in template order (a later brick is
// still at rest, value 0). The backward pass applies the same rule, so the gradient is exactly
// that of the function the forward pass computes (apart from the walk's cut-off at 0.01 and the
// slot borders, where the function has kinks).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../check.h"
#include "../cluster_state.h"
#include "../rules.h"
#include "engine.h"
#include "simd.h"
#include "tensor_views.h"

namespace hanami {
namespace {

// d log2(1 + p) / dp = 1 / ((1 + p) ln 2) = 2^-y / ln 2, with y = log2(1 + p).
constexpr double kInverseLn2 = 1.4426950408889634;

// The read-only structure both kernels walk: live sections grouped by target block, in the
// engine's processing order, and the brick of every neuron.
struct Structure {
  std::vector<int32_t> block_begin;     // [blocks + 1] into `sections`
  std::vector<int32_t> sections;        // live sections, grouped by target block
  std::vector<int32_t> neuron_brick;    // [neurons]
  std::vector<int32_t> known_before;    // [neurons]: first brick index that sees the neuron's value
};

Structure gather_structure(const ClusterView& v, bool compat) {
  Structure st;
  st.neuron_brick.assign(v.n_neurons, 0);
  for (int b = 0; b < v.n_bricks; ++b)
    for (int i = 0; i < v.brick_count(b); ++i) st.neuron_brick[v.brick_start(b) + i] = b;
  st.known_before.assign(v.n_neurons, 0);
  for (int32_t n = 0; n < v.n_neurons; ++n)
    st.known_before[n] = v.brick_kind(st.neuron_brick[n]) == kInput ? -1 : st.neuron_brick[n];
  const int64_t n_sections = int64_t(v.n_neurons) * kSectionsPerNeuron;
  std::vector<int32_t> count(v.n_blocks + 1, 0);
  for (int64_t s = 0; s < n_sections; ++s) {
    const int32_t g = v.sec_block[s];
    HANAMI_CHECK(g == kNoSection || g == kPendingSection || (g >= 0 && g < v.n_blocks),
                "hanami: sec_block holds an invalid block; the network state is corrupted");
    if (g >= 0) ++count[g + 1];
  }
  for (int g = 0; g < v.n_blocks; ++g) count[g + 1] += count[g];
  st.block_begin = count;
  st.sections.assign(count[v.n_blocks], 0);
  std::vector<int32_t> fill(count.begin(), count.end() - 1);
  for (int64_t s = 0; s < n_sections; ++s)  // ascending id: the default processing order
    if (v.sec_block[s] >= 0) st.sections[fill[v.sec_block[s]]++] = int32_t(s);
  if (compat)  // Hanami's connection-block order
    for (int g = 0; g < v.n_blocks; ++g)
      std::sort(st.sections.begin() + st.block_begin[g], st.sections.begin() + st.block_begin[g + 1],
                [&](int32_t a, int32_t b) { return v.sec_conn[a] < v.sec_conn[b]; });
  for (int64_t s : st.sections) {
    const int64_t end = int64_t(v.sec_start[s]) + v.sec_len[s];
    HANAMI_CHECK(v.sec_start[s] >= 0 && end <= v.capacity,
                "hanami: a section lies outside the synapse arena; the network state is corrupted");
  }
  return st;
}

// Value of `source` as seen by brick `b`: inputs are always known, other neurons only when their
// brick comes earlier in template order.
inline float source_value(const Structure& st, const float* values, int32_t source, int b) {
  return st.known_before[source] < b ? values[source] : 0.0f;
}

// Calls visit(k, fraction, border) for every reached slot of section s (fraction = r / border on
// the partly covered last slot, 1 otherwise), exactly like the engine's walk_infer.
template <typename Visit>
inline void walk(const ClusterView& v, int32_t s, float potential, Visit&& visit) {
  const float p_above = potential - v.sec_offset[s];
  const int64_t base = v.sec_start[s];
  const float* upper = v.syn_upper + base;
  const int len = v.sec_len[s];
  float lower = 0.0f;
  for (int k = 0; k < len; ++k) {
    const float r = remaining(p_above, lower);
    if (!reached(r)) return;
    const float u = upper[k];
    const float border = u - lower;
    if (r < border) {
      visit(base + k, true, r, border);
      return;
    }
    visit(base + k, false, r, border);
    lower = u;
  }
}

// Scratch space of one thread for infer_sample.
struct ForwardScratch {
  std::vector<int32_t> active;
  std::vector<float> sums;
  std::vector<int32_t> fired;
  std::vector<float> values;
};

// One sample's forward pass: fills values[neurons] and the sample's outputs. The walk is the
// engine's (infer_walk), so the sums come out bit-identical.
void infer_sample(const ClusterView& v, const Structure& st, const float* weights, bool no_holes,
                  const float* x, float* values, float* outputs, ForwardScratch& scratch) {
  std::fill_n(values, v.n_neurons, 0.0f);
  for (int b = 0; b < v.n_bricks; ++b)
    if (v.brick_kind(b) == kInput)
      std::copy_n(x + v.brick_io(b), v.brick_count(b), values + v.brick_start(b));
  auto& sums = scratch.sums;
  for (int b = 0; b < v.n_bricks; ++b) {
    const int kind = v.brick_kind(b);
    if (kind == kInput) continue;
    const int32_t start = v.brick_start(b), count = v.brick_count(b);
    const int32_t first_block = v.brick_first_block(b);
    sums.assign(size_t(v.brick_blocks(b)) * kNeuronsPerBlock, 0.0f);
    for (int g = first_block; g < first_block + v.brick_blocks(b); ++g) {
      float* block_sum = sums.data() + size_t(g - first_block) * kNeuronsPerBlock;
      // Only a few sources are active: list their sections without an unpredictable branch.
      auto& active = scratch.active;
      active.resize(size_t(st.block_begin[g + 1] - st.block_begin[g]));
      size_t n_active = 0;
      for (int32_t i = st.block_begin[g]; i < st.block_begin[g + 1]; ++i) {
        const int32_t s = st.sections[i];
        active[n_active] = s;
        n_active += source_value(st, values, s / kSectionsPerNeuron, b) > 0.0f;
      }
      for (size_t a = 0; a < n_active; ++a) {
        const int32_t s = active[a];
        const float p = values[s / kSectionsPerNeuron];
        const int64_t base = v.sec_start[s];
        infer_walk(v.syn_upper + base, v.syn_target + base, weights + base, v.sec_len[s],
                   p - v.sec_offset[s], true, no_holes, block_sum);
      }
    }
    if (kind == kOutput) {
      for (int i = 0; i < count; ++i) {
        const float o = output_activation(sums[i]);
        values[start + i] = o;
        outputs[v.brick_io(b) + i] = o;
      }
      continue;
    }
    // Hidden: from rest the decayed potential is 0 and the refractory counter lets the input in;
    // the neurons that fire get log2(1 + p), computed for all of them at once.
    auto& fired = scratch.fired;
    auto& batch = scratch.values;
    fired.clear();
    batch.clear();
    for (int i = 0; i < count; ++i) {
      const float p = 0.0f + sums[i];
      if (p > 0.0f) {
        fired.push_back(i);
        batch.push_back(p);
      }
    }
    const int n = int(fired.size());
    batch.resize(2 * size_t(n));
    hidden_activation_batch(batch.data(), batch.data() + n, n);
    for (int j = 0; j < n; ++j) values[start + fired[j]] = batch[n + j];
  }
}

// One sample's backward pass: adds to grad_weights, writes grad_x.
void backward_sample(const ClusterView& v, const Structure& st, const float* weights,
                     const float* values, const float* grad_out, float* grad_x,
                     float* grad_weights, std::vector<float>& dvalue, std::vector<float>& dz) {
  dvalue.assign(v.n_neurons, 0.0f);
  dz.assign(size_t(v.n_blocks) * kNeuronsPerBlock, 0.0f);
  for (int b = v.n_bricks - 1; b >= 0; --b) {
    const int kind = v.brick_kind(b);
    if (kind == kInput) continue;
    const int32_t start = v.brick_start(b), first_block = v.brick_first_block(b);
    float* brick_dz = dz.data() + size_t(first_block) * kNeuronsPerBlock;
    for (int i = 0; i < v.brick_count(b); ++i) {
      const float y = values[start + i];
      if (kind == kOutput) {
        const float g = grad_out[v.brick_io(b) + i];
        brick_dz[i] = y != 0.0f ? (g * y) * (1.0f - y) : 0.0f;
      } else {
        brick_dz[i] = y > 0.0f ? float(double(dvalue[start + i]) * kInverseLn2 *
                                       exp2_negative(double(y)))
                               : 0.0f;
      }
    }
    for (int g = first_block; g < first_block + v.brick_blocks(b); ++g) {
      const float* block_dz = dz.data() + size_t(g) * kNeuronsPerBlock;
      for (int32_t i = st.block_begin[g]; i < st.block_begin[g + 1]; ++i) {
        const int32_t s = st.sections[i];
        const int32_t source = s / kSectionsPerNeuron;
        const float p = source_value(st, values, source, b);
        if (!(p > 0.0f)) continue;
        float dsource = 0.0f;
        walk(v, s, p, [&](int64_t slot, bool partial, float r, float border) {
          const uint8_t t = v.syn_target[slot];
          if (t == kEmptyTarget) return;
          const float d = block_dz[t];
          if (partial) {
            grad_weights[slot] += d * (r / border);
            dsource += d * (weights[slot] / border);
          } else {
            grad_weights[slot] += d;
          }
        });
        dvalue[source] += dsource;
      }
    }
  }
  for (int b = 0; b < v.n_bricks; ++b)
    if (v.brick_kind(b) == kInput)
      std::copy_n(dvalue.data() + v.brick_start(b), v.brick_count(b), grad_x + v.brick_io(b));
}

void check_weights(const ClusterView& v, const at::Tensor& weights) {
  check_tensor(weights, at::kFloat, "weights");
  HANAMI_CHECK(weights.dim() == 1 && weights.numel() == v.capacity,
              "hanami: weights must be a float32 vector as large as the synapse arena (",
              v.capacity, "), got ", weights.sizes());
}

std::tuple<at::Tensor, at::Tensor> infer_cpu(at::TensorList layout, at::TensorList state,
                                             const at::Tensor& config, const at::Tensor& inputs,
                                             const at::Tensor& weights, int64_t n_outputs) {
  const ClusterView view = make_view(layout.vec(), state.vec());
  const Config cfg = make_config(config);
  const SampleShape shape = check_inputs(view, inputs);
  const int64_t n_in = shape.n_in, n_out = shape.n_out, count = shape.count;
  HANAMI_CHECK(n_outputs == n_out, "hanami: n_outputs is ", n_outputs, " but the output bricks have ",
              n_out, " neurons");
  check_weights(view, weights);
  at::Tensor outputs = at::zeros({count, n_out}, inputs.options());
  at::Tensor potentials = at::zeros({count, int64_t(view.n_neurons)}, inputs.options());
  if (count == 0) return {outputs, potentials};
  const Structure st = gather_structure(view, cfg.compat);
  const float* x = inputs.data_ptr<float>();
  const float* w = weights.data_ptr<float>();
  float* out = outputs.data_ptr<float>();
  float* values = potentials.data_ptr<float>();
  // Without reduction an empty slot can only be a section's last one (see fast_prefix).
  const bool no_holes = !cfg.reduction;
  at::parallel_for(0, count, 16, [&](int64_t lo, int64_t hi) {
    ForwardScratch scratch;
    for (int64_t i = lo; i < hi; ++i)
      infer_sample(view, st, w, no_holes, x + i * n_in, values + i * view.n_neurons,
                   out + i * n_out, scratch);
  });
  return {outputs, potentials};
}

std::tuple<at::Tensor, at::Tensor> infer_backward_cpu(
    at::TensorList layout, at::TensorList state, const at::Tensor& config, const at::Tensor& inputs,
    const at::Tensor& weights, const at::Tensor& potentials, const at::Tensor& grad_outputs) {
  const ClusterView view = make_view(layout.vec(), state.vec());
  const Config cfg = make_config(config);
  const SampleShape shape = check_inputs(view, inputs);
  const int64_t n_in = shape.n_in, n_out = shape.n_out, count = shape.count;
  check_samples(potentials, at::kFloat, count, view.n_neurons, "potentials");
  check_samples(grad_outputs, at::kFloat, count, n_out, "grad_outputs");
  check_weights(view, weights);
  at::Tensor grad_inputs = at::zeros({count, n_in}, inputs.options());
  at::Tensor grad_weights = at::zeros({view.capacity}, weights.options());
  if (count == 0) return {grad_inputs, grad_weights};
  const Structure st = gather_structure(view, cfg.compat);
  const float* w = weights.data_ptr<float>();
  const float* values = potentials.data_ptr<float>();
  const float* g_out = grad_outputs.data_ptr<float>();
  float* g_in = grad_inputs.data_ptr<float>();

  // Every thread sums its samples' weight gradients privately; the partial sums are added in
  // thread order (so the result depends on the number of threads only in its last bits).
  const int threads = std::max(1, std::min<int>(at::get_num_threads(), int((count + 15) / 16)));
  std::vector<std::vector<float>> partial(threads);
  at::parallel_for(0, threads, 1, [&](int64_t t_lo, int64_t t_hi) {
    for (int64_t t = t_lo; t < t_hi; ++t) {
      const int64_t lo = count * t / threads, hi = count * (t + 1) / threads;
      std::vector<float>& gw = partial[t];
      gw.assign(view.capacity, 0.0f);
      std::vector<float> dvalue, dz;
      for (int64_t i = lo; i < hi; ++i)
        backward_sample(view, st, w, values + i * view.n_neurons, g_out + i * n_out,
                        g_in + i * n_in, gw.data(), dvalue, dz);
    }
  });
  float* gw = grad_weights.data_ptr<float>();
  for (const auto& part : partial)
    for (int64_t k = 0; k < view.capacity; ++k) gw[k] += part[k];
  return {grad_inputs, grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(hanami, CPU, m) {
  m.impl("infer", &infer_cpu);
  m.impl("infer_backward", &infer_backward_cpu);
}

}  // namespace hanami

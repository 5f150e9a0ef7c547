// CUDA entries of the hanami ops: argument checks, the plan (which sections feed which brick) and
// the kernel launches of csrc/cuda/infer_cuda.cu and csrc/cuda/train_cuda.cu (train_, compact_);
// predict_ says clearly that the GPU does not have it yet. Compiled by the C++ compiler (only in
// CUDA builds), so that every error is raised outside nvcc-compiled code.
//
// Each infer/infer_backward call makes one small device-to-host copy (the brick table and the
// plan's error flags): it gives the host the input and output widths to check and allocate, and
// reports a corrupted network as an error instead of a wild memory access.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <tuple>

#include "../check.h"
#include "../cluster_state.h"
#include "../encode_args.h"
#include "../rules.h"
#include "encode_cuda.cuh"
#include "kernels.cuh"
#include "train_cuda.cuh"

namespace hanami {
namespace {

void check_tensor(const at::Tensor& t, at::ScalarType dtype, const char* name, const c10::Device& device) {
  HANAMI_CHECK(t.device() == device, "hanami: ", name, " is on ", t.device(), " but the inputs are on ",
              device, "; keep the cluster and its inputs on one device (cluster.to(\"", device, "\"))");
  HANAMI_CHECK(t.scalar_type() == dtype, "hanami: ", name, " must be ", dtype, ", got ", t.scalar_type());
  HANAMI_CHECK(t.is_contiguous(), "hanami: ", name, " must be contiguous");
}

// Names of the state tensors, for error messages (cluster_state.h has their meaning).
const char* const kStateNames[kStateSize] = {
    "brick_grid", "potential",  "active",     "refractory", "request",    "sec_block",
    "sec_offset", "sec_has_next", "sec_conn", "sec_start",  "sec_len",    "sec_cap",
    "syn_weight", "syn_upper",  "syn_target", "syn_counter", "syn_accum", "counters"};

// Number, dtype, device and contiguity of the layout and state tensors and the config, and the
// shapes of the brick and block tables.
void check_tensor_lists(at::TensorList layout, at::TensorList state, const at::Tensor& config,
                        const c10::Device& device) {
  HANAMI_CHECK(int(layout.size()) == kLayoutSize, "hanami: expected ", int(kLayoutSize),
              " layout tensors, got ", layout.size());
  HANAMI_CHECK(int(state.size()) == kStateSize, "hanami: expected ", int(kStateSize),
              " state tensors, got ", state.size());
  check_tensor(layout[kBrickInfo], at::kInt, "brick_info", device);
  check_tensor(layout[kBrickTargets], at::kInt, "brick_targets", device);
  check_tensor(layout[kBlockInfo], at::kInt, "block_info", device);
  const at::ScalarType types[kStateSize] = {
      at::kInt,  at::kFloat, at::kByte, at::kByte,  at::kFloat, at::kInt,  at::kFloat, at::kByte, at::kInt,
      at::kInt,  at::kByte,  at::kByte, at::kFloat, at::kFloat, at::kByte, at::kByte,  at::kFloat, at::kLong};
  for (int i = 0; i < kStateSize; ++i) check_tensor(state[i], types[i], kStateNames[i], device);
  check_tensor(config, at::kDouble, "config", device);
  const at::Tensor& brick_info = layout[kBrickInfo];
  const at::Tensor& block_info = layout[kBlockInfo];
  HANAMI_CHECK(brick_info.dim() == 2 && brick_info.size(1) == 5 && brick_info.size(0) >= 1,
              "hanami: brick_info must be [bricks, 5]");
  HANAMI_CHECK(block_info.dim() == 2 && block_info.size(1) == 3, "hanami: block_info must be [blocks, 3]");
}

// Checks the brick table and the network-check flags (copied to the host together, the flags
// after the table) and returns the input and output widths.
void check_brick_table(const int32_t* h, int n_bricks, int64_t n_neurons, int n_blocks, int64_t* n_in,
                       int64_t* n_out) {
  *n_in = 0;
  *n_out = 0;
  const int32_t flag = h[n_bricks * 5];
  HANAMI_CHECK(!(flag & cuda::kBadBlock), "hanami: sec_block holds an invalid block; the network state is corrupted");
  HANAMI_CHECK(!(flag & cuda::kBadBlockInfo), "hanami: block_info is inconsistent; the network layout is corrupted");
  HANAMI_CHECK(!(flag & cuda::kBadRange),
              "hanami: a section lies outside the synapse arena; the network state is corrupted");
  int64_t next = 0, blocks = 0;
  for (int b = 0; b < n_bricks; ++b) {
    const int32_t* info = h + b * 5;
    HANAMI_CHECK(info[0] == next && info[1] >= 0 && info[2] >= kHidden && info[2] <= kOutput && info[4] == blocks,
                "hanami: brick_info row ", b, " is inconsistent; the network layout is corrupted");
    next += info[1];
    blocks += (info[1] + kNeuronsPerBlock - 1) / kNeuronsPerBlock;
    if (info[2] == kInput) *n_in += info[1];
    if (info[2] == kOutput) *n_out += info[1];
  }
  HANAMI_CHECK(next == n_neurons && blocks == n_blocks,
              "hanami: brick_info does not describe the network's neurons and blocks");
  for (int b = 0; b < n_bricks; ++b) {
    const int32_t* info = h + b * 5;
    const int64_t width = info[2] == kInput ? *n_in : info[2] == kOutput ? *n_out : 0;
    HANAMI_CHECK(info[2] == kHidden || (info[3] >= 0 && info[3] + int64_t(info[1]) <= width),
                "hanami: brick_info row ", b, " has an input/output offset out of range");
  }
}

// The checked network and its plan; the tensors keep the plan's device memory alive.
struct Plan {
  cuda::Network net;
  int64_t capacity = 0;
  int64_t n_in = 0, n_out = 0;
  at::Tensor begin, records, offsets;
};

// `check_arguments` runs as soon as the input and output widths are known, before the plan's
// sort and kernels: every argument error is raised while no plan work is in flight.
Plan make_plan(at::TensorList layout, at::TensorList state, const at::Tensor& config,
               const c10::Device& device, const std::function<void(Plan&)>& check_arguments) {
  check_tensor_lists(layout, state, config, device);

  const at::Tensor& brick_info = layout[kBrickInfo];
  const at::Tensor& block_info = layout[kBlockInfo];
  const int n_bricks = int(brick_info.size(0));
  const int n_blocks = int(block_info.size(0));
  const int64_t n_neurons = state[kPotential].numel();
  HANAMI_CHECK(n_neurons < (int64_t(1) << 31) / kSectionsPerNeuron, "hanami: too many neurons");
  const int64_t n_sections = n_neurons * kSectionsPerNeuron;
  for (int i : {kSecBlock, kSecOffset, kSecStart, kSecLen})
    HANAMI_CHECK(state[i].numel() == n_sections, "hanami: ", kStateNames[i], " must have 8 entries per neuron");
  Plan plan;
  plan.capacity = state[kSynWeight].numel();
  HANAMI_CHECK(state[kSynUpper].numel() == plan.capacity && state[kSynTarget].numel() == plan.capacity,
              "hanami: synapse arena tensors differ in size");
  HANAMI_CHECK(plan.capacity < (int64_t(1) << 31), "hanami: the synapse arena exceeds 2**31 slots");

  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto int_options = brick_info.options();
  at::Tensor keys = at::empty({n_sections}, int_options);
  at::Tensor flags = at::zeros({1}, int_options);
  C10_CUDA_CHECK(cuda::launch_plan_keys(
      state[kSecBlock].data_ptr<int32_t>(), state[kSecStart].data_ptr<int32_t>(),
      state[kSecLen].data_ptr<uint8_t>(), brick_info.data_ptr<int32_t>(), n_bricks,
      block_info.data_ptr<int32_t>(), n_blocks, int(n_neurons), n_sections, plan.capacity,
      keys.data_ptr<int32_t>(), flags.data_ptr<int32_t>(), stream));
  // the only copy to the host: the brick table and the plan's error flags, together
  const at::Tensor host = at::cat({brick_info.reshape({-1}), flags}).cpu();
  const int32_t* h = host.data_ptr<int32_t>();
  check_brick_table(h, n_bricks, n_neurons, n_blocks, &plan.n_in, &plan.n_out);

  plan.net.n_neurons = int(n_neurons);
  check_arguments(plan);

  // sections grouped by the brick they feed (stable: ascending section id inside a brick)
  auto [sorted_keys, order] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  plan.begin = at::searchsorted(sorted_keys, at::arange(n_bricks + 1, int_options), /*out_int32=*/true,
                                /*right=*/false);
  plan.records = at::empty({std::max<int64_t>(n_sections, 1), 4}, int_options);
  plan.offsets = at::empty({std::max<int64_t>(n_sections, 1)}, state[kSecOffset].options());
  C10_CUDA_CHECK(cuda::launch_plan_records(
      sorted_keys.data_ptr<int32_t>(), order.data_ptr<int64_t>(), n_bricks, n_sections,
      state[kSecBlock].data_ptr<int32_t>(), state[kSecStart].data_ptr<int32_t>(),
      state[kSecLen].data_ptr<uint8_t>(), state[kSecOffset].data_ptr<float>(),
      block_info.data_ptr<int32_t>(), plan.records.data_ptr<int32_t>(), plan.offsets.data_ptr<float>(),
      stream));

  plan.net.brick_info = brick_info.data_ptr<int32_t>();
  plan.net.brick_begin = plan.begin.data_ptr<int32_t>();
  plan.net.n_bricks = n_bricks;
  plan.net.records = plan.records.data_ptr<int32_t>();
  plan.net.offsets = plan.offsets.data_ptr<float>();
  plan.net.upper = state[kSynUpper].data_ptr<float>();
  plan.net.targets = state[kSynTarget].data_ptr<uint8_t>();
  return plan;
}

void check_weights(Plan& plan, const at::Tensor& weights, const c10::Device& device) {
  check_tensor(weights, at::kFloat, "weights", device);
  HANAMI_CHECK(weights.dim() == 1 && weights.numel() == plan.capacity,
              "hanami: weights must be a float32 vector as large as the synapse arena (", plan.capacity,
              "), got ", weights.sizes());
  plan.net.weights = weights.data_ptr<float>();
}

void check_samples(const at::Tensor& t, int64_t rows, int64_t cols, const char* name, const c10::Device& device) {
  check_tensor(t, at::kFloat, name, device);
  HANAMI_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, "hanami: ", name, " must be [", rows,
              ", ", cols, "], got ", t.sizes());
}

c10::Device device_of_inputs(const at::Tensor& inputs) {
  HANAMI_CHECK(inputs.is_cuda(), "hanami: inputs must be on a CUDA device here, got ", inputs.device(),
              "; keep the cluster and its inputs on one device");
  return inputs.device();
}

// Thread blocks for a batch: enough to fill the GPU many times over, each looping over samples.
int grid_for(int64_t count, const c10::Device& device) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device.index()));
  return int(std::max<int64_t>(1, std::min<int64_t>(count, int64_t(sms) * 32)));
}

std::tuple<at::Tensor, at::Tensor> infer_cuda(at::TensorList layout, at::TensorList state,
                                              const at::Tensor& config, const at::Tensor& inputs,
                                              const at::Tensor& weights, int64_t n_outputs) {
  const c10::Device device = device_of_inputs(inputs);
  const int64_t count = inputs.dim() == 2 ? inputs.size(0) : 0;
  Plan plan = make_plan(layout, state, config, device, [&](Plan& p) {
    HANAMI_CHECK(n_outputs == p.n_out, "hanami: n_outputs is ", n_outputs, " but the output bricks have ",
                p.n_out, " neurons");
    HANAMI_CHECK(inputs.dim() == 2, "hanami: inputs must be [samples, ", p.n_in, "]");
    check_samples(inputs, count, p.n_in, "inputs", device);
    check_weights(p, weights, device);
  });
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor outputs = at::zeros({count, plan.n_out}, inputs.options());
  at::Tensor potentials = at::empty({count, int64_t(plan.net.n_neurons)}, inputs.options());
  C10_CUDA_CHECK(cuda::launch_infer(plan.net, inputs.data_ptr<float>(), plan.n_in, outputs.data_ptr<float>(),
                                    plan.n_out, potentials.data_ptr<float>(), count, grid_for(count, device),
                                    c10::cuda::getCurrentCUDAStream()));
  return {outputs, potentials};
}

std::tuple<at::Tensor, at::Tensor> infer_backward_cuda(at::TensorList layout, at::TensorList state,
                                                       const at::Tensor& config, const at::Tensor& inputs,
                                                       const at::Tensor& weights, const at::Tensor& potentials,
                                                       const at::Tensor& grad_outputs) {
  const c10::Device device = device_of_inputs(inputs);
  const int64_t count = inputs.dim() == 2 ? inputs.size(0) : 0;
  Plan plan = make_plan(layout, state, config, device, [&](Plan& p) {
    HANAMI_CHECK(inputs.dim() == 2, "hanami: inputs must be [samples, ", p.n_in, "]");
    check_samples(inputs, count, p.n_in, "inputs", device);
    check_samples(potentials, count, p.net.n_neurons, "potentials", device);
    check_samples(grad_outputs, count, p.n_out, "grad_outputs", device);
    check_weights(p, weights, device);
  });
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor grad_inputs = at::zeros({count, plan.n_in}, inputs.options());
  at::Tensor grad_weights = at::zeros({plan.capacity}, weights.options());
  const int grid = grid_for(count, device);
  const bool shared = int64_t(plan.net.n_neurons) * int64_t(sizeof(float)) <= cuda::kMaxSharedBytes;
  at::Tensor scratch =
      shared ? at::Tensor() : at::empty({int64_t(grid), int64_t(plan.net.n_neurons)}, inputs.options());
  C10_CUDA_CHECK(cuda::launch_infer_backward(
      plan.net, potentials.data_ptr<float>(), grad_outputs.data_ptr<float>(), plan.n_out,
      grad_inputs.data_ptr<float>(), plan.n_in, grad_weights.data_ptr<float>(),
      shared ? nullptr : scratch.data_ptr<float>(), count, grid, c10::cuda::getCurrentCUDAStream()));
  return {grad_inputs, grad_weights};
}

// ---- learning: the portable train step (csrc/cuda/train_cuda.cu) ------------------------------

// The cluster's tensors as the portable step sees them, checked like the CPU kernels check them,
// plus the network checks of the plan (launch_plan_keys), so that a corrupted network is an error
// instead of wild writes. One small device-to-host copy (brick table, the check's flags, config)
// before the kernel; none inside it.
struct Learning {
  portable::TrainNet net;
  int64_t n_in = 0, n_out = 0;
  bool compat = false;
  at::Tensor keys, flags;
};

Learning learning_view(at::TensorList layout, at::TensorList state, const at::Tensor& config,
                       const c10::Device& device) {
  check_tensor_lists(layout, state, config, device);
  HANAMI_CHECK(config.numel() >= kConfigSize, "hanami: config too short");

  const at::Tensor& brick_info = layout[kBrickInfo];
  const at::Tensor& block_info = layout[kBlockInfo];
  const int n_bricks = int(brick_info.size(0));
  const int n_blocks = int(block_info.size(0));
  HANAMI_CHECK(layout[kBrickTargets].numel() == int64_t(n_bricks) * kTargetBricks,
              "hanami: brick_targets must be [bricks, 64]");
  const int64_t n_neurons = state[kPotential].numel();
  HANAMI_CHECK(n_neurons < (int64_t(1) << 31) / kSectionsPerNeuron, "hanami: too many neurons");
  const int64_t n_sections = n_neurons * kSectionsPerNeuron;
  for (int i : {kActive, kRefractory, kRequest})
    HANAMI_CHECK(state[i].numel() == n_neurons, "hanami: ", kStateNames[i], " must have one entry per neuron");
  for (int i : {kSecBlock, kSecOffset, kSecHasNext, kSecStart, kSecLen, kSecCap})
    HANAMI_CHECK(state[i].numel() == n_sections, "hanami: ", kStateNames[i], " must have 8 entries per neuron");
  const int64_t capacity = state[kSynWeight].numel();
  HANAMI_CHECK(state[kSynUpper].numel() == capacity && state[kSynTarget].numel() == capacity,
              "hanami: synapse arena tensors differ in size");
  HANAMI_CHECK(capacity < (int64_t(1) << 31), "hanami: the synapse arena exceeds 2**31 slots");
  HANAMI_CHECK(state[kSynCounter].numel() == 0 || state[kSynCounter].numel() == capacity,
              "hanami: syn_counter must be empty or as large as the arena");
  HANAMI_CHECK(state[kSynAccum].numel() == 0 || state[kSynAccum].numel() == capacity,
              "hanami: syn_accum must be empty or as large as the arena");
  HANAMI_CHECK(state[kCounters].numel() >= kCountersSize, "hanami: counters too short");

  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  Learning learning;
  learning.keys = at::empty({std::max<int64_t>(n_sections, 1)}, brick_info.options());
  learning.flags = at::zeros({1}, brick_info.options());
  C10_CUDA_CHECK(cuda::launch_plan_keys(
      state[kSecBlock].data_ptr<int32_t>(), state[kSecStart].data_ptr<int32_t>(),
      state[kSecLen].data_ptr<uint8_t>(), brick_info.data_ptr<int32_t>(), n_bricks,
      block_info.data_ptr<int32_t>(), n_blocks, int(n_neurons), n_sections, capacity,
      learning.keys.data_ptr<int32_t>(), learning.flags.data_ptr<int32_t>(), stream));
  const at::Tensor host_config = config.cpu();
  const at::Tensor host = at::cat({brick_info.reshape({-1}), learning.flags}).cpu();
  const int32_t* h = host.data_ptr<int32_t>();
  const double* c = host_config.data_ptr<double>();
  check_brick_table(h, n_bricks, n_neurons, n_blocks, &learning.n_in, &learning.n_out);
  learning.compat = c[kCompat] != 0.0;
  HANAMI_CHECK(c[kReduction] == 0.0 || state[kSynCounter].numel() == capacity,
              "hanami: reduction needs syn_counter as large as the arena");
  HANAMI_CHECK(c[kOptimizer] != 1.0 || state[kSynAccum].numel() == capacity,
              "hanami: the Adagrad optimizer needs syn_accum as large as the arena");

  portable::TrainNet& net = learning.net;
  net.n_bricks = n_bricks;
  net.n_neurons = int(n_neurons);
  net.n_blocks = n_blocks;
  net.brick_info = brick_info.data_ptr<int32_t>();
  net.brick_targets = layout[kBrickTargets].data_ptr<int32_t>();
  net.block_info = block_info.data_ptr<int32_t>();
  net.potential = state[kPotential].data_ptr<float>();
  net.active = state[kActive].data_ptr<uint8_t>();
  net.refractory = state[kRefractory].data_ptr<uint8_t>();
  net.sec_block = state[kSecBlock].data_ptr<int32_t>();
  net.sec_offset = state[kSecOffset].data_ptr<float>();
  net.sec_has_next = state[kSecHasNext].data_ptr<uint8_t>();
  net.sec_start = state[kSecStart].data_ptr<int32_t>();
  net.sec_len = state[kSecLen].data_ptr<uint8_t>();
  net.sec_cap = state[kSecCap].data_ptr<uint8_t>();
  net.syn_weight = capacity ? state[kSynWeight].data_ptr<float>() : nullptr;
  net.syn_upper = capacity ? state[kSynUpper].data_ptr<float>() : nullptr;
  net.syn_target = capacity ? state[kSynTarget].data_ptr<uint8_t>() : nullptr;
  net.syn_counter = state[kSynCounter].numel() ? state[kSynCounter].data_ptr<uint8_t>() : nullptr;
  net.syn_accum = state[kSynAccum].numel() ? state[kSynAccum].data_ptr<float>() : nullptr;
  net.capacity = capacity;
  net.counters = state[kCounters].data_ptr<int64_t>();
  return learning;
}

// Scratch of the portable step, from PyTorch's caching allocator on the cluster's device.
at::Tensor learning_scratch(const portable::TrainNet& net, const at::Tensor& like) {
  return at::empty({portable::scratch_bytes(net.n_neurons, net.n_blocks, net.n_bricks, net.capacity)},
                   like.options().dtype(at::kByte));
}

void train_cuda(at::TensorList layout, at::TensorList state, const at::Tensor& config, const at::Tensor& inputs,
                const at::Tensor& targets, const at::Tensor& outputs, int64_t start, const at::Tensor& pending,
                int64_t batch_size) {
  const c10::Device device = device_of_inputs(inputs);
  Learning learning = learning_view(layout, state, config, device);
  HANAMI_CHECK(!learning.compat, "hanami: compat mode learns on the CPU only: move the cluster there "
              "(cluster.cpu()), learn, then cluster.to(\"cuda\")");
  HANAMI_CHECK(inputs.dim() == 2, "hanami: inputs must be [samples, ", learning.n_in, "]");
  const int64_t count = inputs.size(0);
  check_samples(inputs, count, learning.n_in, "inputs", device);
  check_samples(targets, count, learning.n_out, "targets", device);
  check_samples(outputs, count, learning.n_out, "outputs", device);
  HANAMI_CHECK(start >= 0 && start <= count, "hanami: start out of range");
  HANAMI_CHECK(batch_size >= 1, "hanami: batch_size must be at least 1, got ", batch_size);
  check_tensor(pending, at::kFloat, "pending", device);
  HANAMI_CHECK(pending.dim() == 1 && (pending.numel() == 0 || pending.numel() == learning.net.capacity),
              "hanami: pending must be empty (online learning) or as large as the arena (",
              learning.net.capacity, " slots), got ", pending.sizes());
  HANAMI_CHECK(batch_size == 1 || pending.numel() > 0,
              "hanami: batch_size > 1 needs a pending tensor as large as the arena");
  learning.net.syn_pending = pending.numel() ? pending.data_ptr<float>() : nullptr;
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor scratch = learning_scratch(learning.net, inputs);
  C10_CUDA_CHECK(cuda::launch_train(learning.net, config.data_ptr<double>(), scratch.data_ptr(),
                                    inputs.data_ptr<float>(), learning.n_in, targets.data_ptr<float>(),
                                    learning.n_out, outputs.data_ptr<float>(), start, count, batch_size,
                                    c10::cuda::getCurrentCUDAStream()));
}

void compact_cuda(at::TensorList layout, at::TensorList state, const at::Tensor& config, int64_t slack) {
  HANAMI_CHECK(slack >= 1 && slack <= 63, "hanami: slack must be in 1..63");
  HANAMI_CHECK(!config.is_cpu(), "hanami: config is on the CPU but the cluster's tensors are on the GPU; "
              "keep the cluster on one device");
  const c10::Device device = config.device();
  Learning learning = learning_view(layout, state, config, device);
  HANAMI_CHECK(!learning.compat, "hanami: compat mode learns on the CPU only: compact it there (cluster.cpu())");
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor scratch = learning_scratch(learning.net, config);
  C10_CUDA_CHECK(cuda::launch_compact(learning.net, scratch.data_ptr(), int(slack),
                                      c10::cuda::getCurrentCUDAStream()));
}

void predict_cuda(at::TensorList layout, at::TensorList state, const at::Tensor& config, const at::Tensor& inputs,
                  const at::Tensor& outputs) {
  const c10::Device device = device_of_inputs(inputs);
  Learning learning = learning_view(layout, state, config, device);
  HANAMI_CHECK(inputs.dim() == 2, "hanami: inputs must be [samples, ", learning.n_in, "]");
  const int64_t count = inputs.size(0);
  check_samples(inputs, count, learning.n_in, "inputs", device);
  check_samples(outputs, count, learning.n_out, "outputs", device);
  if (learning.compat) {  // compat mode processes a block's sections in connection-slot order
    HANAMI_CHECK(state[kSecConn].numel() == state[kSecBlock].numel(),
                "hanami: compat mode needs sec_conn as large as sec_block");
    learning.net.sec_conn = state[kSecConn].data_ptr<int32_t>();
  }
  if (count == 0) return;
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor scratch = learning_scratch(learning.net, inputs);
  C10_CUDA_CHECK(cuda::launch_predict(learning.net, config.data_ptr<double>(), scratch.data_ptr(),
                                      inputs.data_ptr<float>(), learning.n_in, outputs.data_ptr<float>(),
                                      learning.n_out, count, c10::cuda::getCurrentCUDAStream()));
}

void run_encode_cuda(const at::Tensor& modes, const at::Tensor& ranges, const at::Tensor& values,
                     const at::Tensor& codes, float* slopes, float* trail, bool learn, bool targets) {
  const int64_t n = check_encode_arguments(modes, ranges, values, codes);
  HANAMI_CHECK(values.is_cuda(), "hanami: values must be on a CUDA device, got ", values.device());
  const c10::cuda::CUDAGuard guard(values.device());
  C10_CUDA_CHECK(cuda::launch_encode(values.size(0), n, modes.data_ptr<uint8_t>(), ranges.data_ptr<float>(),
                                     values.data_ptr<float>(), codes.data_ptr<float>(), slopes, trail, learn, targets,
                                     c10::cuda::getCurrentCUDAStream()));
}

void encode_learn_cuda(const at::Tensor& modes, const at::Tensor& ranges, const at::Tensor& values,
                       const at::Tensor& codes, const at::Tensor& trail, bool learn, bool targets) {
  float* before = check_trail(trail, values) ? trail.data_ptr<float>() : nullptr;
  run_encode_cuda(modes, ranges, values, codes, nullptr, before, learn, targets);
}

std::tuple<at::Tensor, at::Tensor> encode_cuda(const at::Tensor& modes, const at::Tensor& ranges,
                                               const at::Tensor& values) {
  at::Tensor codes = at::empty_like(values), slopes = at::empty_like(values);
  run_encode_cuda(modes, ranges, values, codes, slopes.data_ptr<float>(), nullptr, false, false);
  return {codes, slopes};
}

std::tuple<at::Tensor, at::Tensor> decode_cuda(const at::Tensor& modes, const at::Tensor& ranges,
                                               const at::Tensor& outputs) {
  at::Tensor decoded = at::empty_like(outputs), slopes = at::empty_like(outputs);
  const bool per_row = ranges.dim() == 3;
  const int64_t n = check_encode_arguments(modes, ranges, outputs, decoded, per_row);
  HANAMI_CHECK(outputs.is_cuda(), "hanami: outputs must be on a CUDA device, got ", outputs.device());
  const c10::cuda::CUDAGuard guard(outputs.device());
  C10_CUDA_CHECK(cuda::launch_decode(outputs.size(0), n, modes.data_ptr<uint8_t>(), ranges.data_ptr<float>(), per_row,
                                     outputs.data_ptr<float>(), decoded.data_ptr<float>(), slopes.data_ptr<float>(),
                                     c10::cuda::getCurrentCUDAStream()));
  return {decoded, slopes};
}

}  // namespace

TORCH_LIBRARY_IMPL(hanami, CUDA, m) {
  m.impl("encode_", &encode_learn_cuda);
  m.impl("encode", &encode_cuda);
  m.impl("decode", &decode_cuda);
  m.impl("infer", &infer_cuda);
  m.impl("infer_backward", &infer_backward_cuda);
  m.impl("train_", &train_cuda);
  m.impl("predict_", &predict_cuda);
  m.impl("compact_", &compact_cuda);
}

}  // namespace hanami

// The portable train step (csrc/portable/train_step.h) on the CPU, as the test-only ops
// hanami::train_portable_ and hanami::predict_portable_ (the schemas of train_ and predict_ plus
// a schedule): tests/test_portable_train.py checks that they grow, learn and predict bit for bit
// what the engine's ops do, so that the GPU, which runs the same code on a thread block
// (csrc/cuda/train_cuda.cu), is checked on every machine.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "../check.h"
#include "../cluster_state.h"
#include "../portable/train_step.h"
#include "tensor_views.h"

namespace hanami {
namespace {

// The portable step's teams on the CPU. SerialTeam: one thread runs every item of a phase, in
// ascending or in descending order. ThreadTeam: a few threads run the step together, like the
// GPU's thread block (items dealt out by rank, a barrier for sync, atomic adds). Every schedule
// must grow what the engine grows.
struct SerialTeam {
  bool descending = false;
  bool leader() const { return true; }
  void sync() const {}
  template <class F>
  void for_each(int64_t n, F item) const {
    if (descending)
      for (int64_t i = n - 1; i >= 0; --i) item(i);
    else
      for (int64_t i = 0; i < n; ++i) item(i);
  }
  template <typename T>
  T add(T* at, T amount) const {
    const T old = *at;
    *at = T(old + amount);
    return old;
  }
};

struct ThreadTeam {
  int rank = 0;
  int size = 1;
  std::barrier<>* barrier = nullptr;
  bool leader() const { return rank == 0; }
  void sync() const { barrier->arrive_and_wait(); }
  template <class F>
  void for_each(int64_t n, F item) const {
    for (int64_t i = rank; i < n; i += size) item(i);
  }
  template <typename T>
  T add(T* at, T amount) const {
    return std::atomic_ref<T>(*at).fetch_add(amount);
  }
};

constexpr int kTestThreads = 4;
enum Schedule : int64_t { kAscending = 0, kDescending = 1, kThreads = 2 };

// Runs step(team) on the schedule's team(s); with threads, every member must return the same.
template <class Step>
auto run_schedule(int64_t schedule, Step step) {
  HANAMI_CHECK(schedule >= kAscending && schedule <= kThreads,
              "hanami: schedule must be 0 (ascending), 1 (descending) or 2 (threads)");
  if (schedule != kThreads) return step(SerialTeam{schedule == kDescending});
  std::barrier<> barrier(kTestThreads);
  using Result = decltype(step(SerialTeam{}));
  std::vector<Result> results(kTestThreads);
  std::vector<std::thread> threads;
  for (int r = 1; r < kTestThreads; ++r)
    threads.emplace_back([&, r] { results[r] = step(ThreadTeam{r, kTestThreads, &barrier}); });
  results[0] = step(ThreadTeam{0, kTestThreads, &barrier});
  for (auto& t : threads) t.join();
  for (const Result& r : results) HANAMI_CHECK(r == results[0], "hanami: the team's members disagree");
  return results[0];
}

portable::TrainNet portable_net(const ClusterView& v) {
  portable::TrainNet net;
  net.n_bricks = v.n_bricks;
  net.n_neurons = v.n_neurons;
  net.n_blocks = v.n_blocks;
  net.brick_info = v.brick_info;
  net.brick_targets = v.brick_targets;
  net.block_info = v.block_info;
  net.potential = v.potential;
  net.active = v.active;
  net.refractory = v.refractory;
  net.sec_block = v.sec_block;
  net.sec_offset = v.sec_offset;
  net.sec_has_next = v.sec_has_next;
  net.sec_start = v.sec_start;
  net.sec_len = v.sec_len;
  net.sec_cap = v.sec_cap;
  net.syn_weight = v.syn_weight;
  net.syn_upper = v.syn_upper;
  net.syn_target = v.syn_target;
  net.syn_counter = v.syn_counter;
  net.syn_accum = v.syn_accum;
  net.syn_pending = v.syn_pending;
  net.capacity = v.capacity;
  net.counters = v.counters;
  return net;
}

void train_portable_cpu(at::TensorList layout, at::TensorList state, const at::Tensor& config,
                        const at::Tensor& inputs, const at::Tensor& targets, const at::Tensor& outputs,
                        int64_t start, const at::Tensor& pending, int64_t batch_size, int64_t schedule) {
  ClusterView view = make_view(layout.vec(), state.vec());
  const Config cfg = make_config(config);
  HANAMI_CHECK(!cfg.compat, "hanami: the portable train step has no compat mode (compat mode learns "
              "with the CPU engine only)");
  const SampleShape shape =
      check_train_arguments(view, inputs, targets, outputs, start, pending, batch_size);
  HANAMI_CHECK(view.syn_counter != nullptr || !cfg.reduction,
              "hanami: reduction needs syn_counter as large as the arena");
  HANAMI_CHECK(view.syn_accum != nullptr || !cfg.adagrad,
              "hanami: the Adagrad optimizer needs syn_accum as large as the arena");
  const portable::TrainNet net = portable_net(view);
  const portable::TrainConfig step_config = portable::config_from(config.data_ptr<double>());
  at::Tensor scratch = at::empty(
      {portable::scratch_bytes(view.n_neurons, view.n_blocks, view.n_bricks, view.capacity)},
      inputs.options().dtype(at::kByte));
  portable::Scratch sc = portable::carve_scratch(scratch.data_ptr(), view.n_neurons, view.n_blocks,
                                                 view.n_bricks, view.capacity);
  const float* x = inputs.data_ptr<float>();
  const float* y = targets.data_ptr<float>();
  float* out = outputs.data_ptr<float>();
  view.counters[kProcessed] = run_schedule(schedule, [&](const auto& team) {
    portable::Scratch member_scratch = sc;  // every member carves the same buffer, as on the GPU
    return portable::train(team, net, step_config, member_scratch, x, shape.n_in, y, shape.n_out, out, start,
                           shape.count, batch_size);
  });
}

void predict_portable_cpu(at::TensorList layout, at::TensorList state, const at::Tensor& config,
                          const at::Tensor& inputs, const at::Tensor& outputs, int64_t schedule) {
  ClusterView view = make_view(layout.vec(), state.vec());
  const Config cfg = make_config(config);
  const SampleShape shape = check_inputs(view, inputs);
  check_samples(outputs, at::kFloat, shape.count, shape.n_out, "outputs");
  portable::TrainNet net = portable_net(view);
  if (cfg.compat) net.sec_conn = view.sec_conn;
  at::Tensor scratch = at::empty(
      {portable::scratch_bytes(view.n_neurons, view.n_blocks, view.n_bricks, view.capacity)},
      inputs.options().dtype(at::kByte));
  portable::Scratch sc = portable::carve_scratch(scratch.data_ptr(), view.n_neurons, view.n_blocks,
                                                 view.n_bricks, view.capacity);
  const portable::TrainConfig step_config = portable::config_from(config.data_ptr<double>());
  run_schedule(schedule, [&](const auto& team) {
    portable::Scratch member_scratch = sc;
    portable::predict(team, net, step_config, member_scratch, inputs.data_ptr<float>(), shape.n_in,
                      outputs.data_ptr<float>(), shape.n_out, shape.count);
    return 0;
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(hanami, CPU, m) {
  m.impl("train_portable_", &train_portable_cpu);
  m.impl("predict_portable_", &predict_portable_cpu);
}

}  // namespace hanami

// CPU kernels of the hanami ops: argument checks at the boundary, then the engine.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../check.h"
#include "../cluster_state.h"
#include "engine.h"
#include "tensor_views.h"

namespace hanami {
namespace {

void train_cpu(at::TensorList layout, at::TensorList state, const at::Tensor& config,
               const at::Tensor& inputs, const at::Tensor& targets, const at::Tensor& outputs,
               int64_t start, const at::Tensor& pending, int64_t batch_size) {
  ClusterView view = make_view(layout.vec(), state.vec());
  const Config cfg = make_config(config);
  const SampleShape shape =
      check_train_arguments(view, inputs, targets, outputs, start, pending, batch_size);
  Engine engine(view, cfg);
  view.counters[kProcessed] =
      engine.train(inputs.data_ptr<float>(), shape.n_in, targets.data_ptr<float>(), shape.n_out,
                   outputs.data_ptr<float>(), start, shape.count, batch_size);
}

void predict_cpu(at::TensorList layout, at::TensorList state, const at::Tensor& config,
                 const at::Tensor& inputs, const at::Tensor& outputs) {
  const ClusterView view = make_view(layout.vec(), state.vec());
  const Config cfg = make_config(config);
  const SampleShape shape = check_inputs(view, inputs);
  const int64_t n_in = shape.n_in, n_out = shape.n_out, count = shape.count;
  check_samples(outputs, at::kFloat, count, n_out, "outputs");
  Engine engine(view, cfg);
  engine.predict(inputs.data_ptr<float>(), n_in, outputs.data_ptr<float>(), n_out, count);
}

void compact_cpu(at::TensorList layout, at::TensorList state, const at::Tensor& config,
                 int64_t slack) {
  HANAMI_CHECK(slack >= 1 && slack <= 63, "hanami: slack must be in 1..63");
  const ClusterView view = make_view(layout.vec(), state.vec());
  Engine engine(view, make_config(config));
  view.counters[kProcessed] = engine.compact(int(slack)) ? 1 : 0;
}

}  // namespace

TORCH_LIBRARY_IMPL(hanami, CPU, m) {
  m.impl("train_", &train_cpu);
  m.impl("predict_", &predict_cpu);
  m.impl("compact_", &compact_cpu);
}

}  // namespace hanami

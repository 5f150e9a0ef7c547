// Online learning (train_) and compaction (compact_) on the GPU: the portable step of
// csrc/portable/train_step.h, the very code that tests/test_portable_train.py checks bit for bit
// against the CPU engine, run by ONE thread (<<<1, 1>>>) that loops over the samples.
//
// Correctness first: the cycle of a sample is sequential by definition, and one thread reproduces
// the CPU's order of every float operation, so the GPU grows the identical network (arena layout
// included). It is slow: docs/gpu.md describes how the walks and the backward rule are to be
// spread over a thread block. The host side (checks, scratch from PyTorch's allocator, launches)
// is in ops_cuda.cpp.
#include "../cluster_state.h"
#include "train_cuda.cuh"

namespace hanami {
namespace cuda {
namespace {

__global__ void train_kernel(portable::TrainNet net, const double* config, void* scratch,
                             const float* inputs, int64_t n_inputs, const float* targets,
                             int64_t n_outputs, float* outputs, int64_t start, int64_t count,
                             int64_t batch_size) {
  const portable::TrainConfig cfg = portable::config_from(config);
  portable::Scratch sc =
      portable::carve_scratch(scratch, net.n_neurons, net.n_blocks, net.n_bricks, net.capacity);
  net.counters[kProcessed] = portable::train(net, cfg, sc, inputs, n_inputs, targets, n_outputs,
                                             outputs, start, count, batch_size);
}

__global__ void compact_kernel(portable::TrainNet net, void* scratch, int slack) {
  portable::Scratch sc =
      portable::carve_scratch(scratch, net.n_neurons, net.n_blocks, net.n_bricks, net.capacity);
  net.counters[kProcessed] = portable::compact(net, sc, slack) ? 1 : 0;
}

}  // namespace

cudaError_t launch_train(const portable::TrainNet& net, const double* config, void* scratch,
                         const float* inputs, int64_t n_inputs, const float* targets, int64_t n_outputs,
                         float* outputs, int64_t start, int64_t count, int64_t batch_size,
                         cudaStream_t stream) {
  train_kernel<<<1, 1, 0, stream>>>(net, config, scratch, inputs, n_inputs, targets, n_outputs, outputs,
                                    start, count, batch_size);
  return cudaGetLastError();
}

cudaError_t launch_compact(const portable::TrainNet& net, void* scratch, int slack, cudaStream_t stream) {
  compact_kernel<<<1, 1, 0, stream>>>(net, scratch, slack);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace hanami

// Online learning (train_), request mode (predict_) and compaction (compact_) on the GPU: the portable step of
// csrc/portable/train_step.h, the very code that tests/test_portable_train.py checks bit for bit
// against the CPU engine (in both item orders), run by ONE thread block that loops over the
// samples on the current stream.
//
// The cycle of a sample is sequential by definition; the block spreads each phase of it over its
// threads (one item per section walk, per target neuron, per reached section in the backward
// rule, ...), with __syncthreads() between phases and the serial parts (slot allocation, sorted
// growth) done by thread 0. Neuron inputs are summed per target neuron in the engine's order, so
// the GPU grows the identical network, arena layout included. The host side (checks, scratch from
// PyTorch's allocator, launches) is in ops_cuda.cpp.
#include "../cluster_state.h"
#include "train_cuda.cuh"

namespace hanami {
namespace cuda {
namespace {

constexpr int kTeamThreads = 512;

// The portable step's team: the threads of one block. Host-callable stubs keep the
// __host__ __device__ templates of train_step.h well-formed; only the device side ever runs.
struct BlockTeam {
  __host__ __device__ bool leader() const {
#if defined(__CUDA_ARCH__)
    return threadIdx.x == 0;
#else
    return true;
#endif
  }
  __host__ __device__ void sync() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
  template <class F>
  __host__ __device__ void for_each(int64_t n, F item) const {
#if defined(__CUDA_ARCH__)
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) item(i);
#else
    for (int64_t i = 0; i < n; ++i) item(i);
#endif
  }
  __host__ __device__ int32_t add(int32_t* at, int32_t amount) const {
#if defined(__CUDA_ARCH__)
    return atomicAdd(at, amount);
#else
    const int32_t old = *at;
    *at += amount;
    return old;
#endif
  }
  __host__ __device__ int64_t add(int64_t* at, int64_t amount) const {
#if defined(__CUDA_ARCH__)
    return int64_t(atomicAdd(reinterpret_cast<unsigned long long*>(at), static_cast<unsigned long long>(amount)));
#else
    const int64_t old = *at;
    *at += amount;
    return old;
#endif
  }
};

__global__ void __launch_bounds__(kTeamThreads)
    train_kernel(portable::TrainNet net, const double* config, void* scratch, const float* inputs,
                 int64_t n_inputs, const float* targets, int64_t n_outputs, float* outputs, int64_t start,
                 int64_t count, int64_t batch_size) {
  const portable::TrainConfig cfg = portable::config_from(config);
  portable::Scratch sc =
      portable::carve_scratch(scratch, net.n_neurons, net.n_blocks, net.n_bricks, net.capacity);
  const BlockTeam team;
  const int64_t done = portable::train(team, net, cfg, sc, inputs, n_inputs, targets, n_outputs, outputs,
                                       start, count, batch_size);
  if (team.leader()) net.counters[kProcessed] = done;
}

__global__ void __launch_bounds__(kTeamThreads)
    predict_kernel(portable::TrainNet net, const double* config, void* scratch, const float* inputs,
                   int64_t n_inputs, float* outputs, int64_t n_outputs, int64_t count) {
  portable::Scratch sc =
      portable::carve_scratch(scratch, net.n_neurons, net.n_blocks, net.n_bricks, net.capacity);
  portable::predict(BlockTeam(), net, portable::config_from(config), sc, inputs, n_inputs, outputs, n_outputs,
                    count);
}

__global__ void __launch_bounds__(kTeamThreads)
    compact_kernel(portable::TrainNet net, void* scratch, int slack) {
  portable::Scratch sc =
      portable::carve_scratch(scratch, net.n_neurons, net.n_blocks, net.n_bricks, net.capacity);
  const BlockTeam team;
  const bool packed = portable::compact_call(team, net, sc, slack);
  if (team.leader()) net.counters[kProcessed] = packed ? 1 : 0;
}

}  // namespace

cudaError_t launch_train(const portable::TrainNet& net, const double* config, void* scratch,
                         const float* inputs, int64_t n_inputs, const float* targets, int64_t n_outputs,
                         float* outputs, int64_t start, int64_t count, int64_t batch_size,
                         cudaStream_t stream) {
  train_kernel<<<1, kTeamThreads, 0, stream>>>(net, config, scratch, inputs, n_inputs, targets, n_outputs,
                                               outputs, start, count, batch_size);
  return cudaGetLastError();
}

cudaError_t launch_predict(const portable::TrainNet& net, const double* config, void* scratch,
                           const float* inputs, int64_t n_inputs, float* outputs, int64_t n_outputs,
                           int64_t count, cudaStream_t stream) {
  predict_kernel<<<1, kTeamThreads, 0, stream>>>(net, config, scratch, inputs, n_inputs, outputs, n_outputs,
                                                 count);
  return cudaGetLastError();
}

cudaError_t launch_compact(const portable::TrainNet& net, void* scratch, int slack, cudaStream_t stream) {
  compact_kernel<<<1, kTeamThreads, 0, stream>>>(net, scratch, slack);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace hanami

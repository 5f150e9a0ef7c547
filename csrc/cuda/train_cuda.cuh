// Launchers of the learning kernels (csrc/cuda/train_cuda.cu) for the host code in ops_cuda.cpp.
// Like kernels.cuh: plain types only, and the launchers never throw (they return the launch's
// CUDA error); every check and error is the host code's.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../portable/train_step.h"

namespace hanami {
namespace cuda {

// train_ over samples [start, count): the portable step (csrc/portable/train_step.h) on one thread
// block, sample after sample, with no host round trip; counters[kProcessed] receives the first
// sample not done. config: the float64 config vector on the device; scratch:
// portable::scratch_bytes(...) bytes on the device.
cudaError_t launch_train(const portable::TrainNet& net, const double* config, void* scratch,
                         const float* inputs, int64_t n_inputs, const float* targets, int64_t n_outputs,
                         float* outputs, int64_t start, int64_t count, int64_t batch_size,
                         cudaStream_t stream);

// predict_ over samples [0, count): request mode (no growth, neuron state carried over) on one
// thread block. net.sec_conn is set in compat mode (its processing order), else null.
cudaError_t launch_predict(const portable::TrainNet& net, const double* config, void* scratch,
                           const float* inputs, int64_t n_inputs, float* outputs, int64_t n_outputs,
                           int64_t count, cudaStream_t stream);

// compact_: counters[kProcessed] = 1 when the arena was packed with `slack` spare slots per
// section, 0 when that does not fit (nothing changed).
cudaError_t launch_compact(const portable::TrainNet& net, void* scratch, int slack, cudaStream_t stream);

}  // namespace cuda
}  // namespace hanami

// Launchers of the CUDA kernels (csrc/cuda/infer_cuda.cu) for the host code in ops_cuda.cpp.
//
// Only plain types cross this boundary, and the launchers never throw: they return the CUDA error
// of the launch, and the host code (compiled by the C++ compiler) does every check and raises
// every error, so no exception ever unwinds through nvcc-compiled host code.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace hanami {
namespace cuda {

constexpr int kThreads = 256;  // per thread block, i.e. per sample in flight
// A sample's neuron values (or gradients) stay in shared memory up to this size; larger networks
// keep them in global memory.
constexpr int64_t kMaxSharedBytes = 96 * 1024;

// error flags of the plan (checked on the host before any walk runs)
constexpr int32_t kBadBlock = 1;      // sec_block names no block
constexpr int32_t kBadBlockInfo = 2;  // block_info names a brick or neuron range that does not exist
constexpr int32_t kBadRange = 4;      // a section's slots lie outside the synapse arena

// The network as the walk kernels see it. records: int32 [sections feeding bricks, 4], per live
// section: source neuron, first neuron of the target block, first arena slot, slots in use |
// (neurons in the target block << 8), grouped by target brick; brick_begin: [bricks + 1].
struct Network {
  const int32_t* brick_info = nullptr;  // [bricks, 5] (cluster_state.h)
  const int32_t* brick_begin = nullptr;
  int n_bricks = 0;
  const int32_t* records = nullptr;
  const float* offsets = nullptr;  // sec_offset of each record
  const float* upper = nullptr;    // syn_upper
  const float* weights = nullptr;  // the weights argument (stands in for syn_weight)
  const uint8_t* targets = nullptr;  // syn_target
  int n_neurons = 0;
};

// keys[s]: the brick section s feeds, or n_bricks when it feeds none; flags |= kBad*.
cudaError_t launch_plan_keys(const int32_t* sec_block, const int32_t* sec_start, const uint8_t* sec_len,
                             const int32_t* brick_info, int n_bricks, const int32_t* block_info,
                             int n_blocks, int n_neurons, int64_t n_sections, int64_t capacity,
                             int32_t* keys, int32_t* flags, cudaStream_t stream);

// records/offsets of the sections in sorted-key order (entries whose key is n_bricks are left alone)
cudaError_t launch_plan_records(const int32_t* sorted_keys, const int64_t* order, int n_bricks,
                                int64_t n_sections, const int32_t* sec_block, const int32_t* sec_start,
                                const uint8_t* sec_len, const float* sec_offset,
                                const int32_t* block_info, int32_t* records, float* offsets,
                                cudaStream_t stream);

// Forward pass of `count` samples: outputs [count, n_out], potentials [count, n_neurons].
cudaError_t launch_infer(const Network& net, const float* x, int64_t n_in, float* out, int64_t n_out,
                         float* potentials, int64_t count, int grid, cudaStream_t stream);

// Backward pass: grad_in [count, n_in] (written), grad_weights [capacity] (added to; zeroed by the
// caller). scratch: [grid, n_neurons] floats when the network is too large for shared memory, else
// unused.
cudaError_t launch_infer_backward(const Network& net, const float* potentials, const float* grad_out,
                                  int64_t n_out, float* grad_in, int64_t n_in, float* grad_weights,
                                  float* scratch, int64_t count, int grid, cudaStream_t stream);

}  // namespace cuda
}  // namespace hanami

// CUDA kernels of the pure ops: batched inference from rest (`infer`) and its true gradient
// (`infer_backward`). The host side (argument checks, the plan's sort, registration) is in
// ops_cuda.cpp; kernels.cuh is the boundary.
//
// The arithmetic per synapse and per neuron is the CPU's (rules.h, and csrc/cpu/infer_cpu.cpp for
// the order of operations); only the parallel decomposition is new:
//
//   * A plan, built on the GPU for every call: the live sections that feed each brick (input
//     sources always, other sources only from bricks earlier in template order, as on the CPU),
//     sorted by target brick, as packed 16-byte records. No host copy of the network is needed.
//   * One thread block per sample (a grid-stride loop over the batch). The sample's neuron values
//     live in shared memory (in global memory when the network has too many neurons for it).
//     Bricks run in template order; the block's warps take the brick's sections 32 at a time,
//     test their sources' activity with one ballot, and walk each active section together: lane
//     k handles slot k. Storing cumulative upper ends makes every slot's remaining potential
//     independent of the slots before it, so the lanes decide "reached and fully covered" at
//     once and one more ballot finds where the serial walk would stop. Contributions go to the
//     target sums with shared-memory atomics.
//   * The backward pass runs the bricks in reverse: the targets' deltas replace their summed
//     upstream gradients in shared memory, the walks are repeated, weight gradients are added to
//     global memory with atomics (summed over the batch) and source gradients (only the partly
//     covered last slot has one) with shared-memory atomics.
//
// Results equal the CPU's up to float summation order: the atomics add a neuron's inputs (and a
// weight's per-sample gradients) in whatever order the threads arrive, so the last bits can
// differ from the CPU and from one run to the next. docs/gpu.md gives the tolerances the tests use.
#include <cstdint>

#include "../cluster_state.h"
#include "../rules.h"
#include "kernels.cuh"

namespace hanami {
namespace cuda {
namespace {

constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xFFFFFFFFu;
// d log2(1 + p) / dp = 2^-y / ln 2 with y = log2(1 + p) (as in csrc/cpu/infer_cpu.cpp).
constexpr double kInverseLn2 = 1.4426950408889634;

// A live section as the walks need it (see Network::records in kernels.cuh).
using Record = int4;

// ---- plan ------------------------------------------------------------------------------------

__device__ __forceinline__ int brick_of(const int32_t* brick_info, int n_bricks, int32_t neuron) {
  // the last brick whose first neuron is <= neuron (brick starts ascend; checked on the host)
  int lo = 0, hi = n_bricks - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (brick_info[mid * 5 + 0] <= neuron)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// keys[s] = the brick section s feeds, or n_bricks when it feeds none (free, pending, or a source
// that is still at rest when its target brick is computed).
__global__ void plan_keys(const int32_t* __restrict__ sec_block, const int32_t* __restrict__ sec_start,
                          const uint8_t* __restrict__ sec_len, const int32_t* __restrict__ brick_info,
                          int n_bricks, const int32_t* __restrict__ block_info, int n_blocks,
                          int n_neurons, int64_t n_sections, int64_t capacity,
                          int32_t* __restrict__ keys, int32_t* __restrict__ flags) {
  for (int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; s < n_sections;
       s += int64_t(gridDim.x) * blockDim.x) {
    const int32_t g = sec_block[s];
    int32_t key = n_bricks;
    if (g >= 0) {
      if (g >= n_blocks) {
        atomicOr(flags, kBadBlock);
      } else {
        const int32_t target_brick = block_info[g * 3 + 0];
        const int32_t first = block_info[g * 3 + 1], count = block_info[g * 3 + 2];
        const int64_t start = sec_start[s];
        if (target_brick < 0 || target_brick >= n_bricks || first < 0 || count < 0 ||
            count > kNeuronsPerBlock || int64_t(first) + count > n_neurons) {
          atomicOr(flags, kBadBlockInfo);
        } else if (start < 0 || start + sec_len[s] > capacity || sec_len[s] > kSynapsesPerSection) {
          atomicOr(flags, kBadRange);
        } else {
          const int source_brick = brick_of(brick_info, n_bricks, int32_t(s / kSectionsPerNeuron));
          if (brick_info[source_brick * 5 + 2] == kInput || source_brick < target_brick)
            key = target_brick;
        }
      }
    }
    keys[s] = key;
  }
}

__global__ void plan_records(const int32_t* __restrict__ sorted_keys, const int64_t* __restrict__ order,
                             int n_bricks, int64_t n_sections, const int32_t* __restrict__ sec_block,
                             const int32_t* __restrict__ sec_start, const uint8_t* __restrict__ sec_len,
                             const float* __restrict__ sec_offset, const int32_t* __restrict__ block_info,
                             Record* __restrict__ records, float* __restrict__ offsets) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_sections;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (sorted_keys[i] >= n_bricks) continue;  // the sorted tail: sections that feed nothing
    const int64_t s = order[i];
    const int32_t g = sec_block[s];
    records[i] = make_int4(int32_t(s / kSectionsPerNeuron), block_info[g * 3 + 1], sec_start[s],
                           int32_t(sec_len[s]) | (block_info[g * 3 + 2] << 8));
    offsets[i] = sec_offset[s];
  }
}

// ---- walks -----------------------------------------------------------------------------------

// One section walked by a whole warp, exactly like the engine's walk_infer: lane k of chunk c
// handles slot 32c + k. visit(slot, partial, r, border, t) is called by the lanes whose slot the
// walk reaches and whose target neuron exists (t < neurons in the target block); partial marks
// the partly covered last slot.
template <typename Visit>
__device__ __forceinline__ void walk_section(int lane, float p_above, int32_t start, int len,
                                             int block_neurons, const float* __restrict__ upper,
                                             const uint8_t* __restrict__ targets, Visit&& visit) {
  float previous_upper = 0.0f;  // lower end of the chunk's first slot
  for (int c = 0; c < len; c += 32) {
    const int k = c + lane;
    const bool valid = k < len;
    const float u = valid ? upper[start + k] : 0.0f;
    float lower = __shfl_up_sync(kFullMask, u, 1);
    if (lane == 0) lower = previous_upper;
    const float r = remaining(p_above, lower);
    const float border = u - lower;
    const bool reach = valid && reached(r);
    const bool full = reach && !(r < border);
    const unsigned goes_on = __ballot_sync(kFullMask, full);
    const int stop = goes_on == kFullMask ? 32 : __ffs(~goes_on) - 1;  // first slot that ends it
    if (lane < stop || (lane == stop && reach)) {
      const int t = targets[start + k];
      if (t < block_neurons) visit(start + k, lane == stop, r, border, t);  // 0xFF: empty slot
    }
    if (stop < 32) return;
    previous_upper = __shfl_sync(kFullMask, u, 31);
  }
}

// The sections feeding one brick, shared among the warps of the block: 32 records at a time per
// warp, one ballot for the active sources, then one warp-wide walk per active section.
// walk(record, p_above, source) is called by all lanes of the warp.
template <typename Walk>
__device__ __forceinline__ void sections_of_brick(int32_t first, int32_t last, const Record* __restrict__ records,
                                                  const float* __restrict__ offsets, const float* values,
                                                  Walk&& walk) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int32_t base = first + warp * 32; base < last; base += kWarps * 32) {
    const int32_t i = base + lane;
    Record rec = make_int4(0, 0, 0, 0);
    float p_above = 0.0f;
    bool active = false;
    if (i < last) {
      rec = records[i];
      const float p = values[rec.x];
      active = p > 0.0f;
      p_above = p - offsets[i];
    }
    unsigned pending = __ballot_sync(kFullMask, active);
    while (pending) {
      const int j = __ffs(pending) - 1;
      pending &= pending - 1;
      const Record r = make_int4(__shfl_sync(kFullMask, rec.x, j), __shfl_sync(kFullMask, rec.y, j),
                                 __shfl_sync(kFullMask, rec.z, j), __shfl_sync(kFullMask, rec.w, j));
      walk(r, __shfl_sync(kFullMask, p_above, j));
    }
  }
}

struct Bricks {
  const int32_t* info;   // brick_info [bricks, 5] on the device
  const int32_t* begin;  // [bricks + 1]: records of brick b are [begin[b], begin[b + 1])
  int count;
};

// ---- forward ---------------------------------------------------------------------------------

template <bool kShared>
__global__ void __launch_bounds__(kThreads)
infer_kernel(Bricks bricks, const Record* __restrict__ records, const float* __restrict__ offsets,
             const float* __restrict__ upper, const float* __restrict__ weights,
             const uint8_t* __restrict__ targets, const float* __restrict__ x, int64_t n_in,
             float* __restrict__ out, int64_t n_out, float* __restrict__ potentials, int n_neurons,
             int64_t count) {
  extern __shared__ float shared_values[];
  const int lane = threadIdx.x & 31;
  for (int64_t row = blockIdx.x; row < count; row += gridDim.x) {
    float* values = kShared ? shared_values : potentials + row * n_neurons;
    const float* xr = x + row * n_in;
    for (int i = threadIdx.x; i < n_neurons; i += blockDim.x) values[i] = 0.0f;  // at rest
    __syncthreads();
    for (int b = 0; b < bricks.count; ++b) {
      const int32_t* info = bricks.info + b * 5;
      if (info[2] != kInput) continue;
      for (int i = threadIdx.x; i < info[1]; i += blockDim.x) values[info[0] + i] = xr[info[3] + i];
    }
    __syncthreads();
    for (int b = 0; b < bricks.count; ++b) {
      const int32_t* info = bricks.info + b * 5;
      const int kind = info[2];
      if (kind == kInput) continue;
      sections_of_brick(bricks.begin[b], bricks.begin[b + 1], records, offsets, values,
                        [&](const Record& r, float p_above) {
                          walk_section(lane, p_above, r.z, r.w & 0xFF, r.w >> 8, upper, targets,
                                       [&](int32_t slot, bool partial, float rem, float border, int t) {
                                         const float w = weights[slot];
                                         atomicAdd(&values[r.y + t],
                                                   partial ? contribution(w, rem, border) : w);
                                       });
                        });
      __syncthreads();
      const int32_t start = info[0];
      for (int i = threadIdx.x; i < info[1]; i += blockDim.x) {
        const float z = values[start + i];
        if (kind == kOutput) {
          const float o = output_activation(z);
          values[start + i] = o;
          out[row * n_out + info[3] + i] = o;
        } else {
          // from rest the decayed potential is 0 and the refractory counter lets the input in
          const float p = 0.0f + z;
          values[start + i] = p > 0.0f ? hidden_activation(p) : 0.0f;
        }
      }
      __syncthreads();
    }
    if (kShared) {
      float* pr = potentials + row * n_neurons;
      for (int i = threadIdx.x; i < n_neurons; i += blockDim.x) pr[i] = values[i];
      __syncthreads();  // the next sample reuses the shared values
    }
  }
}

// ---- backward --------------------------------------------------------------------------------

template <bool kShared>
__global__ void __launch_bounds__(kThreads)
infer_backward_kernel(Bricks bricks, const Record* __restrict__ records, const float* __restrict__ offsets,
                      const float* __restrict__ upper, const float* __restrict__ weights,
                      const uint8_t* __restrict__ targets, const float* __restrict__ potentials,
                      int n_neurons, const float* __restrict__ grad_out, int64_t n_out,
                      float* __restrict__ grad_in, int64_t n_in, float* __restrict__ grad_weights,
                      float* __restrict__ scratch, int64_t count) {
  extern __shared__ float shared_grad[];
  const int lane = threadIdx.x & 31;
  // grad: d loss / d value for neurons of bricks not yet done; d loss / d sum (the delta) once
  // their brick is done
  float* grad = kShared ? shared_grad : scratch + int64_t(blockIdx.x) * n_neurons;
  for (int64_t row = blockIdx.x; row < count; row += gridDim.x) {
    const float* values = potentials + row * n_neurons;
    for (int i = threadIdx.x; i < n_neurons; i += blockDim.x) grad[i] = 0.0f;
    __syncthreads();
    for (int b = bricks.count - 1; b >= 0; --b) {
      const int32_t* info = bricks.info + b * 5;
      const int kind = info[2];
      if (kind == kInput) continue;
      const int32_t start = info[0];
      for (int i = threadIdx.x; i < info[1]; i += blockDim.x) {
        const float y = values[start + i];
        float delta;
        if (kind == kOutput) {
          const float g = grad_out[row * n_out + info[3] + i];
          delta = y != 0.0f ? (g * y) * (1.0f - y) : 0.0f;
        } else {
          delta = y > 0.0f ? float(double(grad[start + i]) * kInverseLn2 * exp2_negative(double(y)))
                           : 0.0f;
        }
        grad[start + i] = delta;
      }
      __syncthreads();
      sections_of_brick(
          bricks.begin[b], bricks.begin[b + 1], records, offsets, values,
          [&](const Record& r, float p_above) {
            walk_section(lane, p_above, r.z, r.w & 0xFF, r.w >> 8, upper, targets,
                         [&](int32_t slot, bool partial, float rem, float border, int t) {
                           const float d = grad[r.y + t];
                           if (d == 0.0f) return;
                           if (partial) {
                             atomicAdd(&grad_weights[slot], d * (rem / border));
                             atomicAdd(&grad[r.x], d * (weights[slot] / border));
                           } else {
                             atomicAdd(&grad_weights[slot], d);
                           }
                         });
          });
      __syncthreads();
    }
    for (int b = 0; b < bricks.count; ++b) {
      const int32_t* info = bricks.info + b * 5;
      if (info[2] != kInput) continue;
      for (int i = threadIdx.x; i < info[1]; i += blockDim.x)
        grad_in[row * n_in + info[3] + i] = grad[info[0] + i];
    }
    __syncthreads();
  }
}

// ---- launchers -------------------------------------------------------------------------------

int blocks_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return int(blocks < 1 ? 1 : blocks > 65535 ? 65535 : blocks);
}

Bricks bricks_of(const Network& net) { return {net.brick_info, net.brick_begin, net.n_bricks}; }

const Record* records_of(const Network& net) { return reinterpret_cast<const Record*>(net.records); }

template <typename Kernel>
cudaError_t allow_shared(Kernel kernel, int64_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

}  // namespace

cudaError_t launch_plan_keys(const int32_t* sec_block, const int32_t* sec_start, const uint8_t* sec_len,
                             const int32_t* brick_info, int n_bricks, const int32_t* block_info,
                             int n_blocks, int n_neurons, int64_t n_sections, int64_t capacity,
                             int32_t* keys, int32_t* flags, cudaStream_t stream) {
  if (n_sections == 0) return cudaSuccess;
  plan_keys<<<blocks_for(n_sections, 256), 256, 0, stream>>>(sec_block, sec_start, sec_len, brick_info,
                                                            n_bricks, block_info, n_blocks, n_neurons,
                                                            n_sections, capacity, keys, flags);
  return cudaGetLastError();
}

cudaError_t launch_plan_records(const int32_t* sorted_keys, const int64_t* order, int n_bricks,
                                int64_t n_sections, const int32_t* sec_block, const int32_t* sec_start,
                                const uint8_t* sec_len, const float* sec_offset,
                                const int32_t* block_info, int32_t* records, float* offsets,
                                cudaStream_t stream) {
  if (n_sections == 0) return cudaSuccess;
  plan_records<<<blocks_for(n_sections, 256), 256, 0, stream>>>(
      sorted_keys, order, n_bricks, n_sections, sec_block, sec_start, sec_len, sec_offset, block_info,
      reinterpret_cast<Record*>(records), offsets);
  return cudaGetLastError();
}

cudaError_t launch_infer(const Network& net, const float* x, int64_t n_in, float* out, int64_t n_out,
                         float* potentials, int64_t count, int grid, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t bytes = int64_t(net.n_neurons) * int64_t(sizeof(float));
  const bool shared = bytes <= kMaxSharedBytes;
  auto kernel = shared ? infer_kernel<true> : infer_kernel<false>;
  const cudaError_t status = allow_shared(kernel, shared ? bytes : 0);
  if (status != cudaSuccess) return status;
  kernel<<<grid, kThreads, shared ? bytes : 0, stream>>>(bricks_of(net), records_of(net), net.offsets,
                                                        net.upper, net.weights, net.targets, x, n_in, out,
                                                        n_out, potentials, net.n_neurons, count);
  return cudaGetLastError();
}

cudaError_t launch_infer_backward(const Network& net, const float* potentials, const float* grad_out,
                                  int64_t n_out, float* grad_in, int64_t n_in, float* grad_weights,
                                  float* scratch, int64_t count, int grid, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t bytes = int64_t(net.n_neurons) * int64_t(sizeof(float));
  const bool shared = bytes <= kMaxSharedBytes;
  auto kernel = shared ? infer_backward_kernel<true> : infer_backward_kernel<false>;
  const cudaError_t status = allow_shared(kernel, shared ? bytes : 0);
  if (status != cudaSuccess) return status;
  kernel<<<grid, kThreads, shared ? bytes : 0, stream>>>(
      bricks_of(net), records_of(net), net.offsets, net.upper, net.weights, net.targets, potentials,
      net.n_neurons, grad_out, n_out, grad_in, n_in, grad_weights, scratch, count);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace hanami

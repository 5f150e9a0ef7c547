// CUDA kernels of encode_ and decode: one thread per neuron (column), walking the rows in order
// with the same encode_row/decode_row as the CPU (csrc/encode.h), so both agree bit for bit.
#include "../encode.h"
#include "encode_cuda.cuh"

namespace hanami {
namespace cuda {
namespace {

constexpr int kEncodeThreads = 128;

__global__ void encode_kernel(int64_t rows, int64_t n, const uint8_t* modes, float* ranges, const float* values,
                              float* codes, float* slopes, float* trail, bool learn, bool targets) {
  const int64_t column = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (column >= n) return;
  for (int64_t row = 0; row < rows; ++row)
    encode_row(row, column, column + 1, n, modes, ranges, values, codes, slopes, trail, learn, targets);
}

__global__ void decode_kernel(int64_t rows, int64_t n, const uint8_t* modes, const float* ranges, bool per_row,
                              const float* outputs, float* decoded, float* slopes) {
  const int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= rows * n) return;
  decode_row(index / n, index % n, index % n + 1, n, modes, ranges, per_row, outputs, decoded, slopes);
}

unsigned blocks_for(int64_t items) { return unsigned((items + kEncodeThreads - 1) / kEncodeThreads); }

}  // namespace

cudaError_t launch_encode(int64_t rows, int64_t n, const uint8_t* modes, float* ranges, const float* values,
                          float* codes, float* slopes, float* trail, bool learn, bool targets, cudaStream_t stream) {
  if (n == 0 || rows == 0) return cudaSuccess;
  encode_kernel<<<blocks_for(n), kEncodeThreads, 0, stream>>>(rows, n, modes, ranges, values, codes, slopes, trail,
                                                              learn, targets);
  return cudaGetLastError();
}

cudaError_t launch_decode(int64_t rows, int64_t n, const uint8_t* modes, const float* ranges, bool per_row,
                          const float* outputs, float* decoded, float* slopes, cudaStream_t stream) {
  if (n == 0 || rows == 0) return cudaSuccess;
  decode_kernel<<<blocks_for(rows * n), kEncodeThreads, 0, stream>>>(rows, n, modes, ranges, per_row, outputs,
                                                                     decoded, slopes);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace hanami

// Launchers of the value-code kernels (encode_cuda.cu) for ops_cuda.cpp. Like the other launchers
// they never throw (slopes may be null for encode): the host code checks the arguments and the returned CUDA error.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace hanami {
namespace cuda {

cudaError_t launch_encode(int64_t rows, int64_t n, const uint8_t* modes, float* ranges, const float* values,
                          float* codes, float* slopes, float* trail, bool learn, bool targets, cudaStream_t stream);

cudaError_t launch_decode(int64_t rows, int64_t n, const uint8_t* modes, const float* ranges, bool per_row,
                          const float* outputs, float* decoded, float* slopes, cudaStream_t stream);

}  // namespace cuda
}  // namespace hanami

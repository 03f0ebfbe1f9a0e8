// model/runtime.h — how LibTorch runs on this machine: threads, device, BLAS, measured speed.
//
// ConfigureThreads and ResolveDevice are called once at program start-up, before any model work;
// CollectRuntimeInfo may be called any time. Not meant to be called concurrently with training.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "model/choices.h"

namespace clickdiff::model {

struct RuntimeInfo {
  std::string torch_version;  // e.g. "1.13.0"
  std::string blas;           // the BLAS library actually loaded, e.g. "OpenBLAS 0.3.21 ..."
  std::string blas_library;   // its file, resolved through symlinks
  int intra_op_threads = 0;   // torch::get_num_threads()
  int inter_op_threads = 0;
  int hardware_threads = 0;
  int cuda_devices = 0;
  bool cudnn = false;
  double matmul_gflops = 0;   // measured: float32 1024x1024 matmul; 0 when not measured
  double matmul_seconds = 0;  // per matmul, best of several
};

// Sets LibTorch's intra-op threads to `threads` (0: one per hardware thread) and its inter-op
// threads to 1, so torch's OpenMP pool and the service's TBB workers do not oversubscribe the
// cores. Returns the intra-op thread count in effect.
int ConfigureThreads(int threads);

// The device `spec` names on this machine ("auto": CUDA when a device exists, else the CPU).
// Errors: kUnavailable when a GPU is asked for and this machine has none (or not that one).
Result<torch::Device> ResolveDevice(const DeviceSpec& spec);

// The devices the service's sampler shards spread over: every one of the `cuda_devices` GPUs when
// `spec` is "cuda" or "auto" and `resolved` (ResolveDevice(spec)) is a GPU, the resolved device
// alone otherwise ("cpu", or a GPU pinned with "cuda:N"). The first is always `resolved`.
std::vector<torch::Device> ServingDevices(const DeviceSpec& spec, torch::Device resolved,
                                          int cuda_devices);

// Describes the runtime; with `measure_matmul` also times a 1024^2 float matmul (~0.1 s).
RuntimeInfo CollectRuntimeInfo(bool measure_matmul);

}  // namespace clickdiff::model

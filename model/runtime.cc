#include "model/runtime.h"

#include <dlfcn.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

namespace clickdiff::model {
namespace {

// The shared object that provides the sgemm_ LibTorch calls: symbol lookup follows load order,
// as LibTorch's own binding does. (More than one BLAS can be mapped: Debian's LAPACK may pull in
// OpenBLAS while libblas.so.3 is the reference BLAS, so listing mapped files is not enough.)
std::string LoadedBlasLibrary() {
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info where{};
  if (sgemm == nullptr || dladdr(sgemm, &where) == 0 || where.dli_fname == nullptr) return "";
  std::error_code ec;
  auto resolved = std::filesystem::canonical(where.dli_fname, ec);
  return ec ? std::string(where.dli_fname) : resolved.string();
}

std::string DescribeBlas(const std::string& library) {
  if (library.find("openblas") != std::string::npos) {
    // OpenBLAS exports its build description.
    using ConfigFn = char* (*)();
    if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
      return fn();
    }
    return "OpenBLAS";
  }
  if (library.find("mkl") != std::string::npos) return "Intel MKL";
  if (library.find("/blas/") != std::string::npos) {
    return "reference BLAS (about 50x slower: install libopenblas0-openmp)";
  }
  return library.empty() ? "none found" : "unknown";
}

}  // namespace

int ConfigureThreads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  // Inter-op threads can only be set once per process, before any inter-op work.
  static const bool inter_op_set = [] {
    try {
      torch::set_num_interop_threads(1);
    } catch (const c10::Error&) {
    }
    return true;
  }();
  (void)inter_op_set;
  return torch::get_num_threads();
}

Result<torch::Device> ResolveDevice(const DeviceSpec& spec) {
  switch (spec.kind) {
    case DeviceSpec::Kind::kCpu:
      return torch::Device(torch::kCPU);
    case DeviceSpec::Kind::kAuto:
      return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                         : torch::Device(torch::kCPU);
    case DeviceSpec::Kind::kCuda:
      break;
  }
  const int available = static_cast<int>(torch::cuda::device_count());
  const int index = std::max(0, spec.index);
  if (index >= available) {
    return Unavailable("device '" + DeviceName(spec) + "': this machine has " +
                       std::to_string(available) + " CUDA device(s)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::vector<torch::Device> ServingDevices(const DeviceSpec& spec, torch::Device resolved,
                                          int cuda_devices) {
  std::vector<torch::Device> devices{resolved};
  const bool every_gpu = spec.kind == DeviceSpec::Kind::kAuto ||
                         (spec.kind == DeviceSpec::Kind::kCuda && spec.index < 0);
  if (!resolved.is_cuda() || !every_gpu) return devices;
  const int first = resolved.has_index() ? resolved.index() : 0;
  for (int i = 0; i < cuda_devices; ++i) {
    if (i != first) devices.emplace_back(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
  }
  return devices;
}

RuntimeInfo CollectRuntimeInfo(bool measure_matmul) {
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
  info.blas_library = LoadedBlasLibrary();
  info.blas = DescribeBlas(info.blas_library);
  info.intra_op_threads = torch::get_num_threads();
  info.inter_op_threads = torch::get_num_interop_threads();
  info.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
  info.cuda_devices = static_cast<int>(torch::cuda::device_count());
  info.cudnn = torch::cuda::cudnn_is_available();
  if (measure_matmul) {
    constexpr int64_t kSide = 1024;
    torch::NoGradGuard no_grad;
    torch::Tensor a = torch::rand({kSide, kSide});
    torch::Tensor b = torch::rand({kSide, kSide});
    torch::Tensor c = torch::mm(a, b);  // warm-up: thread pool, BLAS buffers
    double best = 1e30;
    for (int i = 0; i < 5; ++i) {
      auto start = std::chrono::steady_clock::now();
      c = torch::mm(a, b);
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      best = std::min(best, seconds);
      if (seconds > 1.0) break;  // reference BLAS: one slow sample is enough
    }
    info.matmul_seconds = best;
    info.matmul_gflops = 2.0 * kSide * kSide * kSide / best / 1e9;
  }
  return info;
}

}  // namespace clickdiff::model

// `clickdiff info`: what a user needs to trust this machine (LibTorch, BLAS, threads, devices,
// and a measured matmul speed).
#include <iomanip>
#include <nlohmann/json.hpp>

#include "model/runtime.h"
#include "services/command.h"

namespace clickdiff {

void AddInfoCommand(CLI::App& app, CommandContext& context) {
  auto* info = app.add_subcommand("info",
                                  "LibTorch version, BLAS, threads, CUDA devices and a "
                                  "measured 1024^2 matmul speed");
  struct Args {
    ConfigOptions options;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  AddConfigOptions(*info, args->options, false);
  info->add_flag("--json", args->json, "print JSON");
  info->callback([&context, args] {
    Result<Config> config = LoadConfigFor(args->options);
    if (!config.ok()) return Finish(context, config.status());
    model::ConfigureThreads(config->compute.torch_threads);
    model::RuntimeInfo r = model::CollectRuntimeInfo(/*measure_matmul=*/true);
    std::ostream& out = *context.out;
    if (args->json) {
      nlohmann::json j = {
          {"torch_version", r.torch_version},       {"blas", r.blas},
          {"blas_library", r.blas_library},         {"intra_op_threads", r.intra_op_threads},
          {"inter_op_threads", r.inter_op_threads}, {"hardware_threads", r.hardware_threads},
          {"cuda_devices", r.cuda_devices},         {"cudnn", r.cudnn},
          {"matmul_gflops", r.matmul_gflops},       {"matmul_ms", r.matmul_seconds * 1e3}};
      out << j.dump(2) << "\n";
    } else {
      out << "LibTorch         " << r.torch_version << "\n"
          << "BLAS             " << r.blas << "\n"
          << "BLAS library     " << (r.blas_library.empty() ? "-" : r.blas_library) << "\n"
          << "threads          " << r.intra_op_threads << " intra-op, " << r.inter_op_threads
          << " inter-op, " << r.hardware_threads << " hardware\n"
          << "CUDA devices     " << r.cuda_devices << (r.cudnn ? " (cuDNN)" : "") << "\n"
          << "matmul 1024^2    " << std::fixed << std::setprecision(1) << r.matmul_gflops
          << " GFLOP/s (" << std::setprecision(2) << r.matmul_seconds * 1e3
          << " ms, float32, measured now)\n";
    }
    Finish(context, Status::Ok());
  });
}

}  // namespace clickdiff

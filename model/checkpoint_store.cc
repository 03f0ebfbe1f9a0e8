#include "model/checkpoint_store.h"

#include <exception>
#include <fstream>
#include <sstream>
#include <type_traits>
#include <vector>

namespace clickdiff::model {
namespace {

// Calls visit(name, field) for every persisted option field; `Options` is SegmenterOptions,
// const or not, so one list serves saving and loading.
template <typename Options, typename Visitor>
void VisitOptions(Options& o, Visitor&& visit) {
  visit("num_classes", o.num_classes);
  visit("resolution", o.resolution);
  visit("unet.image_channels", o.unet.image_channels);
  visit("unet.levels", o.unet.levels);
  visit("unet.base_width", o.unet.base_width);
  visit("unet.encoder_width", o.unet.encoder_width);
  visit("unet.max_width_multiplier", o.unet.max_width_multiplier);
  visit("unet.time_embedding_dim", o.unet.time_embedding_dim);
  visit("unet.groups", o.unet.groups);
  visit("d3pm.num_timesteps", o.d3pm.num_timesteps);
  visit("d3pm.beta_start", o.d3pm.beta_start);
  visit("d3pm.beta_end", o.d3pm.beta_end);
  visit("gaussian.num_timesteps", o.gaussian.num_timesteps);
  visit("gaussian.beta_min", o.gaussian.beta_min);
  visit("gaussian.beta_max", o.gaussian.beta_max);
  visit("gaussian.latent_dim", o.gaussian.latent_dim);
  visit("loss.focal_gamma", o.loss.focal_gamma);
  visit("loss.focal_alpha", o.loss.focal_alpha);
  visit("loss.dense_gamma", o.loss.dense_gamma);
  visit("loss.vlb_weight", o.loss.vlb_weight);
  visit("loss.mse_weight", o.loss.mse_weight);
  visit("random_flips", o.augment.flips);
  visit("seed", o.seed);
}

// Fields added after format version 1 came out: a checkpoint without them was trained with their
// defaults (the focal loss), so reading fills the default in when one is absent.
template <typename Options, typename Visitor>
void VisitLaterOptions(Options& o, Visitor&& visit) {
  visit("loss.ms_weight", o.loss.ms_weight);
  visit("loss.cv_weight", o.loss.cv_weight);
  visit("loss.cv_temperature", o.loss.cv_temperature);
  visit("loss.tv_weight", o.loss.tv_weight);
  visit("augment.rotations", o.augment.rotations);
  visit("augment.intensity", o.augment.intensity);
  visit("augment.noise", o.augment.noise);
  visit("click_input", o.click_input);
  visit("simulated_clicks", o.simulated_clicks);
  visit("d3pm.prior_share", o.d3pm.prior_share);
  visit("loss.dense_weight", o.loss.dense_weight);
  visit("crop_to_content", o.crop_to_content);
}

template <typename T>
c10::IValue ToIValue(const T& value) {
  if constexpr (std::is_floating_point_v<T>) {
    return c10::IValue(static_cast<double>(value));
  } else {
    return c10::IValue(static_cast<int64_t>(value));
  }
}

template <typename T>
void FromIValue(const c10::IValue& value, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    out = static_cast<T>(value.toDouble());
  } else {
    out = static_cast<T>(value.toInt());
  }
}

// Options, schedule and weights of `segmenter` into `archive`.
void WriteArchive(const Segmenter& segmenter, torch::serialize::OutputArchive& archive) {
  const SegmenterOptions& o = segmenter.options();
  archive.write("format_version", c10::IValue(CheckpointStore::kFormatVersion));
  archive.write("options/method", c10::IValue(std::string(MethodName(o.method))));
  archive.write("options/loss.kind", c10::IValue(std::string(LossKindName(o.loss.kind))));
  archive.write("options/click_guidance",
                c10::IValue(std::string(ClickGuidanceName(o.click_guidance))));
  const auto write = [&](const char* name, const auto& field) {
    archive.write(std::string("options/") + name, ToIValue(field));
  };
  VisitOptions(o, write);
  VisitLaterOptions(o, write);
  if (const DiffusionProcess* process = segmenter.process()) {
    for (const auto& [name, tensor] : process->ScheduleTensors()) {
      archive.write("schedule/" + name, tensor, /*is_buffer=*/true);
    }
  }
  torch::serialize::OutputArchive network;
  segmenter.network()->save(network);
  archive.write("network", network);
}

// Rebuilds a Segmenter from a loaded archive; `what` names the source in errors.
Result<Segmenter> ReadArchive(torch::serialize::InputArchive& archive, const std::string& what,
                              torch::Device device) {
  SegmenterOptions options;
  try {
    c10::IValue value;
    if (!archive.try_read("format_version", value) || !value.isInt()) {
      return DataLoss(what + " has no format_version");
    }
    if (value.toInt() != CheckpointStore::kFormatVersion) {
      return InvalidArgument(what + " has format version " + std::to_string(value.toInt()) +
                             "; this build reads " +
                             std::to_string(CheckpointStore::kFormatVersion));
    }
    if (!archive.try_read("options/method", value) || !value.isString()) {
      return DataLoss(what + " lacks options/method");
    }
    auto method = ParseMethod(value.toStringRef());
    if (!method.ok()) return method.status().WithContext(what);
    options.method = *method;
    std::string missing;
    VisitOptions(options, [&](const char* name, auto& field) {
      c10::IValue stored;
      if (!archive.try_read(std::string("options/") + name, stored)) {
        if (missing.empty()) missing = name;
        return;
      }
      FromIValue(stored, field);
    });
    if (!missing.empty()) return DataLoss(what + " lacks options/" + missing);
    VisitLaterOptions(options, [&](const char* name, auto& field) {
      c10::IValue stored;
      if (archive.try_read(std::string("options/") + name, stored)) FromIValue(stored, field);
    });
    if (archive.try_read("options/loss.kind", value)) {
      if (!value.isString()) return DataLoss(what + " has a malformed options/loss.kind");
      auto kind = ParseLossKind(value.toStringRef());
      if (!kind.ok()) return kind.status().WithContext(what);
      options.loss.kind = *kind;
    }
    if (archive.try_read("options/click_guidance", value)) {
      if (!value.isString()) return DataLoss(what + " has a malformed options/click_guidance");
      auto kind = ParseClickGuidance(value.toStringRef());
      if (!kind.ok()) return kind.status().WithContext(what);
      options.click_guidance = *kind;
    }
  } catch (const std::exception& e) {
    return DataLoss(what + " has malformed options: " + e.what());
  }
  auto segmenter = Segmenter::Create(options, device);
  if (!segmenter.ok()) return segmenter.status().WithContext(what);
  try {
    if (const DiffusionProcess* process = segmenter->process()) {
      for (const auto& [name, expected] : process->ScheduleTensors()) {
        torch::Tensor stored;
        if (!archive.try_read("schedule/" + name, stored, /*is_buffer=*/true)) {
          return DataLoss(what + " lacks schedule/" + name);
        }
        if (!stored.sizes().equals(expected.sizes()) ||
            !torch::allclose(stored.to(torch::kDouble), expected, 1e-12, 1e-15)) {
          return DataLoss(what + ": stored schedule '" + name +
                          "' differs from the one its options define");
        }
      }
    }
    torch::serialize::InputArchive network;
    if (!archive.try_read("network", network)) {
      return DataLoss(what + " lacks the network weights");
    }
    torch::NoGradGuard no_grad;
    segmenter->network()->load(network);
    segmenter->network()->to(device);
  } catch (const std::exception& e) {
    return DataLoss(what + " has unreadable weights: " + e.what());
  }
  return segmenter;
}

}  // namespace

Status CheckpointStore::Save(const Segmenter& segmenter, const std::string& path) {
  try {
    torch::serialize::OutputArchive archive;
    WriteArchive(segmenter, archive);
    std::ofstream probe(path, std::ios::binary | std::ios::trunc);
    if (!probe) return Unavailable("cannot write checkpoint '" + path + "'");
    probe.close();
    archive.save_to(path);
    return Status::Ok();
  } catch (const std::exception& e) {
    return Internal("saving checkpoint '" + path + "' failed: " + e.what());
  }
}

Result<Segmenter> CheckpointStore::Load(const std::string& path, torch::Device device) {
  if (!std::ifstream(path, std::ios::binary)) {
    return NotFound("checkpoint '" + path + "' does not exist or cannot be read");
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, torch::kCPU);
  } catch (const std::exception& e) {
    return DataLoss("'" + path + "' is not a readable checkpoint: " + e.what());
  }
  return ReadArchive(archive, "checkpoint '" + path + "'", device);
}

Result<std::string> CheckpointStore::ToBytes(const Segmenter& segmenter) {
  try {
    torch::serialize::OutputArchive archive;
    WriteArchive(segmenter, archive);
    std::ostringstream out;
    archive.save_to(out);
    return std::move(out).str();
  } catch (const std::exception& e) {
    return Internal(std::string("serializing a checkpoint failed: ") + e.what());
  }
}

Result<Segmenter> CheckpointStore::FromBytes(const std::string& bytes, const std::string& what,
                                             torch::Device device) {
  torch::serialize::InputArchive archive;
  try {
    std::istringstream in(bytes);
    archive.load_from(in, torch::kCPU);
  } catch (const std::exception& e) {
    return DataLoss(what + " is not a readable checkpoint: " + e.what());
  }
  return ReadArchive(archive, what, device);
}

Result<Segmenter> CheckpointStore::Copy(const Segmenter& segmenter, const std::string& what,
                                        torch::Device device) {
  Result<std::string> bytes = ToBytes(segmenter);
  if (!bytes.ok()) return bytes.status().WithContext(what);
  return FromBytes(*bytes, what, device);
}

}  // namespace clickdiff::model

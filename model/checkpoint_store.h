// model/checkpoint_store.h — saves and loads a Segmenter (weights + options + noise schedule) as
// one file, or as bytes.
//
// Format: a LibTorch serialize archive (zip) holding "format_version", every option under
// "options/<name>" (ints, doubles and strings as IValues), the process's schedule tensors under
// "schedule/<name>" (double) and the network's parameters and buffers under "network". Loading
// rebuilds the Segmenter from the stored options, checks the stored schedule against the one the
// code builds (so a checkpoint never silently runs under a different schedule) and loads the
// weights onto any device. A round trip gives bit-identical outputs on the same device.
//
// Stateless; all functions are thread-safe with respect to each other (they do not share state),
// but Save must not run concurrently with training of the same Segmenter.
#pragma once

#include <torch/torch.h>

#include <string>

#include "base/status.h"
#include "model/segmenter.h"

namespace clickdiff::model {

class CheckpointStore {
 public:
  static constexpr int64_t kFormatVersion = 1;

  // Writes `segmenter` to `path` (overwriting). Errors: kUnavailable when the file cannot be
  // written; kInternal for other LibTorch failures.
  static Status Save(const Segmenter& segmenter, const std::string& path);

  // Reads a checkpoint and places the model on `device`. Errors: kNotFound when the file does not
  // exist; kDataLoss when it is not a readable checkpoint, lacks a field, or its schedule
  // disagrees with the options; kInvalidArgument when its options are invalid or its version is
  // unknown.
  static Result<Segmenter> Load(const std::string& path, torch::Device device);

  // The same archive in memory (the service keeps model versions in RocksDB). `what` names the
  // source in errors; the errors are those of Save and Load.
  static Result<std::string> ToBytes(const Segmenter& segmenter);
  static Result<Segmenter> FromBytes(const std::string& bytes, const std::string& what,
                                     torch::Device device);
  // An independent copy of `segmenter` (weights and options) on `device`, through the archive.
  static Result<Segmenter> Copy(const Segmenter& segmenter, const std::string& what,
                                torch::Device device);
};

}  // namespace clickdiff::model

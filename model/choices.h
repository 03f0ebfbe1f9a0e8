// model/choices.h — the model's named choices that a configuration selects: the method, the loss,
// the aggregation rule, the click guidance and the compute device. Free of LibTorch, so
// config/config.h can hold them as types; each has one table of names (base/enum_names.h) for
// parsing, printing and errors.
#pragma once

#include <array>
#include <string>

#include "base/enum_names.h"
#include "base/status.h"

namespace clickdiff::model {

// The segmentation method (model/segmenter.h describes each).
enum class Method { kD3pm, kGaussianX0, kUNet };
inline constexpr std::array<EnumName<Method>, 3> kMethodNames{{
    {"d3pm", Method::kD3pm},
    {"gaussian_x0", Method::kGaussianX0},
    {"unet", Method::kUNet},
}};
// "d3pm", "gaussian_x0", "unet".
const char* MethodName(Method method);
// Errors: kInvalidArgument naming the accepted spellings.
Result<Method> ParseMethod(const std::string& name);

// How N samples become a mask (model/aggregator.h describes each).
enum class AggregationRule { kMajority, kThreshold, kDensity, kOtsu };
inline constexpr std::array<EnumName<AggregationRule>, 4> kAggregationRuleNames{{
    {"majority", AggregationRule::kMajority},
    {"threshold", AggregationRule::kThreshold},
    {"density", AggregationRule::kDensity},
    {"otsu", AggregationRule::kOtsu},
}};
const char* AggregationRuleName(AggregationRule rule);
// Errors: kInvalidArgument naming the accepted spellings.
Result<AggregationRule> ParseAggregationRule(const std::string& name);

// The supervision loss on the network's per-pixel class prediction (model/losses.h describes
// each): paper 000's focal loss on click maps, or paper 001's partial cross-entropy on labelled
// pixels alone, with its Mumford-Shah or contrastive-variance term over every pixel.
enum class LossKind { kFocal, kPce, kPceMs, kPceCv };
inline constexpr std::array<EnumName<LossKind>, 4> kLossKindNames{{
    {"focal", LossKind::kFocal},
    {"pce", LossKind::kPce},
    {"pce_ms", LossKind::kPceMs},
    {"pce_cv", LossKind::kPceCv},
}};
const char* LossKindName(LossKind kind);
// Errors: kInvalidArgument naming the accepted spellings.
Result<LossKind> ParseLossKind(const std::string& name);

// The image channels a new model takes: "gray" (1: colour images are converted, Rec. 709) or "rgb"
// (3: colour kept; a gray image is repeated into R, G and B). "auto": `clickdiff train` follows its
// images (rgb when any of them has colour, else gray); the service, which cannot see its images
// before it builds a model, takes rgb. A model file records what it takes.
enum class ColorMode { kAuto, kGray, kRgb };
inline constexpr std::array<EnumName<ColorMode>, 3> kColorModeNames{{
    {"auto", ColorMode::kAuto},
    {"gray", ColorMode::kGray},
    {"rgb", ColorMode::kRgb},
}};

// How a click_input model is shown its clicks (model/click_guidance.h): "gaussian", a bump of a
// fixed width around each click; "geodesic", a wider bump that falls off with the geodesic distance
// over the image, so it fills the click's region and stops at the image's edges.
enum class ClickGuidanceKind { kGaussian, kGeodesic };
inline constexpr std::array<EnumName<ClickGuidanceKind>, 2> kClickGuidanceNames{{
    {"gaussian", ClickGuidanceKind::kGaussian},
    {"geodesic", ClickGuidanceKind::kGeodesic},
}};
const char* ClickGuidanceName(ClickGuidanceKind kind);
// Errors: kInvalidArgument naming the accepted spellings.
Result<ClickGuidanceKind> ParseClickGuidance(const std::string& name);

// Where the model runs: "cpu", "cuda" (the first GPU; the service spreads sampler shards over
// every GPU), "cuda:N" (GPU N alone) or "auto" (CUDA when a device exists, else the CPU).
// model/runtime.h ResolveDevice turns it into a torch::Device on this machine.
struct DeviceSpec {
  enum class Kind { kCpu, kCuda, kAuto };
  Kind kind = Kind::kCpu;
  int index = -1;  // kCuda: the pinned GPU, or -1 for "cuda"

  bool operator==(const DeviceSpec& other) const {
    return kind == other.kind && index == other.index;
  }
};
// "cpu", "cuda", "cuda:N", "auto".
std::string DeviceName(const DeviceSpec& device);
// Errors: kInvalidArgument naming the accepted spellings.
Result<DeviceSpec> ParseDevice(const std::string& name);

}  // namespace clickdiff::model

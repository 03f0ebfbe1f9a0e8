#include "io/dataset_files.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "base/labels.h"

namespace clickdiff {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool IsPng(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png";
}

std::string TypeName(const json& value) { return value.type_name(); }

// Reads an integer field that must exist (when `required`) and fit an int.
Status ReadIntField(const json& obj, const char* key, bool required, const std::string& where,
                    int* out, bool* present) {
  *present = false;
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return InvalidArgument(where + ": missing required field \"" + key + "\"");
    return Status::Ok();
  }
  if (!it->is_number_integer()) {
    return InvalidArgument(where + ": field \"" + key + "\" must be an integer, got " +
                           TypeName(*it) + " " + it->dump());
  }
  const int64_t v = it->get<int64_t>();
  if (v < INT32_MIN || v > INT32_MAX) {
    return OutOfRange(where + ": field \"" + key + "\" value " + std::to_string(v) +
                      " does not fit a 32-bit integer");
  }
  *out = static_cast<int>(v);
  *present = true;
  return Status::Ok();
}

Status ParseClick(const json& obj, const ClickFileOptions& options, Click* click) {
  const std::string where = click->Where();
  if (!obj.is_object()) {
    return InvalidArgument(where + ": a click must be a JSON object, got " + TypeName(obj));
  }
  static const std::set<std::string> kKnown = {"image",    "x",        "y",        "class",
                                               "positive", "click_id", "annotator"};
  if (!options.allow_unknown_fields) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (kKnown.count(it.key()) == 0) {
        return InvalidArgument(where + ": unknown field \"" + it.key() +
                               "\" (known: image, x, y, class, positive, click_id, annotator)");
      }
    }
  }
  auto image = obj.find("image");
  if (image == obj.end()) return InvalidArgument(where + ": missing required field \"image\"");
  if (!image->is_string() || image->get<std::string>().empty()) {
    return InvalidArgument(where + ": field \"image\" must be a non-empty string, got " +
                           image->dump());
  }
  click->image = image->get<std::string>();
  bool present = false;
  CLICKDIFF_RETURN_IF_ERROR(ReadIntField(obj, "x", true, where, &click->x, &present));
  CLICKDIFF_RETURN_IF_ERROR(ReadIntField(obj, "y", true, where, &click->y, &present));
  auto positive = obj.find("positive");
  if (positive != obj.end()) {
    if (!positive->is_boolean()) {
      return InvalidArgument(where + ": field \"positive\" must be true or false, got " +
                             positive->dump());
    }
    click->positive = positive->get<bool>();
  }
  CLICKDIFF_RETURN_IF_ERROR(
      ReadIntField(obj, "class", click->positive, where, &click->class_id, &present));
  if (!present) click->class_id = 0;
  if (click->class_id < 0 || click->class_id >= options.num_classes) {
    return OutOfRange(where + ": field \"class\" value " + std::to_string(click->class_id) +
                      " is not a known class id (must be in [0, " +
                      std::to_string(options.num_classes) + "))");
  }
  auto click_id = obj.find("click_id");
  if (click_id != obj.end()) {
    if (click_id->is_string()) {
      click->click_id = click_id->get<std::string>();
    } else if (click_id->is_number_integer()) {
      click->click_id = click_id->dump();
    } else {
      return InvalidArgument(where + ": field \"click_id\" must be a string or an integer, got " +
                             click_id->dump());
    }
  }
  auto annotator = obj.find("annotator");
  if (annotator != obj.end()) {
    if (!annotator->is_string()) {
      return InvalidArgument(where + ": field \"annotator\" must be a string, got " +
                             annotator->dump());
    }
    click->annotator = annotator->get<std::string>();
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<std::string>> ListPngFiles(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound(dir + ": not a readable directory");
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  if (ec) return NotFound(dir + ": cannot list directory: " + ec.message());
  for (const fs::directory_entry& entry : it) {
    if (!IsPng(entry.path())) continue;
    if (!entry.is_regular_file(ec)) {
      return InvalidArgument(entry.path().string() + ": not a regular file");
    }
    names.push_back(entry.path().filename().string());
  }
  if (names.empty()) return InvalidArgument(dir + ": directory holds no .png files");
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::vector<NamedImage>> ReadImageDirectory(const std::string& dir,
                                                   const ImageLimits& limits, DecodeColor color) {
  Result<std::vector<std::string>> names = ListPngFiles(dir);
  if (!names.ok()) return names.status();
  std::vector<NamedImage> images;
  images.reserve(names->size());
  for (const std::string& name : *names) {
    NamedImage named;
    named.name = name;
    named.path = (fs::path(dir) / name).string();
    Result<Image> image = ReadPngFile(named.path, limits, color);
    if (!image.ok()) return image.status();
    named.image = std::move(image).value();
    images.push_back(std::move(named));
  }
  return images;
}

Result<std::vector<Click>> ParseClicks(std::istream& in, const std::string& source,
                                       const ClickFileOptions& options) {
  if (options.num_classes < 1) {
    return InvalidArgument("ClickFileOptions.num_classes must be >= 1, got " +
                           std::to_string(options.num_classes));
  }
  std::vector<Click> clicks;
  std::string text;
  int line_number = 0;
  while (std::getline(in, text)) {
    ++line_number;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    Click click;
    click.file = source;
    click.line = line_number;
    json obj;
    try {
      obj = json::parse(text);
    } catch (const json::exception& e) {
      return InvalidArgument(click.Where() + ": malformed JSON: " + e.what());
    }
    CLICKDIFF_RETURN_IF_ERROR(ParseClick(obj, options, &click));
    clicks.push_back(std::move(click));
  }
  if (in.bad()) return DataLoss(source + ": read error after line " + std::to_string(line_number));
  return clicks;
}

Result<std::vector<Click>> ReadClicksFile(const std::string& path,
                                          const ClickFileOptions& options) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open clicks file");
  return ParseClicks(in, path, options);
}

Status ValidateClicks(const std::vector<Click>& clicks, const std::vector<NamedImage>& images) {
  std::unordered_map<std::string, const Image*> by_name;
  for (const NamedImage& named : images) by_name[named.name] = &named.image;
  for (const Click& click : clicks) {
    auto it = by_name.find(click.image);
    if (it == by_name.end()) {
      return NotFound(click.Where() + ": click names image \"" + click.image +
                      "\" which is not in the images directory");
    }
    const Image& image = *it->second;
    if (click.x < 0 || click.x >= image.width || click.y < 0 || click.y >= image.height) {
      return OutOfRange(click.Where() + ": click x=" + std::to_string(click.x) +
                        " y=" + std::to_string(click.y) + " is outside image " + click.image +
                        " (" + std::to_string(image.width) + "x" + std::to_string(image.height) +
                        ", x in [0, " + std::to_string(image.width) + "), y in [0, " +
                        std::to_string(image.height) + "))");
    }
  }
  return Status::Ok();
}

Result<NamedMask> MaskFromImage(const NamedImage& image, int num_classes, bool allow_unknown) {
  NamedMask mask;
  mask.name = image.name;
  mask.path = image.path;
  mask.width = image.image.width;
  mask.height = image.image.height;
  if (image.image.pixel_type == PixelType::kFloat32) {
    return InvalidArgument(image.path + ": a mask must be an integer PNG, not raw float");
  }
  if (image.image.source_channels != 1) {
    return InvalidArgument(image.path + ": a mask must be a single-channel grayscale PNG, got " +
                           std::to_string(image.image.source_channels) + " channels");
  }
  mask.class_ids.resize(image.image.pixels.size());
  bool labelled = false;
  for (size_t i = 0; i < image.image.pixels.size(); ++i) {
    const float v = image.image.pixels[i];
    const bool unknown = allow_unknown && v == static_cast<float>(kUnknownClass);
    if (!unknown && (v < 0 || v >= static_cast<float>(num_classes))) {
      return OutOfRange(image.path + ": mask value " + std::to_string(static_cast<int64_t>(v)) +
                        " at x=" + std::to_string(i % mask.width) +
                        " y=" + std::to_string(i / mask.width) + " is not a class id in [0, " +
                        std::to_string(num_classes) + ")" +
                        (allow_unknown ? " nor 255 (unknown)" : ""));
    }
    labelled = labelled || !unknown;
    mask.class_ids[i] = static_cast<int64_t>(v);
  }
  if (!labelled) {
    return InvalidArgument(image.path +
                           ": every pixel is 255 (unknown): the label map labels none");
  }
  return mask;
}

Result<std::vector<NamedMask>> ReadMaskDirectory(const std::string& dir,
                                                 const std::vector<NamedImage>& images,
                                                 const MaskDirectoryOptions& options) {
  Result<std::vector<std::string>> names = ListPngFiles(dir);
  if (!names.ok()) return names.status();
  std::set<std::string> mask_names(names->begin(), names->end());
  std::set<std::string> image_names;
  for (const NamedImage& named : images) image_names.insert(named.name);
  for (const std::string& name : mask_names) {
    if (image_names.count(name) == 0) {
      return NotFound((fs::path(dir) / name).string() +
                      ": mask has no image of the same name in the images directory");
    }
  }
  std::vector<NamedMask> masks;
  for (const NamedImage& named : images) {
    const std::string path = (fs::path(dir) / named.name).string();
    if (mask_names.count(named.name) == 0) {
      if (options.require_all) {
        return NotFound(path + ": missing mask for image " + named.path);
      }
      continue;
    }
    Result<Image> decoded = ReadPngFile(path, options.limits);
    if (!decoded.ok()) return decoded.status();
    if (decoded->width != named.image.width || decoded->height != named.image.height) {
      return InvalidArgument(path + ": mask is " + std::to_string(decoded->width) + "x" +
                             std::to_string(decoded->height) + " but image " + named.path + " is " +
                             std::to_string(named.image.width) + "x" +
                             std::to_string(named.image.height));
    }
    Result<NamedMask> mask = MaskFromImage(NamedImage{named.name, path, std::move(decoded).value()},
                                           options.num_classes, options.allow_unknown);
    if (!mask.ok()) return mask.status();
    masks.push_back(std::move(mask).value());
  }
  return masks;
}

}  // namespace clickdiff

// io/dataset_files.h — readers and validators for the offline interchange formats (DESIGN.md):
// an images directory of PNG files, a clicks JSON Lines file and a masks directory whose files
// carry the same names as the images.
//
// Plain structs, no LibTorch. All functions are free functions without shared state and are safe
// to call concurrently. Nothing throws and nothing is skipped silently: the first problem stops the
// load with a Status whose message names the FILE (and, for the clicks file, the LINE, as
// "path:line: ..."), e.g. "train/clicks.jsonl:17: click x=300 y=12 is outside image a.png
// (256x216)".
#pragma once

#include <istream>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_codec.h"

namespace clickdiff {

// One click, as read from a line of the clicks file.
//   {"image": "a.png", "x": 12, "y": 40, "class": 1, "positive": true,
//    "click_id": "c-17", "annotator": "ann3"}
// "image", "x", "y" are required; "class" is required for positive clicks and defaults to 0
// (background) for negative ones ("positive": false marks a pixel that is certainly not the given
// class — with no class, certainly background). "click_id" may be a string or an integer (kept as
// text). x is the column, y the row, both 0-based pixels of the image at its own size.
struct Click {
  std::string image;  // file name inside the images directory, e.g. "a.png"
  int x = 0;
  int y = 0;
  int class_id = 0;
  bool positive = true;
  std::optional<std::string> click_id;
  std::optional<std::string> annotator;
  std::string file;  // the clicks file this came from, for messages
  int line = 0;      // 1-based line number in `file`

  // "file:line", the prefix of every message about this click.
  std::string Where() const { return file + ":" + std::to_string(line); }
};

// An image file decoded from a directory.
struct NamedImage {
  std::string name;  // file name, e.g. "a.png"
  std::string path;  // full path it was read from
  Image image;
};

// A class-id mask decoded from a directory; `class_ids` is row-major, width * height values.
struct NamedMask {
  std::string name;
  std::string path;
  int width = 0;
  int height = 0;
  std::vector<int64_t> class_ids;
};

struct ClickFileOptions {
  int num_classes = 2;                // class ids must lie in [0, num_classes)
  bool allow_unknown_fields = false;  // by default an unknown key is an error (catches typos)
};

// Lists the *.png files of `dir` (regular files, non-recursive), sorted by name.
// Errors: kNotFound when `dir` is not a readable directory; kInvalidArgument when it holds no PNG.
Result<std::vector<std::string>> ListPngFiles(const std::string& dir);

// Reads and decodes every PNG of `dir`, in ListPngFiles order, colour as `color` says. Any
// unreadable, truncated or oversized file stops the load with that file's error.
Result<std::vector<NamedImage>> ReadImageDirectory(const std::string& dir,
                                                   const ImageLimits& limits = {},
                                                   DecodeColor color = DecodeColor::kGray);

// Parses clicks JSON Lines from `in` (blank lines allowed); errors name "source:line" and the
// field. ReadClicksFile's parser, for text that is not in a file.
Result<std::vector<Click>> ParseClicks(std::istream& in, const std::string& source,
                                       const ClickFileOptions& options = {});

// Parses a clicks JSON Lines file (blank lines allowed). Checks syntax, required fields, types and
// the class range; errors name "path:line" and the field. Bounds and file names need the images:
// see ValidateClicks.
Result<std::vector<Click>> ReadClicksFile(const std::string& path,
                                          const ClickFileOptions& options = {});

// Checks every click against the decoded images: the named image exists (errors: kNotFound naming
// the click's file:line and the missing image) and (x, y) lies inside it (kOutOfRange with the
// image size).
Status ValidateClicks(const std::vector<Click>& clicks, const std::vector<NamedImage>& images);

struct MaskDirectoryOptions {
  int num_classes = 2;      // every mask value must be an integer in [0, num_classes)
  bool require_all = true;  // every image must have a mask (otherwise missing ones are allowed)
  // Partial label maps (scribbles): 255 (unknown) is allowed too, and at least one pixel must
  // carry a class.
  bool allow_unknown = false;
  ImageLimits limits;
};

// Reads the masks of `dir` for `images` (matched by file name), returned in `images` order (with
// require_all = false, images without a mask are left out of the result). Errors naming the mask
// file: a mask without a matching image, a missing mask (when required), a mask whose size differs
// from its image's, a value outside [0, num_classes) (and not 255 with allow_unknown; every pixel
// 255), an unreadable or truncated PNG.
Result<std::vector<NamedMask>> ReadMaskDirectory(const std::string& dir,
                                                 const std::vector<NamedImage>& images,
                                                 const MaskDirectoryOptions& options = {});

// Converts a decoded mask image to class ids, checking that it is a single-channel integer image
// and that every value lies in [0, num_classes), or is 255 (unknown) with `allow_unknown` (a
// partial label map, which must label at least one pixel). Messages name `image.path` and the
// pixel.
Result<NamedMask> MaskFromImage(const NamedImage& image, int num_classes,
                                bool allow_unknown = false);

}  // namespace clickdiff

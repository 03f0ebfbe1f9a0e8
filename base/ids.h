// base/ids.h — what an id (dataset, image_id, click_id, label_id) may hold. Ids become RocksDB
// keys, ZeroMQ topics and file names (`clickdiff subscribe --out`), so they are checked where
// events enter (nodes/decode.h) and again by every writer that makes a path of one.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace clickdiff {

// An id with a model version and ".png" appended (subscribe --out --versions) still fits a file
// name (255 bytes).
inline constexpr size_t kMaxIdBytes = 200;

// An id is 1 to `max_bytes` bytes of ASCII letters, digits, space and . _ - + = @ # , : ~ ( ) [ ],
// or bytes >= 0x80 (UTF-8 names), and is not "." or "..": so it is always one safe file name
// (never '/', '\', NUL, a control character, quotes, '$', '`', ';', '|', '&', '<', '>', '*',
// '?', '!' or '%', nor a parent directory; quote it in shells all the same: it may hold spaces).
// Returns "" for a valid id, else what is wrong with it, starting with `field`.
std::string IdProblem(std::string_view field, std::string_view id, size_t max_bytes = kMaxIdBytes);

}  // namespace clickdiff

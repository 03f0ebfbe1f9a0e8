// io/keys.h — RocksDB keys of the service's records (io/store.h families). Ids are joined with
// a NUL byte, which validation forbids inside ids, so a key never aliases another and a prefix
// scan of one image never reaches another image whose id merely starts the same way.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace clickdiff::keys {

inline std::string Image(const std::string& dataset, const std::string& image_id) {
  return dataset + '\0' + image_id;
}
// The dataset and image id an Image key joins; nullopt for a key that joins none.
inline std::optional<std::pair<std::string, std::string>> ImageIds(std::string_view image_key) {
  const size_t split = image_key.find('\0');
  if (split == std::string_view::npos ||
      image_key.find('\0', split + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  return std::make_pair(std::string(image_key.substr(0, split)),
                        std::string(image_key.substr(split + 1)));
}
// Prefix of every per-image record under `image` (clicks, labels, pending clicks).
inline std::string Under(const std::string& image_key) { return image_key + '\0'; }
inline std::string Child(const std::string& image_key, const std::string& id) {
  return Under(image_key) + id;
}

// A model version, zero-padded so that versions sort numerically.
inline std::string Version(uint64_t version) {
  char key[24];
  std::snprintf(key, sizeof key, "%020llu", static_cast<unsigned long long>(version));
  return key;
}
// kMetadata: the highest mask sequence number reserved for ZeroMQ (decimal; ZmqServer::
// ContinueSequence), so numbering goes on above it after a restart.
inline std::string MaskSequence() { return "zmq:sequence"; }
// kMetadata: records owed to Kafka topics by one outbox (io/outbox.h: "intake", "trainer"), in
// the order they were put; OutboxPrefix("") holds every outbox's.
inline std::string OutboxPrefix(const std::string& outbox) {
  const std::string all = std::string("outbox") + '\0';
  return outbox.empty() ? all : all + outbox + '\0';
}
inline std::string OutboxKey(const std::string& outbox, uint64_t sequence) {
  return OutboxPrefix(outbox) + Version(sequence);
}
// kMetadata: the offset after the last record of a topic partition the broker acknowledged to
// an outbox (decimal): where a restart looks for records a crash left undeleted but delivered.
inline std::string OutboxAckedPrefix(const std::string& outbox) {
  return std::string("outbox-acked") + '\0' + outbox + '\0';
}
inline std::string OutboxAcked(const std::string& outbox, const std::string& topic,
                               int32_t partition) {
  char digits[16];
  std::snprintf(digits, sizeof digits, "%010u", static_cast<uint32_t>(partition));
  return OutboxAckedPrefix(outbox) + topic + '\0' + digits;
}
// kMetadata: the ModelUpdate of a version the service trained (clicks seen, steps, loss).
inline std::string ModelUpdatePrefix() { return "model:update:"; }
inline std::string ModelUpdate(uint64_t version) { return ModelUpdatePrefix() + Version(version); }

// kMetrics: the fresh-click checks (a v1::Metrics holding fresh_clicks) of the masks a model
// version drew for a dataset's images, written by the click intake; under ClickChecksPrefix("")
// for every dataset.
inline std::string ClickChecksPrefix(const std::string& dataset) {
  const std::string all = std::string("clicks") + '\0';
  return dataset.empty() ? all : all + dataset + '\0';
}
inline std::string ClickChecks(const std::string& dataset, uint64_t version) {
  return ClickChecksPrefix(dataset) + Version(version);
}

}  // namespace clickdiff::keys

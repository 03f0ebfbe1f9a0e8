#include "io/curve_key.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace clickdiff {
namespace {

namespace fs = std::filesystem;

constexpr size_t kZ85Chars = 40;

// Creates `path` with `mode` (never through a symbolic link, never over an existing file: no
// other user can have it open before the first byte) and writes `text`; a failed write removes
// the file again.
Status WriteNewFile(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return FailedPrecondition(path + ": exists; a key file is never overwritten");
    }
    return Unavailable(path + ": cannot create: " + std::strerror(errno));
  }
  const bool written = fchmod(fd, mode) == 0 &&  // exactly `mode`, whatever the umask
                       write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       fsync(fd) == 0;
  const int error = errno;
  close(fd);
  if (written) return Status::Ok();
  unlink(path.c_str());
  return Unavailable(path + ": cannot write: " + std::strerror(error));
}

std::string KeyDocument(const CurveKeyPair& pair, bool with_secret) {
  YAML::Emitter out;
  out << YAML::Comment(with_secret ? "clickdiff CURVE key pair (clickdiff keygen): keep it secret"
                                   : "clickdiff CURVE public key (clickdiff keygen)");
  out << YAML::BeginMap << YAML::Key << "public_key" << YAML::Value << YAML::DoubleQuoted
      << pair.public_key;
  if (with_secret) {
    out << YAML::Key << "secret_key" << YAML::Value << YAML::DoubleQuoted << pair.secret_key;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace

Result<CurveKey> DecodeCurveKey(const std::string& z85, const std::string& name) {
  if (z85.size() != kZ85Chars) {
    return InvalidArgument(name + ": a CURVE key is 40 Z85 characters, got " +
                           std::to_string(z85.size()));
  }
  CurveKey key{};
  // zmq_z85_decode rejects characters outside the Z85 alphabet (returns null, errno EINVAL).
  if (zmq_z85_decode(key.data(), z85.c_str()) == nullptr) {
    return InvalidArgument(name + ": not a valid Z85 CURVE key (character outside Z85)");
  }
  return key;
}

Result<CurveKeyPair> NewCurveKeyPair() {
  if (zmq_has("curve") == 0) {
    return Unavailable("this libzmq was built without CURVE (libsodium): no key pairs");
  }
  std::array<char, kZ85Chars + 1> public_z85{};
  std::array<char, kZ85Chars + 1> secret_z85{};
  if (zmq_curve_keypair(public_z85.data(), secret_z85.data()) != 0) {
    return Internal(std::string("cannot generate a CURVE key pair: ") + zmq_strerror(errno));
  }
  return CurveKeyPair{public_z85.data(), secret_z85.data()};
}

Status CheckCurveKeyPair(const CurveKeyPair& pair, const std::string& name) {
  CLICKDIFF_RETURN_IF_ERROR(DecodeCurveKey(pair.secret_key, name + " secret key").status());
  CLICKDIFF_RETURN_IF_ERROR(DecodeCurveKey(pair.public_key, name + " public key").status());
  std::array<char, kZ85Chars + 1> derived{};
  if (zmq_curve_public(derived.data(), pair.secret_key.c_str()) != 0 ||
      pair.public_key != derived.data()) {
    return InvalidArgument(name + ": the public key does not belong to the secret key");
  }
  return Status::Ok();
}

Status WriteCurveKeyFiles(const CurveKeyPair& pair, const std::string& path) {
  CLICKDIFF_RETURN_IF_ERROR(CheckCurveKeyPair(pair, path));
  CLICKDIFF_RETURN_IF_ERROR(WriteNewFile(path, KeyDocument(pair, true), 0600));
  // The public half may replace an older one: written aside, then renamed over it.
  const std::string pub = path + ".pub";
  const std::string aside = pub + ".new";
  std::error_code ec;
  fs::remove(aside, ec);
  CLICKDIFF_RETURN_IF_ERROR(WriteNewFile(aside, KeyDocument(pair, false), 0644));
  fs::rename(aside, pub, ec);
  if (ec) return Unavailable(pub + ": cannot write: " + ec.message());
  return Status::Ok();
}

Result<CurveKeyPair> ReadCurveKeyFile(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return NotFound(path + ": no such key file");
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path + ": not a key file: " + e.what());
  }
  if (!doc.IsMap() || !doc["public_key"] || !doc["public_key"].IsScalar()) {
    return InvalidArgument(path + ": not a key file (no public_key; clickdiff keygen writes them)");
  }
  CurveKeyPair pair;
  pair.public_key = doc["public_key"].Scalar();
  if (doc["secret_key"]) {
    if (!doc["secret_key"].IsScalar()) return InvalidArgument(path + ": secret_key is not a key");
    pair.secret_key = doc["secret_key"].Scalar();
    CLICKDIFF_RETURN_IF_ERROR(CheckCurveKeyPair(pair, path));
  } else {
    CLICKDIFF_RETURN_IF_ERROR(DecodeCurveKey(pair.public_key, path + " public_key").status());
  }
  return pair;
}

Result<CurveKeyPair> ReadCurveKeyPairFile(const std::string& path) {
  Result<CurveKeyPair> pair = ReadCurveKeyFile(path);
  if (!pair.ok()) return pair;
  if (pair->secret_key.empty()) {
    return InvalidArgument(path + ": holds no secret_key (a .pub file?)");
  }
  std::error_code ec;
  const fs::perms mode = fs::status(path, ec).permissions();
  if (!ec && (mode & (fs::perms::group_all | fs::perms::others_all)) != fs::perms::none) {
    spdlog::warn("{}: a secret key that other users may read (chmod 600 {})", path, path);
  }
  return pair;
}

Result<CurveKeyPair> ServerKeyPair(const ZmqCurveConfig& curve) {
  if (!curve.server_key_file.empty()) {
    Result<CurveKeyPair> pair = ReadCurveKeyPairFile(curve.server_key_file);
    if (!pair.ok()) return pair.status().WithContext("zmq.curve.server_key_file");
    return pair;
  }
  CurveKeyPair pair{curve.server_public_key, curve.server_secret_key};
  CLICKDIFF_RETURN_IF_ERROR(
      DecodeCurveKey(pair.secret_key, "zmq.curve.server_secret_key").status());
  // A public key that does not belong to the secret would make every client handshake fail
  // silently; say so at start instead.
  CLICKDIFF_RETURN_IF_ERROR(
      DecodeCurveKey(pair.public_key, "zmq.curve.server_public_key").status());
  if (!CheckCurveKeyPair(pair, "zmq.curve").ok()) {
    return InvalidArgument(
        "zmq.curve.server_public_key: does not belong to zmq.curve.server_secret_key");
  }
  return pair;
}

Result<std::set<CurveKey>> AllowedClientKeys(const ZmqCurveConfig& curve) {
  std::set<CurveKey> allowed;
  for (size_t i = 0; i < curve.client_keys.size(); ++i) {
    Result<CurveKey> key =
        DecodeCurveKey(curve.client_keys[i], "zmq.curve.client_keys[" + std::to_string(i) + "]");
    if (!key.ok()) return key.status();
    allowed.insert(*key);
  }
  if (curve.client_keys_dir.empty()) return allowed;
  std::error_code ec;
  if (!fs::is_directory(curve.client_keys_dir, ec)) {
    return NotFound("zmq.curve.client_keys_dir: " + curve.client_keys_dir + ": no such directory");
  }
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(curve.client_keys_dir, ec)) {
    if (entry.path().extension() == ".pub") files.push_back(entry.path());
  }
  if (ec) {
    return Unavailable("zmq.curve.client_keys_dir: " + curve.client_keys_dir + ": " + ec.message());
  }
  for (const fs::path& file : files) {
    Result<CurveKeyPair> pair = ReadCurveKeyFile(file.string());
    if (!pair.ok()) return pair.status().WithContext("zmq.curve.client_keys_dir");
    allowed.insert(*DecodeCurveKey(pair->public_key, file.string()));
  }
  return allowed;
}

}  // namespace clickdiff

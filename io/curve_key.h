// io/curve_key.h — CURVE keys in ZeroMQ's Z85 text form (40 characters for 32 bytes), shared by
// ZmqServer and the ZeroMQ clients so both validate keys the same way, and the key files of
// `clickdiff keygen`.
//
// Key files are YAML: a key pair file (mode 0600) holds `public_key` and `secret_key`, its
// public half FILE.pub (mode 0644) `public_key` alone; a server's allow-list directory
// (zmq.curve.client_keys_dir) holds the .pub files of the clients it lets in.
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <string>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

using CurveKey = std::array<uint8_t, 32>;

// Decodes a Z85 key of exactly 40 characters. A wrong length or a character outside Z85 gives
// InvalidArgument naming `name` (e.g. "zmq.curve.server_secret_key"); the key itself is never put
// in the message because it may be a secret.
Result<CurveKey> DecodeCurveKey(const std::string& z85, const std::string& name);

// A key pair in Z85; secret_key is empty for a public key alone.
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};

// A fresh key pair (libsodium through zmq_curve_keypair). Unavailable without CURVE support.
Result<CurveKeyPair> NewCurveKeyPair();

// Checks that `pair.public_key` belongs to `pair.secret_key`; InvalidArgument naming `name`.
Status CheckCurveKeyPair(const CurveKeyPair& pair, const std::string& name);

// Writes `pair` to `path` (mode 0600, created anew: an existing file is FailedPrecondition) and its
// public key to `path`.pub (mode 0644, replaced).
Status WriteCurveKeyFiles(const CurveKeyPair& pair, const std::string& path);

// Reads a key file: a pair, or a .pub file (secret_key empty). Errors name the file: NotFound,
// InvalidArgument for YAML that is not a key file, a malformed key or a pair that does not match.
Result<CurveKeyPair> ReadCurveKeyFile(const std::string& path);

// A key pair file (ReadCurveKeyFile) that must hold the secret key: InvalidArgument for a .pub.
Result<CurveKeyPair> ReadCurveKeyPairFile(const std::string& path);

// The server's key pair: zmq.curve.server_key_file when set (it must hold the secret key), else
// server_public_key and server_secret_key.
Result<CurveKeyPair> ServerKeyPair(const ZmqCurveConfig& curve);

// The clients the server lets in: zmq.curve.client_keys and the public keys of every *.pub file
// in client_keys_dir. Errors name the bad key or file.
Result<std::set<CurveKey>> AllowedClientKeys(const ZmqCurveConfig& curve);

}  // namespace clickdiff

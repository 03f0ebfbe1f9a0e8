// `clickdiff keygen --out FILE`: a CURVE key pair for the ZeroMQ sockets, as files
// (io/curve_key.h): FILE (0600) for the one who owns it — the service's zmq.curve.server_key_file
// or a client's zmq.curve.client_key_file — and FILE.pub for the other side: clients' .pub files go
// in the server's zmq.curve.client_keys_dir. Prints the public key.
#include <memory>
#include <ostream>
#include <string>

#include "io/curve_key.h"
#include "services/command.h"

namespace clickdiff {
namespace {

Status RunKeygen(const std::string& path, std::ostream& out) {
  Result<CurveKeyPair> pair = NewCurveKeyPair();
  if (!pair.ok()) return pair.status();
  CLICKDIFF_RETURN_IF_ERROR(WriteCurveKeyFiles(*pair, path));
  out << pair->public_key << "\n";
  return Status::Ok();
}

}  // namespace

void AddKeygenCommand(CLI::App& app, CommandContext& context) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "keygen",
      "write a CURVE key pair for the ZeroMQ sockets to FILE (secret, 0600) and FILE.pub, and "
      "print the public key");
  cmd->add_option("--out", *path, "key pair file to create (never overwritten)")->required();
  cmd->callback([&context, path] { Finish(context, RunKeygen(*path, *context.out)); });
}

}  // namespace clickdiff

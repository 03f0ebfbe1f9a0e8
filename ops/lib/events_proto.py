"""clickdiff's event schemas for the ops scripts' Python: events_pb2, compiled by protoc.

    sys.path.insert(0, "ops/lib"); import events_proto; pb = events_proto.load()

load() runs protoc on schemas/events.proto into a temporary directory (removed at exit) and
imports the module from there, so a script always speaks the checked-out schema. Needs protoc and
python3-protobuf (ops/setup.sh installs both).
"""
import atexit
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load():
    """Returns the compiled events_pb2 module."""
    out = tempfile.mkdtemp(prefix="clickdiff-proto-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    subprocess.run(["protoc", f"--proto_path={ROOT}", f"--python_out={out}",
                    str(ROOT / "schemas" / "events.proto")], check=True)
    sys.path.insert(0, out)
    from schemas import events_pb2  # pylint: disable=import-outside-toplevel
    return events_pb2

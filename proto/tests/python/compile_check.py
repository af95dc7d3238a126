#!/usr/bin/env python3
"""Compatibility check of proto/*.proto with an independent compiler (grpc_tools.protoc).

1. Compiles audio_service.proto and audio_sync.proto to Python (messages and gRPC stubs) and
   imports the generated modules.
2. Asserts every legacy field by name, number, type and label, and every legacy method by
   name, types and streaming flags, against the literal table below.
3. Compiles the ORIGINAL Music262 schema (proto/tests/original/, kept verbatim) and checks that each of its
   elements is present unchanged in ours, and that bytes cross between the two schemas in both
   directions with the legacy fields intact.
4. Checks that Python encodes legacy messages to the same bytes as the hand-built vectors of
   proto/tests/legacy_wire.rs.

Usage: compile_check.py [PROTO_DIR]   (default: the directory two levels above this file).
Prints one line per check and a final 'N passed, M failed' line; exits 1 on any failure.
"""

import importlib
import os
import sys
import tempfile
import traceback

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", ".."))
FILES = ["audio_service.proto", "audio_sync.proto"]

# The original Music262 protocol, as old clients and scripts were built against it, kept
# verbatim in proto/tests/original/ (shared with the wire compliance test).
ORIGINAL_DIR = os.path.join(HERE, "..", "original")
ORIGINAL = {name: open(os.path.join(ORIGINAL_DIR, name)).read() for name in FILES}

S, B, I32, I64 = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
)
REP, OPT = FieldDescriptor.LABEL_REPEATED, FieldDescriptor.LABEL_OPTIONAL

# (module, message, field, number, type, label)
LEGACY_FIELDS = [
    ("audio_service_pb2", "PlaylistResponse", "song_names", 1, S, REP),
    ("audio_service_pb2", "LoadAudioRequest", "song_num", 1, I32, OPT),
    ("audio_service_pb2", "AudioChunk", "data", 1, B, OPT),
    ("audio_service_pb2", "PeerListResponse", "client_ips", 1, S, REP),
    ("audio_sync_pb2", "PingResponse", "t1", 1, I32, OPT),
    ("audio_sync_pb2", "PingResponse", "t2", 2, I32, OPT),
    ("audio_sync_pb2", "MusicRequest", "action", 1, S, OPT),
    ("audio_sync_pb2", "MusicRequest", "wall_clock_ns", 2, I64, OPT),
    ("audio_sync_pb2", "MusicRequest", "wait_time_ms", 3, I64, OPT),
    ("audio_sync_pb2", "MusicRequest", "position", 4, I32, OPT),
    ("audio_sync_pb2", "MusicRequest", "song_num", 5, I32, OPT),
    ("audio_sync_pb2", "GetPositionResponse", "position", 1, I32, OPT),
    ("audio_sync_pb2", "GossipRequest", "peer_list", 1, S, REP),
]

# (module, service, method, input, output, client streaming, server streaming)
LEGACY_METHODS = [
    ("audio_service_pb2", "audio_service", "GetPlaylist", "PlaylistRequest", "PlaylistResponse", False, False),
    ("audio_service_pb2", "audio_service", "LoadAudio", "LoadAudioRequest", "AudioChunk", False, True),
    ("audio_service_pb2", "audio_service", "GetPeerClientIPs", "PeerListRequest", "PeerListResponse", False, False),
    ("audio_sync_pb2", "ClientHandler", "Ping", "PingRequest", "PingResponse", False, False),
    ("audio_sync_pb2", "ClientHandler", "SendMusicCommand", "MusicRequest", "MusicResponse", False, False),
    ("audio_sync_pb2", "ClientHandler", "GetPosition", "GetPositionRequest", "GetPositionResponse", False, False),
    ("audio_sync_pb2", "ClientHandler", "Gossip", "GossipRequest", "GossipResponse", False, False),
    ("audio_sync_pb2", "ClientHandler", "Exit", "ExitRequest", "ExitResponse", False, False),
]


def run_protoc(args):
    code = protoc.main(["grpc_tools.protoc"] + args)
    assert code == 0, f"grpc_tools.protoc {' '.join(args)} exited with {code}"


def descriptor_set(include_dir, out_path):
    run_protoc([f"-I{include_dir}", f"--descriptor_set_out={out_path}"] + FILES)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out_path, "rb") as f:
        fds.ParseFromString(f.read())
    return fds


class Checks:
    def __init__(self, work):
        self.work = work
        self.mods = {}
        self.ours = None
        self.original = None

    # 1 -----------------------------------------------------------------------------------------
    def check_compiles_and_imports(self):
        out = os.path.join(self.work, "gen")
        os.makedirs(out)
        run_protoc([f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}"] + FILES)
        sys.path.insert(0, out)
        for name in ["audio_service_pb2", "audio_service_pb2_grpc", "audio_sync_pb2", "audio_sync_pb2_grpc"]:
            self.mods[name] = importlib.import_module(name)
        assert self.mods["audio_service_pb2"].DESCRIPTOR.package == "audio_service"
        assert self.mods["audio_sync_pb2"].DESCRIPTOR.package == "client"

    def check_grpc_stubs_have_legacy_methods(self):
        svc = self.mods["audio_service_pb2_grpc"]
        sync = self.mods["audio_sync_pb2_grpc"]
        for cls, methods in [
            (svc.audio_serviceServicer, ["GetPlaylist", "LoadAudio", "GetPeerClientIPs", "RegisterPeer"]),
            (sync.ClientHandlerServicer, ["Ping", "SendMusicCommand", "GetPosition", "Gossip", "Exit", "Exchange"]),
        ]:
            for m in methods:
                assert callable(getattr(cls, m, None)), f"{cls.__name__}.{m} missing"
        assert hasattr(svc, "audio_serviceStub") and hasattr(sync, "ClientHandlerStub")

    # 2 -----------------------------------------------------------------------------------------
    def check_legacy_fields_by_name_and_number(self):
        for mod, msg, field, number, ftype, label in LEGACY_FIELDS:
            d = getattr(self.mods[mod], msg).DESCRIPTOR
            f = d.fields_by_name.get(field)
            assert f is not None, f"{msg}.{field} missing"
            assert f.number == number, f"{msg}.{field}: number {f.number} != {number}"
            assert f.type == ftype, f"{msg}.{field}: type {f.type} != {ftype}"
            is_repeated = getattr(f, "is_repeated", None)
            repeated = is_repeated if isinstance(is_repeated, bool) else f.label == REP
            assert repeated == (label == REP), f"{msg}.{field}: label"
            assert f.containing_oneof is None, f"{msg}.{field} is in a oneof"
            assert d.fields_by_number[number].name == field, f"{msg}: number {number} reused"

    def check_legacy_methods(self):
        for mod, svc, method, inp, out, cs, ss in LEGACY_METHODS:
            s = self.mods[mod].DESCRIPTOR.services_by_name[svc]
            m = s.methods_by_name.get(method)
            assert m is not None, f"{svc}.{method} missing"
            assert m.input_type.name == inp and m.output_type.name == out, f"{svc}.{method}: types"
            assert m.client_streaming == cs and m.server_streaming == ss, f"{svc}.{method}: streaming"

    # 3 -----------------------------------------------------------------------------------------
    def check_original_schema_is_contained_unchanged(self):
        orig_dir = os.path.join(self.work, "original")
        os.makedirs(orig_dir)
        for name, text in ORIGINAL.items():
            with open(os.path.join(orig_dir, name), "w") as f:
                f.write(text)
        self.original = descriptor_set(orig_dir, os.path.join(self.work, "original.pb"))
        self.ours = descriptor_set(PROTO_DIR, os.path.join(self.work, "ours.pb"))
        ours = {f.name: f for f in self.ours.file}
        checked = 0
        for of in self.original.file:
            nf = ours[of.name]
            assert nf.package == of.package, f"{of.name}: package {nf.package!r}"
            nmsgs = {m.name: m for m in nf.message_type}
            for om in of.message_type:
                assert om.name in nmsgs, f"message {om.name} missing"
                nfields = {f.number: f for f in nmsgs[om.name].field}
                for ofield in om.field:
                    nfield = nfields.get(ofield.number)
                    assert nfield is not None, f"{om.name}: field {ofield.number} missing"
                    for attr in ["name", "number", "type", "label", "type_name", "json_name"]:
                        assert getattr(nfield, attr) == getattr(ofield, attr), (
                            f"{om.name}.{ofield.name}: {attr} {getattr(nfield, attr)!r} != {getattr(ofield, attr)!r}"
                        )
                    assert not nfield.proto3_optional and not nfield.HasField("oneof_index"), (
                        f"{om.name}.{ofield.name}: presence changed"
                    )
                    checked += 1
            nsvcs = {s.name: s for s in nf.service}
            for osvc in of.service:
                assert osvc.name in nsvcs, f"service {osvc.name} missing"
                nmeth = {m.name: m for m in nsvcs[osvc.name].method}
                for om in osvc.method:
                    nm = nmeth.get(om.name)
                    assert nm is not None, f"{osvc.name}.{om.name} missing"
                    for attr in ["input_type", "output_type", "client_streaming", "server_streaming"]:
                        assert getattr(nm, attr) == getattr(om, attr), f"{osvc.name}.{om.name}: {attr}"
                    checked += 1
        assert checked == len(LEGACY_FIELDS) + len(LEGACY_METHODS), f"checked {checked} elements"

    def _original_class(self, full_name):
        pool = descriptor_pool.DescriptorPool()
        for f in self.original.file:
            pool.Add(f)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))

    def check_bytes_cross_between_original_and_ours(self):
        pb = self.mods["audio_sync_pb2"]
        ours = pb.MusicRequest(
            action="load", wall_clock_ns=5, wait_time_ms=6, position=7, song_num=8,
            position_frame=9, position_ms=10, song_name="x.wav",
        )
        Old = self._original_class("client.MusicRequest")
        old = Old.FromString(ours.SerializeToString())
        assert (old.action, old.wall_clock_ns, old.wait_time_ms, old.position, old.song_num) == ("load", 5, 6, 7, 8)
        back = pb.MusicRequest.FromString(Old(action="stop", position=-1, song_num=2).SerializeToString())
        assert (back.action, back.position, back.song_num) == ("stop", -1, 2)
        assert not back.HasField("position_frame") and not back.HasField("position_ms")

        svc = self.mods["audio_service_pb2"]
        OldChunk = self._original_class("audio_service.AudioChunk")
        chunk = OldChunk.FromString(svc.AudioChunk(data=b"\x00RIFF", total_size=9, offset=4).SerializeToString())
        assert chunk.data == b"\x00RIFF"
        OldPlaylist = self._original_class("audio_service.PlaylistResponse")
        new_playlist = svc.PlaylistResponse(song_names=["a.wav"], songs=[svc.SongInfo(name="a.wav", frames=3)])
        assert list(OldPlaylist.FromString(new_playlist.SerializeToString()).song_names) == ["a.wav"]

    # 4 -----------------------------------------------------------------------------------------
    def check_encoding_matches_hand_built_vectors(self):
        pb = self.mods["audio_sync_pb2"]
        svc = self.mods["audio_service_pb2"]
        wall = 1_700_000_000_123_456_789
        wall_varint = bytearray()
        v = wall
        while True:
            b, v = v & 0x7F, v >> 7
            wall_varint.append(b | (0x80 if v else 0))
            if not v:
                break
        expected = b"\x0a\x04play" + b"\x10" + bytes(wall_varint) + b"\x18\xf4\x03" + b"\x20\xbc\x03" + b"\x28\x03"
        got = pb.MusicRequest(action="play", wall_clock_ns=wall, wait_time_ms=500, position=444, song_num=3)
        assert got.SerializeToString() == expected, got.SerializeToString().hex()
        assert svc.LoadAudioRequest(song_num=-1).SerializeToString() == b"\x08" + b"\xff" * 9 + b"\x01"
        assert pb.PingResponse(t1=123_456, t2=-2).SerializeToString()[:4] == b"\x08\xc0\xc4\x07"
        assert pb.GetPositionResponse(position=300).SerializeToString() == b"\x08\xac\x02"
        for empty in [pb.PingRequest(), pb.MusicResponse(), pb.ExitRequest(), svc.PlaylistRequest()]:
            assert empty.SerializeToString() == b""

    def check_peer_frame_envelope(self):
        pb = self.mods["audio_sync_pb2"]
        d = pb.PeerFrame.DESCRIPTOR
        members = {f.name: f.number for f in d.oneofs_by_name["body"].fields}
        assert members == {
            "hello": 1, "probe": 2, "probe_reply": 3, "state": 4, "ready": 5, "gossip": 6, "leave": 7,
        }, members
        assert 14 not in members.values() and 15 not in members.values()
        frame = pb.PeerFrame(hello=pb.SyncHello(node_id=2**64 - 1, protocol_version=1, listen_addr="h:1"))
        assert pb.PeerFrame.FromString(frame.SerializeToString()) == frame


def main():
    passed, failed = 0, 0
    with tempfile.TemporaryDirectory() as work:
        checks = Checks(work)
        for name in [n for n in Checks.__dict__ if n.startswith("check_")]:
            try:
                getattr(checks, name)()
                print(f"ok    {name}")
                passed += 1
            except Exception:  # report every failing check, not only the first
                print(f"FAIL  {name}")
                traceback.print_exc()
                failed += 1
    print(f"python: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

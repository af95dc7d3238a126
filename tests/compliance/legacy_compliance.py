#!/usr/bin/env python3
"""Wire compliance test of Music262 against the real binaries (the wire contract: docs/protocol.md).

Starts a real `music_server` (serving a temporary folder of WAV files generated here, so that
every expected value is computed independently of the Rust code) and three real
`music_client`s on loopback, then drives every gRPC method of both services
(`audio_service.audio_service` and `client.ClientHandler`) as a caller that is not a peer (a
script, a remote control) would, with stubs generated at run time by grpcio-tools from
`proto/*.proto`. A legacy-only caller is emulated with the ORIGINAL Music262 schema (kept
verbatim in proto/tests/original/), so its requests carry nothing but the legacy fields and it decodes answers as an old
client would. Those three clients have no group key, so legacy behaviour must be exactly the original one; a fourth,
started with MUSIC262_GROUP_KEY, checks that calls changing playback then need the key's token (computed here with
Python's hmac, from the formula in docs/security.md) and are refused with UNAUTHENTICATED without it.

Usage: legacy_compliance.py [--bin-dir DIR] [--proto-dir DIR] [--keep]
  --bin-dir    where music_server and music_client are (default: $CARGO_TARGET_DIR/debug or
               target/debug of the repository)
  --keep       keep the work folder (songs, stubs, process outputs and logs) even on success

Prints one line per check ('ok' or 'FAIL' with the reason) and a final
'compliance: N passed, M failed' line; exits 1 if any check failed, 2 if the set-up failed.
Every process it starts is stopped before it exits, also on failure or interruption.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RPC_TIMEOUT = 5.0

# The original Music262 protocol, as old clients and scripts were built against it: what a
# legacy-only caller knows (kept verbatim in proto/tests/original/).
ORIGINAL_SCHEMA = {
    name: open(os.path.join(ROOT, "proto", "tests", "original", name)).read()
    for name in ("audio_service.proto", "audio_sync.proto")
}


class Fail(Exception):
    """A check's expectation that did not hold."""


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


# ------------------------------------------------------------------------------------------------
# Songs: generated here, parsed here, so expected metadata does not come from the code under test


def make_wav(path, rate, channels, seconds, list_chunk=False):
    """Writes a 16-bit PCM WAV file: a tone with a little noise, one second repeated."""
    import math
    import random

    rnd = random.Random(rate * 10 + channels)
    one = bytearray()
    for i in range(rate):
        for c in range(channels):
            v = int(6000 * math.sin(2 * math.pi * (330 + 110 * c) * i / rate)) + rnd.randint(-200, 200)
            one += struct.pack("<h", v)
    data = bytes(one) * seconds
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if list_chunk:
        # An extra chunk before `data`, so that data_offset is not the usual 44.
        info = b"INFOISFT" + struct.pack("<I", 10) + b"music262\x00\x00"
        body += b"LIST" + struct.pack("<I", len(info)) + info
    body += b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)


def parse_wav(raw):
    """Independent RIFF parse: the metadata a playlist entry must carry."""
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    pos, fmt, data_offset, data_len = 12, None, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", raw[pos + 8:pos + 24])
        elif cid == b"data":
            data_offset, data_len = pos + 8, size
            break
        pos += 8 + size + (size & 1)
    _, channels, rate, _, block_align, bits = fmt
    frames = data_len // block_align
    return {
        "size_bytes": len(raw),
        "content_hash": hashlib.sha256(raw).hexdigest(),
        "sample_rate": rate,
        "channels": channels,
        "bits_per_sample": bits,
        "block_align": block_align,
        "data_offset": data_offset,
        "frames": frames,
        "duration_ms": frames * 1000 // rate,
    }


# ------------------------------------------------------------------------------------------------
# Processes


def _die_with_parent():
    """In the child: get SIGKILL if this test process dies, so nothing outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A started binary: stdin to type into, stdout collected line by line."""

    def __init__(self, name, argv, work, env=None):
        self.name = name
        self.argv = argv
        self.lines = []
        self.cond = threading.Condition()
        self.out_path = os.path.join(work, f"{name}.out")
        self._out = open(self.out_path, "w")
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=work,
            env=dict(os.environ, **(env or {})),
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self._out.write(line + "\n")
            self._out.flush()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_for(self, regex, timeout, since=0):
        """The first match of `regex` in an output line from index `since` on."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and i >= len(self.lines)):
                    tail = "\n      ".join(self.lines[-8:])
                    raise Fail(f"{self.name}: no output line matching /{regex}/ within {timeout}s; last lines:\n      {tail}")
                self.cond.wait(min(left, 0.2))

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=3.0):
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit status."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGTERM)
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
            except ProcessLookupError:
                pass
        try:
            self.p.stdin.close()
        except Exception:
            pass
        self._reader.join(2)
        self._out.close()
        return self.p.returncode


# ------------------------------------------------------------------------------------------------
# The test


class Compliance:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="music262-compliance-")
        self.procs = []
        self.results = []  # (name, ok, seconds, message)

    # -- set-up ----------------------------------------------------------------------------------

    def generate_stubs(self):
        from grpc_tools import protoc

        stubs = os.path.join(self.work, "stubs")
        os.makedirs(stubs)
        files = ["audio_service.proto", "audio_sync.proto"]
        rc = protoc.main(["protoc", f"-I{self.args.proto_dir}", f"--python_out={stubs}", f"--grpc_python_out={stubs}"] + files)
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {self.args.proto_dir} ({rc})")
        sys.path.insert(0, stubs)
        import audio_service_pb2
        import audio_service_pb2_grpc
        import audio_sync_pb2
        import audio_sync_pb2_grpc

        self.S, self.SG, self.C, self.CG = audio_service_pb2, audio_service_pb2_grpc, audio_sync_pb2, audio_sync_pb2_grpc

        # The original schema, in a pool of its own (same package and message names).
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        orig = os.path.join(self.work, "original")
        os.makedirs(orig)
        for name, text in ORIGINAL_SCHEMA.items():
            with open(os.path.join(orig, name), "w") as f:
                f.write(text)
        out = os.path.join(self.work, "original.pb")
        rc = protoc.main(["protoc", f"-I{orig}", f"--descriptor_set_out={out}"] + files)
        if rc != 0:
            raise RuntimeError("grpc_tools.protoc failed on the original schema")
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        pool = descriptor_pool.DescriptorPool()
        for fd in fds.file:
            pool.Add(fd)
        self.old = lambda full: message_factory.GetMessageClass(pool.FindMessageTypeByName(full))

    def make_songs(self):
        self.audio_dir = os.path.join(self.work, "audio")
        os.makedirs(self.audio_dir)
        make_wav(os.path.join(self.audio_dir, "a-stereo-44k.wav"), 44100, 2, 30, list_chunk=True)
        make_wav(os.path.join(self.audio_dir, "b-mono-48k.wav"), 48000, 1, 30)
        make_wav(os.path.join(self.audio_dir, "c-gone.wav"), 48000, 1, 1)
        self.files = {}
        for name in sorted(os.listdir(self.audio_dir)):
            with open(os.path.join(self.audio_dir, name), "rb") as f:
                self.files[name] = f.read()
        self.meta = {name: parse_wav(raw) for name, raw in self.files.items()}

    def start(self, name, argv, env=None):
        p = Proc(name, argv, self.work, env)
        self.procs.append(p)
        return p

    def start_server(self):
        exe = os.path.join(self.args.bin_dir, "music_server")
        for _ in range(5):
            port = free_port()
            p = self.start("server", [exe, "--port", str(port), "--bind", "127.0.0.1", "--audio-dir", self.audio_dir,
                                      "--log-file", os.path.join(self.work, "server.log")])
            try:
                p.wait_for(r"listening on 127\.0\.0\.1:%d" % port, 60)
                self.server_port = port
                self.server = p
                return
            except Fail:
                if p.alive():
                    raise
                p.stop()
        raise RuntimeError("music_server did not start (5 tries)")

    def start_client(self, name, env=None):
        exe = os.path.join(self.args.bin_dir, "music_client")
        p = self.start(name, [exe, "--server", f"127.0.0.1:{self.server_port}", "--p2p-port", str(free_port()),
                              "--bind", "127.0.0.1", "--sink", "null",
                              "--log-file", os.path.join(self.work, f"{name}.log")], env)
        return p

    def client_ready(self, p):
        # The port actually used (the client takes the next one if the one asked for is taken).
        port = int(p.wait_for(r"peer endpoint on port (\d+)", 30).group(1))
        p.addr = f"127.0.0.1:{port}"
        p.wait_for(r"registered as joinable at 127\.0\.0\.1:%d" % port, 30)

    def setup(self):
        import grpc

        self.grpc = grpc
        for exe in ["music_server", "music_client"]:
            if not os.access(os.path.join(self.args.bin_dir, exe), os.X_OK):
                raise RuntimeError(f"{exe} not found in {self.args.bin_dir}; build it with: cargo build -p music262")
        self.generate_stubs()
        self.make_songs()
        self.start_server()
        # Listed by the server, then made unreadable: an unreadable file must be an error.
        os.remove(os.path.join(self.audio_dir, "c-gone.wav"))
        self.a, self.b, self.c = (self.start_client(n) for n in ["client-a", "client-b", "client-c"])
        for p in (self.a, self.b, self.c):
            self.client_ready(p)
        self.channels = []
        self.srv_chan = self.channel(f"127.0.0.1:{self.server_port}")
        self.srv = self.SG.audio_serviceStub(self.srv_chan)
        for p in (self.a, self.b, self.c):
            p.stub = self.CG.ClientHandlerStub(self.channel(p.addr))
            p.chan = self.channels[-1]
        self.playlist = self.srv.GetPlaylist(self.S.PlaylistRequest(), timeout=RPC_TIMEOUT)
        self.info = {s.name: s for s in self.playlist.songs}
        self.num = {n: i + 1 for i, n in enumerate(self.playlist.song_names)}

    def channel(self, addr):
        ch = self.grpc.insecure_channel(addr)
        self.channels.append(ch)
        return ch

    def teardown(self):
        for ch in getattr(self, "channels", []):
            ch.close()
        for p in self.procs:
            p.stop()

    # -- helpers ---------------------------------------------------------------------------------

    def call(self, fn, req):
        """(code, details) of a unary call, or of a streaming call read to its end."""
        grpc = self.grpc
        try:
            r = fn(req, timeout=RPC_TIMEOUT)
            if not hasattr(r, "SerializeToString"):
                r = list(r)
            return grpc.StatusCode.OK, r
        except grpc.RpcError as e:
            return e.code(), e.details()

    def pos(self, p):
        return p.stub.GetPosition(self.C.GetPositionRequest(), timeout=RPC_TIMEOUT)

    def state_name(self, s):
        return self.C.PlaybackState.Name(s).replace("PLAYBACK_STATE_", "")

    def brief(self, v):
        if isinstance(v, list):
            return "[" + ", ".join(self.brief(x) for x in v) + "]"
        if isinstance(v, self.C.GetPositionResponse):
            return self.show(v)
        return str(v)

    def show(self, r):
        return f"{self.state_name(r.state)} {r.song_name or '-'} frame {r.frame:.1f}"

    def until(self, what, fn, pred, timeout=10.0, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if pred(v):
                return v
            if time.monotonic() > deadline:
                raise Fail(f"timed out after {timeout}s waiting for {what}; last: {self.brief(v)}")
            time.sleep(interval)

    def group(self, *procs):
        procs = procs or (self.a, self.b)
        return lambda: [self.pos(p) for p in procs]

    def all_in(self, state, song=None, frame=None, procs=()):
        """Waits until every client (default A and B) is in `state` (and song, exact frame)."""
        st = getattr(self.C, "PLAYBACK_STATE_" + state)

        def ok(rs):
            return all(r.state == st and (song is None or r.song_name == song) and (frame is None or r.frame == frame) for r in rs)

        rs = self.until(f"{state} {song or ''} {'' if frame is None else f'at frame {frame}'} on every client",
                        lambda: [self.pos(p) for p in (procs or (self.a, self.b))], ok)
        return rs

    def cmd(self, p, **kw):
        code, r = self.call(p.stub.SendMusicCommand, self.C.MusicRequest(**kw))
        expect(code == self.grpc.StatusCode.OK, f"SendMusicCommand({kw}) to {p.name} failed: {code} {r}")

    def paused_at(self, song, frame, via=None):
        """Puts the group (A and B) on `song` paused at `frame` through commands, and waits."""
        via = via or self.a
        rs = [self.pos(p) for p in (self.a, self.b)]
        if not all(r.song_name == song and r.state != self.C.PLAYBACK_STATE_LOADING for r in rs):
            self.cmd(via, action="load", song_name=song)
            self.until(f"{song} loaded", self.group(), lambda rs: all(
                r.song_name == song and r.state in (self.C.PLAYBACK_STATE_STOPPED, self.C.PLAYBACK_STATE_PAUSED) for r in rs))
        elif any(r.state == self.C.PLAYBACK_STATE_PLAYING for r in rs):
            self.cmd(via, action="pause")  # a seek keeps playing; pause first
            self.all_in("PAUSED", song)
        self.cmd(via, action="seek", position_frame=frame)
        return self.all_in("PAUSED", song, frame)

    def connections(self, p):
        """Peer addresses in the client's `connections` table."""
        m = p.mark()
        p.send("connections")
        p.wait_for(r"^(Peer\s+(Room\s+)?Node id|no connections)", 10, since=m)
        time.sleep(0.3)
        with p.cond:
            lines = p.lines[m:]
        # Address, then the room's name (a word, or "-"), node id and transport.
        row = r"^(\S+:\d+)\s+(?:\S+\s+)?([0-9a-f]{16}|-)\s+grpc\b"
        return {mm.group(1) for mm in (re.match(row, l) for l in lines) if mm}

    def registered(self):
        return self.srv.GetPeerClientIPs(self.S.PeerListRequest(), timeout=RPC_TIMEOUT)

    # == audio_service ==========================================================================

    def check_server_playlist_legacy_names(self):
        names = list(self.playlist.song_names)
        expect(sorted(names) == sorted(self.files), f"song_names {names} != files {sorted(self.files)}")
        again = self.srv.GetPlaylist(self.S.PlaylistRequest(), timeout=RPC_TIMEOUT)
        expect(list(again.song_names) == names, "playlist order not stable between two calls")

    def check_server_playlist_metadata(self):
        songs = self.playlist.songs
        expect([s.name for s in songs] == list(self.playlist.song_names), "songs[] not in song_names order")
        for s in songs:
            want = self.meta[s.name]
            for field, value in want.items():
                got = getattr(s, field)
                expect(got == value, f"{s.name}: {field} = {got!r}, expected {value!r} (from the file itself)")
            expect(re.fullmatch(r"[0-9a-f]{64}", s.content_hash), f"{s.name}: hash not lowercase hex")

    def _load(self, req, name):
        code, chunks = self.call(self.srv.LoadAudio, req)
        expect(code == self.grpc.StatusCode.OK, f"LoadAudio({req}) failed: {code} {chunks}")
        raw = self.files[name]
        data = b"".join(c.data for c in chunks)
        expect(len(chunks) > 0 and all(len(c.data) > 0 for c in chunks), "an empty chunk, or no chunk")
        expect(data == raw, f"{name}: streamed {len(data)} bytes differ from the file's {len(raw)}")
        expect(hashlib.sha256(data).hexdigest() == self.info[name].content_hash, f"{name}: listed hash != hash of the bytes streamed")
        off = 0
        for c in chunks:
            expect(c.total_size == len(raw), f"{name}: chunk total_size {c.total_size} != {len(raw)}")
            expect(c.offset == off, f"{name}: chunk offset {c.offset}, expected {off}")
            off += len(c.data)
        return len(chunks)

    def check_server_load_audio_by_song_num(self):
        for name in ["a-stereo-44k.wav", "b-mono-48k.wav"]:
            self._load(self.S.LoadAudioRequest(song_num=self.num[name]), name)

    def check_server_load_audio_by_song_name(self):
        for name in ["a-stereo-44k.wav", "b-mono-48k.wav"]:
            self._load(self.S.LoadAudioRequest(song_name=name), name)
        # song_name wins over song_num
        self._load(self.S.LoadAudioRequest(song_name="b-mono-48k.wav", song_num=self.num["a-stereo-44k.wav"]), "b-mono-48k.wav")

    def check_server_load_audio_errors(self):
        G = self.grpc.StatusCode
        n = len(self.playlist.song_names)
        cases = [
            (dict(song_num=n + 1), G.NOT_FOUND, "song_num past the end"),
            (dict(song_num=1000), G.NOT_FOUND, "song_num far past the end"),
            (dict(song_num=0), G.INVALID_ARGUMENT, "song_num 0 (nothing selected)"),
            (dict(song_num=-1), G.INVALID_ARGUMENT, "negative song_num"),
            (dict(song_name="no-such-song.wav"), G.NOT_FOUND, "unknown name"),
            (dict(song_name="../audio/a-stereo-44k.wav"), G.NOT_FOUND, "a path, not a listed name"),
            (dict(song_name="/etc/passwd"), G.NOT_FOUND, "an absolute path"),
            (dict(song_name="c-gone.wav"), G.NOT_FOUND, "a listed file that can no longer be read"),
        ]
        bad = []
        for req, want, what in cases:
            code, r = self.call(self.srv.LoadAudio, self.S.LoadAudioRequest(**req))
            if code != want or not r:
                bad.append(f"{what} {req}: got {code} {r!r} (want {want} with a message; never an empty stream)")
        expect(not bad, "; ".join(bad))

    def check_server_running_clients_listed_joinable(self):
        def listed():
            return self.registered()

        r = self.until("the three clients registered", listed,
                       lambda r: {self.a.addr, self.b.addr, self.c.addr} <= set(r.client_ips), timeout=10)
        expect(len(r.peers) == len(r.client_ips), "peers[] and client_ips differ in length")
        for ip, peer in zip(r.client_ips, r.peers):
            expect(peer.peer_addr == ip, f"peers[] order: {peer.peer_addr} != {ip}")
        for p in (self.a, self.b, self.c):
            peer = next(x for x in r.peers if x.peer_addr == p.addr)
            expect(peer.node_id != 0 and 0 < peer.lease_remaining_ms, f"{p.addr}: node_id {peer.node_id}, lease {peer.lease_remaining_ms}")
            # joinable: a ClientHandler answers there
            stub = self.CG.ClientHandlerStub(self.channel(p.addr))
            stub.Ping(self.C.PingRequest(), timeout=RPC_TIMEOUT)

    def check_server_register_unregister(self):
        addr = f"127.0.0.1:{free_port()}"
        r = self.srv.RegisterPeer(self.S.RegisterPeerRequest(peer_addr=addr, node_id=0x1234, lease_ms=60000), timeout=RPC_TIMEOUT)
        expect(r.peer_addr == addr and r.lease_ms > 0, f"RegisterPeer answered {r}")
        expect(r.observed_ip == "127.0.0.1", f"observed_ip {r.observed_ip!r}")
        lst = self.registered()
        expect(addr in lst.client_ips, f"{addr} not listed after RegisterPeer: {list(lst.client_ips)}")
        e = next(p for p in lst.peers if p.peer_addr == addr)
        expect(e.node_id == 0x1234 and 0 < e.lease_remaining_ms <= r.lease_ms, f"listed as {e}")
        # renewal with a longer lease extends it
        r2 = self.srv.RegisterPeer(self.S.RegisterPeerRequest(peer_addr=addr, node_id=0x1234, lease_ms=120000), timeout=RPC_TIMEOUT)
        e2 = next(p for p in self.registered().peers if p.peer_addr == addr)
        expect(r2.lease_ms > r.lease_ms and e2.lease_remaining_ms > e.lease_remaining_ms, f"renewal did not extend the lease: {r2} {e2}")
        self.srv.UnregisterPeer(self.S.UnregisterPeerRequest(peer_addr=addr), timeout=RPC_TIMEOUT)
        expect(addr not in self.registered().client_ips, f"{addr} still listed after UnregisterPeer")
        # the same node id under a new address replaces the old one; unregister by node id
        a1, a2 = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        for a in (a1, a2):
            self.srv.RegisterPeer(self.S.RegisterPeerRequest(peer_addr=a, node_id=0xabcd, lease_ms=60000), timeout=RPC_TIMEOUT)
        ips = set(self.registered().client_ips)
        expect(a2 in ips and a1 not in ips, f"re-registration of node 0xabcd at a new address: {sorted(ips)}")
        self.srv.UnregisterPeer(self.S.UnregisterPeerRequest(node_id=0xabcd), timeout=RPC_TIMEOUT)
        expect(a2 not in self.registered().client_ips, "UnregisterPeer by node_id left the address listed")
        # the clients' own registrations are untouched
        expect({self.a.addr, self.b.addr} <= set(self.registered().client_ips), "running clients vanished")

    def check_server_register_unspecified_host(self):
        bad = []
        for host in ["0.0.0.0", "[::]", ""]:
            port = free_port()
            code, r = self.call(self.srv.RegisterPeer, self.S.RegisterPeerRequest(peer_addr=f"{host}:{port}", lease_ms=60000))
            want = f"127.0.0.1:{port}"
            if code != self.grpc.StatusCode.OK:
                bad.append(f"`{host}:{port}` refused: {code} {r}")
                continue
            if r.peer_addr != want or want not in self.registered().client_ips:
                bad.append(f"`{host}:{port}` registered as {r.peer_addr!r}, expected {want!r} (the caller's address)")
            self.srv.UnregisterPeer(self.S.UnregisterPeerRequest(peer_addr=r.peer_addr), timeout=RPC_TIMEOUT)
        expect(not bad, "; ".join(bad))

    def check_server_register_bad_addresses(self):
        listed = set(self.registered().client_ips)
        bad = []
        for a in ["", "no-port", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http",
                  "bad host:5000", "h" * 300 + ":5000"]:
            code, r = self.call(self.srv.RegisterPeer, self.S.RegisterPeerRequest(peer_addr=a, lease_ms=60000))
            if code != self.grpc.StatusCode.INVALID_ARGUMENT or not r:
                bad.append(f"{a[:40]!r}: {code} {r}")
        expect(not bad, "not refused with INVALID_ARGUMENT: " + "; ".join(bad))
        now = set(self.registered().client_ips)
        expect(now == listed, f"the list changed while refusing: {sorted(listed)} -> {sorted(now)}")

    def check_server_lease_expires(self):
        addr = f"127.0.0.1:{free_port()}"
        r = self.srv.RegisterPeer(self.S.RegisterPeerRequest(peer_addr=addr, lease_ms=1), timeout=RPC_TIMEOUT)
        expect(0 < r.lease_ms <= 10_000, f"lease of 1 ms asked, {r.lease_ms} ms granted (a bound is fine, but not this)")
        expect(addr in self.registered().client_ips, "not listed right after registering")
        time.sleep(r.lease_ms / 1000 + 0.3)
        expect(addr not in self.registered().client_ips, f"still listed {r.lease_ms} ms + 300 ms after registering without renewal")

    def check_server_list_songs_pages(self):
        pages, offset = [], 0
        while True:
            page = self.srv.ListSongs(self.S.ListSongsRequest(offset=offset, limit=1), timeout=RPC_TIMEOUT)
            expect(page.total == len(self.playlist.song_names), f"ListSongs total {page.total}")
            if not page.songs:
                break
            expect(len(page.songs) == 1 and page.next_offset == offset + 1, f"page at {offset}: {page}")
            pages.extend(page.songs)
            offset = page.next_offset
        expect(list(pages) == list(self.playlist.songs), "ListSongs pages differ from GetPlaylist's songs")
        expect(self.playlist.total_songs == len(self.playlist.song_names), f"total_songs {self.playlist.total_songs}")

    def check_server_list_peers_pages(self):
        listed, after = [], ""
        while True:
            page = self.srv.ListPeers(self.S.ListPeersRequest(after=after, limit=1), timeout=RPC_TIMEOUT)
            listed.extend(p.peer_addr for p in page.peers)
            if not page.next_after:
                break
            after = page.next_after
        legacy = list(self.registered().client_ips)
        expect(listed == sorted(listed), f"ListPeers not in address order: {listed}")
        expect(set(listed) == set(legacy), f"ListPeers {listed} != GetPeerClientIPs {legacy}")

    def check_server_stranger_unregister_refused(self):
        denied = self.grpc.StatusCode.PERMISSION_DENIED
        addr = f"127.0.0.1:{free_port()}"
        r = self.srv.RegisterPeer(self.S.RegisterPeerRequest(peer_addr=addr, node_id=0x5151, lease_ms=60000, claim=True),
                                  timeout=RPC_TIMEOUT)
        expect(len(r.token) == 32, f"token {r.token!r}")
        bad = []
        for req in [self.S.UnregisterPeerRequest(peer_addr=addr),
                    self.S.UnregisterPeerRequest(peer_addr=addr, token="0" * 32),
                    self.S.UnregisterPeerRequest(node_id=0x5151),
                    # a running client's registration, claimed by it
                    self.S.UnregisterPeerRequest(peer_addr=self.a.addr)]:
            code, detail = self.call(self.srv.UnregisterPeer, req)
            if code != denied or not detail:
                bad.append(f"{req}: {code} {detail}")
        code, detail = self.call(self.srv.RegisterPeer, self.S.RegisterPeerRequest(peer_addr=addr, lease_ms=1))
        if code != denied:
            bad.append(f"a tokenless renewal of a claimed address: {code} {detail}")
        expect(not bad, "not refused with PERMISSION_DENIED: " + "; ".join(bad))
        ips = set(self.registered().client_ips)
        expect({addr, self.a.addr} <= ips, "a refused unregister withdrew something")
        self.srv.UnregisterPeer(self.S.UnregisterPeerRequest(peer_addr=addr, token=r.token), timeout=RPC_TIMEOUT)
        expect(addr not in self.registered().client_ips, "the token's owner could not withdraw its registration")

    # == ClientHandler ===========================================================================

    def check_client_join_two_clients(self):
        m_a, m_b = self.a.mark(), self.b.mark()
        self.a.send(f"join {self.b.addr}")
        self.a.wait_for(r"connected to peer %s\b" % re.escape(self.b.addr), 15, since=m_a)
        self.b.wait_for(r"connected to peer %s\b" % re.escape(self.a.addr), 15, since=m_b)
        ca, cb = self.connections(self.a), self.connections(self.b)
        expect(self.b.addr in ca and self.a.addr in cb, f"connections: A lists {ca}, B lists {cb}")

    def check_client_ping(self):
        for p in (self.a, self.b):
            r = p.stub.Ping(self.C.PingRequest(send_ns=123456789012345678), timeout=RPC_TIMEOUT)
            expect(r.HasField("send_ns") and r.send_ns == 123456789012345678, f"{p.name}: send_ns not echoed: {r}")
            expect(0 < r.receive_ns <= r.reply_ns, f"{p.name}: receive_ns {r.receive_ns} > reply_ns {r.reply_ns}")

            def legacy_ms(ns):
                v = (ns // 1_000_000) & 0xFFFFFFFF
                return v - (1 << 32) if v >= (1 << 31) else v

            expect(r.t1 == legacy_ms(r.receive_ns) and r.t2 == legacy_ms(r.reply_ns),
                   f"{p.name}: t1/t2 {r.t1}/{r.t2} are not receive/reply in ms truncated to 32 bits")
            r2 = p.stub.Ping(self.C.PingRequest(), timeout=RPC_TIMEOUT)
            expect(not r2.HasField("send_ns"), f"{p.name}: send_ns present though the request had none")
            expect(r2.receive_ns >= r.reply_ns, f"{p.name}: clock went back between two pings")

    def check_client_play_song_num_reaches_group(self):
        name = "a-stereo-44k.wav"
        self.cmd(self.a, action="play", song_num=self.num[name])
        seen = set()

        def note(rs):
            seen.update(self.state_name(r.state) for r in rs)
            return rs

        self.until("PLAYING on A and B", lambda: note(self.group()()),
                   lambda rs: all(r.state == self.C.PLAYBACK_STATE_PLAYING and r.song_name == name for r in rs), timeout=15)
        expect("LOADING" in seen, f"a song not yet fetched was never reported LOADING (seen: {sorted(seen)})")
        rs = self.all_in("PLAYING", name)
        for p, r in zip((self.a, self.b), rs):
            expect(r.sample_rate == self.meta[name]["sample_rate"], f"{p.name}: sample_rate {r.sample_rate}")
            expect(r.content_hash == self.info[name].content_hash, f"{p.name}: content_hash {r.content_hash!r}")
        # the frame advances at the song's rate
        t0, f0 = rs[0].local_time_ns, rs[0].frame
        time.sleep(0.6)
        r1 = self.pos(self.a)
        rate = (r1.frame - f0) / ((r1.local_time_ns - t0) / 1e9) if r1.local_time_ns > t0 else 0
        expect(abs(rate - 44100) < 44100 * 0.05, f"frame advances at {rate:.0f} frames/s, expected 44100")

    def check_client_get_position_fields(self):
        name = "a-stereo-44k.wav"
        rs = self.all_in("PLAYING", name)
        info = self.info[name]
        for p in (self.a, self.b):
            ping = p.stub.Ping(self.C.PingRequest(), timeout=RPC_TIMEOUT)
            r = self.pos(p)
            whole = int(r.frame)
            expect(r.position == info.data_offset + whole * info.block_align,
                   f"{p.name}: legacy position {r.position} != data_offset {info.data_offset} + frame {whole} * block_align {info.block_align}")
            expect(r.position_ms == whole * 1000 // info.sample_rate, f"{p.name}: position_ms {r.position_ms} for frame {whole}")
            expect(r.sample_rate == info.sample_rate and r.song_name == name, f"{p.name}: {r.sample_rate} {r.song_name}")
            expect(abs(r.local_time_ns - ping.receive_ns) < 2e9, f"{p.name}: local_time_ns {r.local_time_ns} is not near its clock ({ping.receive_ns})")
            expect(r.HasField("group_time_ns"), f"{p.name}: no group_time_ns")
        # paused: frame and legacy position exact, stopped: zeroes with the song kept
        rs = self.paused_at(name, 12345)
        for r in rs:
            expect(r.position == info.data_offset + 12345 * info.block_align and r.position_ms == 12345 * 1000 // 44100,
                   f"paused at 12345: position {r.position}, ms {r.position_ms}")

    def check_client_group_in_sync_while_playing(self):
        name = "a-stereo-44k.wav"
        self.cmd(self.b, action="play", song_num=self.num[name], position_frame=44100)
        self.all_in("PLAYING", name)
        time.sleep(1.0)
        worst = 0.0
        for _ in range(5):
            ra, rb = self.pos(self.a), self.pos(self.b)
            expect(ra.HasField("group_time_ns") and rb.HasField("group_time_ns"), "group_time_ns missing")
            # each one's frame carried to the same group instant
            fa = ra.frame - ra.group_time_ns * 44100 / 1e9
            fb = rb.frame - rb.group_time_ns * 44100 / 1e9
            worst = max(worst, abs(fa - fb) / 44.1)
            time.sleep(0.1)
        expect(worst < 10, f"A and B differ by {worst:.2f} ms at the same group time")
        return f"A and B within {worst:.3f} ms"

    def check_client_pause_same_frame(self):
        name = "a-stereo-44k.wav"
        rs = [self.pos(p) for p in (self.a, self.b)]
        if not all(r.state == self.C.PLAYBACK_STATE_PLAYING and r.song_name == name for r in rs):
            self.cmd(self.a, action="play", song_num=self.num[name])
            self.all_in("PLAYING", name)
            time.sleep(0.5)
        self.cmd(self.b, action="pause")  # sent to B, lands on A too
        rs = self.all_in("PAUSED", name)
        time.sleep(0.3)
        ra, rb = self.pos(self.a), self.pos(self.b)
        expect(ra.frame == rb.frame and ra.frame > 0, f"paused on different frames: A {ra.frame}, B {rb.frame}")
        expect(ra.position == rb.position, f"legacy positions differ: {ra.position} {rb.position}")
        self.paused_frame = ra.frame

    def check_client_resume(self):
        name = "a-stereo-44k.wav"
        rs = [self.pos(p) for p in (self.a, self.b)]
        if not all(r.state == self.C.PLAYBACK_STATE_PAUSED for r in rs):
            rs = self.paused_at(name, 50000)
        f = rs[0].frame
        self.cmd(self.a, action="resume")
        rs = self.all_in("PLAYING", name)
        for p, r in zip((self.a, self.b), rs):
            expect(f <= r.frame < f + 2 * 44100, f"{p.name}: resumed at frame {r.frame}, paused at {f}")

    def check_client_seek_positions(self):
        name = "a-stereo-44k.wav"
        info = self.info[name]
        self.paused_at(name, 1000)
        cases = [
            (dict(position_frame=22050), 22050, "position_frame"),
            (dict(position_ms=1500), 1500 * 44100 // 1000, "position_ms"),
            (dict(position=info.data_offset + 7000 * info.block_align + info.block_align - 1), 7000, "legacy byte position inside a frame"),
            (dict(position=info.data_offset + 9000 * info.block_align), 9000, "legacy byte position"),
            (dict(position=10), 0, "legacy byte position inside the header"),
            (dict(position_frame=3000, position_ms=2000, position=info.data_offset + 4000 * info.block_align), 3000, "position_frame preferred"),
            (dict(position_ms=2000, position=info.data_offset + 4000 * info.block_align), 88200, "position_ms preferred to position"),
        ]
        bad = []
        for i, (kw, frame, what) in enumerate(cases):
            via = self.a if i % 2 == 0 else self.b
            try:
                self.cmd(via, action="seek", **kw)
                self.all_in("PAUSED", name, frame)
            except Fail as e:
                bad.append(f"{what}: {e}")
        # while playing, a seek keeps playing from there
        self.cmd(self.a, action="resume")
        self.all_in("PLAYING", name)
        self.cmd(self.b, action="seek", position_ms=20000)
        rs = self.all_in("PLAYING", name)
        rs = self.until("frames at 20 s", self.group(), lambda rs: all(r.frame >= 20 * 44100 for r in rs), timeout=5)
        if not all(r.frame < 22 * 44100 for r in rs):
            bad.append(f"seek while playing: frames {[r.frame for r in rs]}")
        expect(not bad, "; ".join(bad))

    def check_client_play_song_name_and_position(self):
        name = "b-mono-48k.wav"
        # song_name wins over song_num
        self.cmd(self.b, action="play", song_name=name, song_num=self.num["a-stereo-44k.wav"], position_ms=5000)
        rs = self.all_in("PLAYING", name, procs=(self.a, self.b))
        for p, r in zip((self.a, self.b), rs):
            # A start instant between two output slots starts on the nearer one, up to half a
            # slot early, at the fractional position there (frame 239999.94, say): not a miss.
            expect(5000 * 48 - 1 < r.frame < 8000 * 48, f"{p.name}: playing from frame {r.frame}, asked 5 s (240000)")
            expect(r.sample_rate == 48000, f"{p.name}: sample_rate {r.sample_rate}")

    def check_client_load(self):
        name = "a-stereo-44k.wav"
        info = self.info[name]
        frame = 30000
        self.cmd(self.a, action="load", song_num=self.num[name], position=info.data_offset + frame * info.block_align)
        st = (self.C.PLAYBACK_STATE_STOPPED, self.C.PLAYBACK_STATE_PAUSED)
        rs = self.until("song loaded (not playing) on A and B", self.group(),
                        lambda rs: all(r.song_name == name and r.state in st for r in rs), timeout=15)
        time.sleep(0.5)
        rs = [self.pos(p) for p in (self.a, self.b)]
        for p, r in zip((self.a, self.b), rs):
            expect(r.song_name == name and r.state in st, f"{p.name}: {self.show(r)} after load")
            expect(r.frame == frame, f"{p.name}: loaded at legacy byte position of frame {frame}, but reports {self.show(r)} (position ignored)")

    def check_client_wait_time_ms(self):
        name = "a-stereo-44k.wav"
        self.cmd(self.a, action="play", song_num=self.num[name])
        self.all_in("PLAYING", name)
        time.sleep(0.3)
        ping = self.a.stub.Ping(self.C.PingRequest(), timeout=RPC_TIMEOUT)
        before = self.pos(self.a)
        self.cmd(self.a, action="pause", wait_time_ms=1500)
        t_sent = time.monotonic()
        time.sleep(0.8)
        rs = [self.pos(p) for p in (self.a, self.b)]
        expect(all(r.state == self.C.PLAYBACK_STATE_PLAYING for r in rs), f"paused before wait_time_ms elapsed: {[self.show(r) for r in rs]}")
        rs = self.all_in("PAUSED", name)
        took = time.monotonic() - t_sent
        expect(rs[0].frame == rs[1].frame, f"delayed pause on different frames {rs[0].frame} {rs[1].frame}")
        # frame heard at receipt, carried forward 1.5 s
        at_receipt = before.frame + (ping.reply_ns - before.local_time_ns) * 44100 / 1e9
        late_ms = (rs[0].frame - at_receipt) / 44.1 - 1500
        expect(abs(late_ms) < 350, f"paused {late_ms:+.0f} ms away from receipt + 1500 ms (observed after {took:.2f} s)")
        return f"paused {late_ms:+.0f} ms from receipt + 1500 ms"

    def check_client_stop(self):
        rs = [self.pos(p) for p in (self.a, self.b)]
        if all(r.state == self.C.PLAYBACK_STATE_STOPPED for r in rs):
            self.cmd(self.a, action="play", song_num=self.num["a-stereo-44k.wav"])
            self.all_in("PLAYING")
        self.cmd(self.b, action="stop")
        rs = self.all_in("STOPPED")
        for r in rs:
            expect(r.frame == 0 and r.position_ms == 0, f"stopped but {self.show(r)}")

    def check_client_errors_change_nothing(self):
        G = self.grpc.StatusCode
        name = "a-stereo-44k.wav"
        frames = self.info[name].frames
        before = self.paused_at(name, 4242)
        cases = [
            (dict(action="jump"), G.INVALID_ARGUMENT, "unknown action"),
            (dict(action=""), G.INVALID_ARGUMENT, "empty action"),
            (dict(action="seek", wait_time_ms=-1, position_frame=10), G.INVALID_ARGUMENT, "negative wait_time_ms"),
            (dict(action="seek", position=-5), G.INVALID_ARGUMENT, "negative position"),
            (dict(action="play", song_num=-2), G.INVALID_ARGUMENT, "negative song_num"),
            (dict(action="load", song_num=-1), G.INVALID_ARGUMENT, "negative song_num (load)"),
            (dict(action="play", song_num=1, wall_clock_ns=-1), G.INVALID_ARGUMENT, "negative wall_clock_ns"),
            (dict(action="play", song_num=99), G.NOT_FOUND, "song_num that does not exist"),
            (dict(action="load", song_num=len(self.playlist.song_names) + 1), G.NOT_FOUND, "song_num one past the end (load)"),
            (dict(action="play", song_name="no-such-song.wav"), G.NOT_FOUND, "song_name that does not exist"),
            (dict(action="load", song_name="no-such-song.wav"), G.NOT_FOUND, "song_name that does not exist (load)"),
            (dict(action="load"), G.INVALID_ARGUMENT, "load without a song"),
            (dict(action="seek", position_frame=frames + 10), G.INVALID_ARGUMENT, "seek past the end"),
            (dict(action="play", song_num=1, position_ms=10**9), G.INVALID_ARGUMENT, "play past the end"),
            (dict(action="load", song_name="b-mono-48k.wav", position_frame=10**9), G.INVALID_ARGUMENT, "load past the end"),
        ]
        bad = []
        for i, (kw, want, what) in enumerate(cases):
            p = self.a if i % 2 == 0 else self.b
            code, r = self.call(p.stub.SendMusicCommand, self.C.MusicRequest(**kw))
            if code != want or not r:
                bad.append(f"{what} {kw}: {code} {r!r} (want {want} with a message)")
        time.sleep(0.5)
        after = [self.pos(p) for p in (self.a, self.b)]
        for p, x, y in zip((self.a, self.b), before, after):
            if (x.state, x.song_name, x.frame, x.position) != (y.state, y.song_name, y.frame, y.position):
                bad.append(f"{p.name} changed: {self.show(x)} -> {self.show(y)}")
        expect(not bad, "; ".join(bad))

    def check_client_legacy_only_caller(self):
        """An original Music262 caller: old schema, only legacy fields, on B and the server."""
        Old = self.old
        ch = self.b.chan
        G = self.grpc.StatusCode

        def rpc(method, req, resp):
            f = ch.unary_unary(f"/client.ClientHandler/{method}", request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=Old(f"client.{resp}").FromString)
            return f(req, timeout=RPC_TIMEOUT)

        MusicRequest = Old("client.MusicRequest")
        r = rpc("Ping", Old("client.PingRequest")(), "PingResponse")
        expect(r.t2 >= r.t1 or r.t1 - r.t2 > 2**31, f"old Ping: t1 {r.t1} t2 {r.t2}")
        name = "a-stereo-44k.wav"
        info = self.info[name]
        frame = 44100 * 3
        req = MusicRequest(action="play", song_num=self.num[name], position=info.data_offset + frame * info.block_align + 1,
                           wall_clock_ns=time.time_ns(), wait_time_ms=0)
        expect(req.SerializeToString() and set(f.number for f, _ in req.ListFields()) <= {1, 2, 3, 4, 5}, "not a legacy request")
        rpc("SendMusicCommand", req, "MusicResponse")
        rs = self.all_in("PLAYING", name)
        expect(all(frame <= r.frame < frame + 3 * 44100 for r in rs), f"old play at byte position of frame {frame}: {[self.show(r) for r in rs]}")
        old_pos = rpc("GetPosition", Old("client.GetPositionRequest")(), "GetPositionResponse")
        expect(old_pos.position >= info.data_offset + frame * info.block_align, f"old GetPosition.position {old_pos.position}")
        rpc("SendMusicCommand", MusicRequest(action="pause", wall_clock_ns=time.time_ns()), "MusicResponse")
        rs = self.all_in("PAUSED", name)
        time.sleep(0.2)
        old_pos = rpc("GetPosition", Old("client.GetPositionRequest")(), "GetPositionResponse")
        ra = self.pos(self.a)
        expect(old_pos.position == info.data_offset + int(ra.frame) * info.block_align,
               f"old GetPosition.position {old_pos.position} on B != byte offset of A's paused frame {ra.frame}")
        rpc("SendMusicCommand", MusicRequest(action="resume"), "MusicResponse")
        self.all_in("PLAYING", name)
        rpc("SendMusicCommand", MusicRequest(action="stop"), "MusicResponse")
        self.all_in("STOPPED", name)
        rpc("SendMusicCommand", MusicRequest(action="play", song_num=0, position=0), "MusicResponse")  # the current song
        self.all_in("PLAYING", name)
        rpc("SendMusicCommand", MusicRequest(action="load", song_num=self.num["b-mono-48k.wav"]), "MusicResponse")
        self.until("old load of song 2", self.group(),
                   lambda rs: all(r.song_name == "b-mono-48k.wav" and r.state == self.C.PLAYBACK_STATE_STOPPED for r in rs), timeout=15)
        try:
            rpc("SendMusicCommand", MusicRequest(action="rewind"), "MusicResponse")
            raise Fail("old caller: unknown action accepted")
        except self.grpc.RpcError as e:
            expect(e.code() == G.INVALID_ARGUMENT, f"old caller, unknown action: {e.code()}")
        rpc("Gossip", Old("client.GossipRequest")(peer_list=[]), "GossipResponse")
        rpc("Exit", Old("client.ExitRequest")(), "ExitResponse")
        # the server, as an old client uses it
        sch = self.srv_chan
        names = sch.unary_unary("/audio_service.audio_service/GetPlaylist", request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=Old("audio_service.PlaylistResponse").FromString)(
            Old("audio_service.PlaylistRequest")(), timeout=RPC_TIMEOUT)
        expect(list(names.song_names) == list(self.playlist.song_names), "old GetPlaylist")
        chunks = sch.unary_stream("/audio_service.audio_service/LoadAudio", request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=Old("audio_service.AudioChunk").FromString)(
            Old("audio_service.LoadAudioRequest")(song_num=self.num["b-mono-48k.wav"]), timeout=RPC_TIMEOUT)
        expect(b"".join(c.data for c in chunks) == self.files["b-mono-48k.wav"], "old LoadAudio: bytes differ from the file")
        ips = sch.unary_unary("/audio_service.audio_service/GetPeerClientIPs", request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=Old("audio_service.PeerListResponse").FromString)(
            Old("audio_service.PeerListRequest")(), timeout=RPC_TIMEOUT)
        expect(self.a.addr in ips.client_ips, f"old GetPeerClientIPs: {list(ips.client_ips)}")
        # B still with A (the old, empty Exit from a non-peer dropped nothing)
        expect(self.a.addr in self.connections(self.b), "B lost A after an empty Exit from a non-peer")

    def check_client_gossip(self):
        name = "b-mono-48k.wav"
        self.paused_at(name, 96000)
        rc = self.pos(self.c)
        expect(rc.song_name != name or rc.state != self.C.PLAYBACK_STATE_PAUSED, f"C already follows: {self.show(rc)}")
        m = self.a.mark()
        self.a.stub.Gossip(self.C.GossipRequest(peer_list=[self.c.addr, "garbage", "", self.a.addr]), timeout=RPC_TIMEOUT)
        self.a.wait_for(r"connected to peer %s\b" % re.escape(self.c.addr), 15, since=m)
        rc = self.all_in("PAUSED", name, 96000, procs=(self.c,))
        # and C now drives the group
        self.cmd(self.c, action="seek", position_frame=48000)
        self.all_in("PAUSED", name, 48000, procs=(self.a, self.b, self.c))

    def check_client_exit(self):
        ca = self.connections(self.a)
        expect({self.b.addr, self.c.addr} <= ca, f"A's connections before Exit: {ca}")
        # an empty Exit from a caller that is not a peer drops nothing
        self.a.stub.Exit(self.C.ExitRequest(), timeout=RPC_TIMEOUT)
        time.sleep(0.3)
        ca = self.connections(self.a)
        expect({self.b.addr, self.c.addr} <= ca, f"an empty Exit from a non-peer dropped a link: {ca}")
        m = self.a.mark()
        self.a.stub.Exit(self.C.ExitRequest(listen_addr=self.c.addr), timeout=RPC_TIMEOUT)
        self.a.wait_for(r"peer %s disconnected" % re.escape(self.c.addr), 5, since=m)
        ca = self.until("C gone from A's connections", lambda: self.connections(self.a), lambda s: self.c.addr not in s, timeout=5)
        expect(self.b.addr in ca, f"A dropped B too: {ca}")

    def check_client_group_key_guards_commands(self):
        # Without a key (A, B, C) every legacy call above was answered as in the original
        # protocol, and the client said once that anyone can control it.
        expect(any("warning: no group key" in l for l in self.a.lines), "keyless client A gave no warning")
        # With a key: calls that change playback need the key's token in `music262-auth`
        # metadata (UNAUTHENTICATED otherwise); read-only calls stay open.
        import hashlib as _h
        import hmac as _hmac

        key = "compliance group key 42"
        root = _hmac.new(b"music262 group key v1", key.encode(), _h.sha256).digest()
        token = _hmac.new(root, b"music262 legacy calls v1", _h.sha256).hexdigest()
        k = self.start_client("client-k", env={"MUSIC262_GROUP_KEY": key})
        self.client_ready(k)
        stub = self.CG.ClientHandlerStub(self.channel(k.addr))
        unauth = self.grpc.StatusCode.UNAUTHENTICATED
        pos = lambda: stub.GetPosition(self.C.GetPositionRequest(), timeout=RPC_TIMEOUT)
        before = pos()
        expect(before.state == self.C.PLAYBACK_STATE_STOPPED, f"keyed client not stopped: {self.show(before)}")
        stub.Ping(self.C.PingRequest(), timeout=RPC_TIMEOUT)
        name = self.playlist.song_names[0]
        for md in [None, [("music262-auth", "0" * 64)], [("music262-auth", key)]]:
            for fn, req in [(stub.SendMusicCommand, self.C.MusicRequest(action="load", song_name=name)),
                            (stub.Gossip, self.C.GossipRequest(peer_list=[self.a.addr])),
                            (stub.Exit, self.C.ExitRequest())]:
                try:
                    fn(req, timeout=RPC_TIMEOUT, metadata=md)
                    raise Fail(f"{fn._method} without a valid token (metadata {md}) was accepted")
                except self.grpc.RpcError as e:
                    expect(e.code() == unauth, f"{fn._method}: {e.code()} {e.details()}, want UNAUTHENTICATED")
                    expect("music262-auth" in e.details(), f"details do not say what to present: {e.details()}")
        time.sleep(0.3)
        after = pos()
        expect(after.state == before.state and after.song_name == before.song_name,
               f"a refused command changed playback: {self.show(after)}")
        expect(self.a.addr not in self.connections(k), "a refused gossip made a link")
        # With the token, the same command is obeyed.
        stub.SendMusicCommand(self.C.MusicRequest(action="load", song_name=name), timeout=RPC_TIMEOUT,
                              metadata=[("music262-auth", token)])
        self.until(f"{name} loaded on the keyed client", pos, lambda r: r.song_name == name, timeout=15)
        m = k.mark()
        k.send("status")
        k.wait_for(r"refused: \d+ links, \d+ frames, 9 legacy calls", 5, since=m)
        k.stop()
        return "UNAUTHENTICATED without the token, obeyed with it"

    def check_client_quit_unregisters(self):
        self.c.send("quit")
        try:
            rc = self.c.p.wait(10)
        except subprocess.TimeoutExpired:
            raise Fail("client C did not exit within 10 s of `quit`")
        expect(rc == 0, f"client C exited with status {rc}")
        ips = self.registered().client_ips
        expect(self.c.addr not in ips and self.a.addr in ips, f"after C quit, the server lists {list(ips)}")

    # -- running ---------------------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        try:
            self.setup()
        except Exception as e:
            print(f"FAIL  setup: {e}")
            traceback.print_exc()
            self.dump()
            return 2
        print(f"setup: server on 127.0.0.1:{self.server_port}, clients A {self.a.addr}, B {self.b.addr}, C {self.c.addr} "
              f"({time.monotonic() - started:.1f}s)")
        for name in [n for n in type(self).__dict__ if n.startswith("check_")]:
            t = time.monotonic()
            try:
                detail = getattr(self, name)()
                self.results.append((name, True, time.monotonic() - t, detail or ""))
                print(f"ok    {name[6:]}  ({time.monotonic() - t:.1f}s){': ' + detail if detail else ''}", flush=True)
            except Fail as e:
                self.results.append((name, False, time.monotonic() - t, str(e)))
                print(f"FAIL  {name[6:]}  ({time.monotonic() - t:.1f}s): {e}", flush=True)
            except Exception as e:  # an unexpected error is a failure of this check, not of the run
                self.results.append((name, False, time.monotonic() - t, repr(e)))
                print(f"FAIL  {name[6:]}  ({time.monotonic() - t:.1f}s): unexpected {e!r}", flush=True)
                traceback.print_exc()
        failed = [r for r in self.results if not r[1]]
        if failed:
            self.dump()
        print(f"compliance: {len(self.results) - len(failed)} passed, {len(failed)} failed ({time.monotonic() - started:.1f}s)")
        return 1 if failed else 0

    def dump(self):
        print(f"work folder kept for inspection: {self.work} (process outputs *.out, logs *.log)")
        self.args.keep = True


def main():
    default_target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(default_target, "debug"))
    ap.add_argument("--proto-dir", default=os.path.join(ROOT, "proto"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.bin_dir, args.proto_dir = os.path.abspath(args.bin_dir), os.path.abspath(args.proto_dir)
    test = Compliance(args)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    code = 1
    try:
        code = test.run()
    finally:
        test.teardown()
        if not args.keep:
            shutil.rmtree(test.work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
